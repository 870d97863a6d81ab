"""Which fits a diagnosis makes, in what order, and how many a time budget affords.

A complete sweep (``full``) fits every learning-curve size and every value of
the family's grids on 5 folds: on digits' CNN about a hundred fits, seven
minutes on 2 cores, more than an autopilot that diagnoses every turn can
spend. The budget mode spends its seconds where the evidence is:

1. the base fits first (3 folds): they alone give the verdict, and their
   seconds price every other fit;
2. then, most informative first and only what the rest of the budget affords:
   the learning curve (sizes that double, so its last doubling is measured and
   a power law can be fitted), the reg curve, the size curve, each at the
   current value (the base fits themselves, never fitted twice) and one step
   either side;
3. then, while budget remains, a curve whose best value lies at an end is
   extended past it, a learning curve that still falls gets another size, and
   the rest of the complete grids is filled in, nearest the best value first.

Whatever the mode, a validation curve spans the run's own setting: its values
include the current one and reach below and above it (log steps for reg, the
family's grid for size), whatever the family's grid is. A curve that starts at
0.1 says nothing about a run at 1e-4.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.diagnose.curves import Folds, Point, PointScore, summarize
from loopml.exceptions import LoopmlError
from loopml.progress import Progress

#: shares of the largest fold's training rows a complete learning curve is measured at
LEARNING_FRACTIONS = (0.1, 0.25, 0.45, 0.7, 1.0)
#: the budget's learning curve: each size doubles the last (four points fit a power law)
BUDGET_FRACTIONS = (0.125, 0.25, 0.5, 1.0)
#: the size a still-falling budget learning curve gains when time is left
EXTRA_FRACTION = 0.75
FULL_FOLDS = 5
BUDGET_FOLDS = 3
#: seconds of a default diagnosis: digits' CNN (the best run of `loopml run`) then ends
#: under 90 s on 2 cores, report included, with its learning curve and reg curve
DEFAULT_BUDGET_S = 70.0
#: a round is planned to end within this share of the time left: guesses err
SAFETY = 0.9
#: share of a base fit's seconds that a fit on very few rows still takes (set-up, and
#: more epochs before early stopping: an eighth of digits' rows costs 27% of the time)
FIXED_SHARE = 0.2
MODES = ("budget", "full")

ScoreFits = Callable[[list[Point]], dict[Point, PointScore]]


@dataclass
class Sweep:
    """The points a diagnosis fits, grouped by what they are for."""

    base: list[Point]
    learning: dict[int, list[Point]]
    curves: dict[str, dict[float, list[Point]]]

    def all(self) -> list[Point]:
        points = list(self.base)
        for group in self.learning.values():
            points += group
        for curve in self.curves.values():
            for group in curve.values():
                points += group
        return list(dict.fromkeys(points))


@dataclass
class Planning:
    """How a diagnosis's sweep was planned, and how much of the plan ran.

    ``planned_fits`` and ``done_fits`` count fits of the diagnosed model (the
    reference's are in :attr:`Diagnosis.n_fits`); ``left_out`` names the curve
    points the budget could not afford, most informative first.
    """

    mode: str
    folds: int
    budget_s: float | None = None
    planned_fits: int = 0
    done_fits: int = 0
    base_fit_s: float = float("nan")
    left_out: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "folds": self.folds, "budget_s": self.budget_s,
                "planned_fits": self.planned_fits, "done_fits": self.done_fits,
                "base_fit_s": self.base_fit_s, "left_out": list(self.left_out)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Planning:
        budget, base = data["budget_s"], data["base_fit_s"]
        return cls(str(data["mode"]), int(data["folds"]),
                   None if budget is None else float(budget), int(data["planned_fits"]),
                   int(data["done_fits"]), float("nan") if base is None else float(base),
                   [str(item) for item in data["left_out"]])


class Tally:
    """``progress("fits", done, total)`` over a total that grows as the budget plans more."""

    def __init__(self, progress: Progress | None, step: str, total: int) -> None:
        self.progress, self.step, self.done, self.total = progress, step, 0, total
        self._report()

    def add(self, n: int) -> None:
        self.total += n
        self._report()

    def advance(self) -> None:
        self.done += 1
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.step, self.done, self.total)


def check_budget(budget: float | None, *, full: bool) -> float:
    """The budget in seconds (default :data:`DEFAULT_BUDGET_S`); refuses one that cannot be."""
    if budget is None:
        return DEFAULT_BUDGET_S
    if full:
        raise LoopmlError("a full diagnosis runs the complete sweep, whatever it takes, so it "
                          f"takes no budget (got {budget:g} s)",
                          hint="drop --budget for the complete sweep, or drop --full to keep "
                               "the diagnosis within the budget")
    if not math.isfinite(budget) or budget <= 0:
        raise LoopmlError(f"the budget must be a positive number of seconds, got {budget}",
                          hint=f"e.g. --budget {DEFAULT_BUDGET_S:g}; --full for the complete "
                               "sweep")
    return float(budget)


# ------------------------------------------------------------------ the plan


def plan(family: type, folds: Folds, n_train: int, *, curves: bool,
         current: Mapping[str, Any] | None = None, full: bool = True) -> Sweep:
    """The sweep a diagnosis wants: base fits, learning sizes and knob values.

    ``current`` holds the run's own parameters (``estimator.get_params()``):
    with it every validation curve spans the current setting, and a point that
    repeats it at the base size is the base point itself, so it is fitted once.
    ``full`` asks for the complete sweep; otherwise the budget's core (the
    learning curve's doubling sizes, each knob's current value and a step
    either side), which :func:`spend` runs and extends as the budget allows.
    """
    k = range(folds.k)
    base = [Point((), n_train, f) for f in k]
    if not curves:
        return Sweep(base, {}, {})
    fractions = LEARNING_FRACTIONS if full else BUDGET_FRACTIONS
    sizes = {max(2, round(fr * folds.max_train)) for fr in fractions}
    if not full:
        sizes.add(n_train)  # its points are the base points: free
    learning = {n: [Point((), n, f) for f in k] for n in sorted(sizes)}
    grids: dict[str, dict[float, list[Point]]] = {}
    for knob, grid in (("reg", family.reg_grid), ("size", family.size_grid)):
        if not grid:
            continue
        now = None if current is None else current.get(knob)
        values = knob_values(knob, grid, now, full=full)
        grids[knob] = {v: _points(knob, v, n_train, folds.k, current) for v in values}
    return Sweep(base, learning, grids)


def _points(knob: str, value: float, n_train: int, k: int,
            current: Mapping[str, Any] | None) -> list[Point]:
    return [canonical(Point(((knob, _knob_value(knob, value)),), n_train, f), current)
            for f in range(k)]


def canonical(point: Point, current: Mapping[str, Any] | None) -> Point:
    """``point`` without the overrides that repeat the current setting.

    A reg curve's point at the run's own reg is the base point; written the
    same way, the two are one dict key and one fit.
    """
    if not current:
        return point
    kept = tuple((name, value) for name, value in point.overrides
                 if not (name in current and _same(current[name], value)))
    return Point(kept, point.n_train, point.fold)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def _knob_value(knob: str, value: float) -> float:
    return int(value) if knob == "size" and float(value).is_integer() else float(value)


def knob_values(knob: str, grid: Sequence[float], current: float | None, *,
                full: bool) -> list[float]:
    """The values a ``knob`` curve is measured at, smallest first.

    Always the current value and a step either side of it where the knob
    allows one (no reg below 0, no size below 1): log steps of the grid's own
    spacing for reg, the family's grid (or its spacing past its ends) for
    size. A reg curve whose steps stay outside the grid also reaches the
    grid's nearest end, where the family's regularization starts to act.
    ``full`` adds the whole grid; without a current value, the grid alone.
    """
    values = sorted(float(v) for v in grid)
    if current is None:
        return values
    now = float(current)
    below, above = _neighbours(knob, values, now)
    chosen = [v for v in (below, now, above) if v is not None]
    if knob == "reg" and now > 0 and values:
        if above is not None and above < values[0] and not _close(above, values[0]):
            chosen.append(values[0])
        if below is not None and below > values[-1] and not _close(below, values[-1]):
            chosen.append(values[-1])
    return _unique(chosen + values if full else chosen)


def _neighbours(knob: str, grid: list[float], now: float) -> tuple[float | None, float | None]:
    """One step below and above ``now`` (None where the knob allows no step)."""
    step = _step(grid, knob)
    lower = [v for v in grid if v < now and not _close(v, now)]
    upper = [v for v in grid if v > now and not _close(v, now)]
    if knob == "size":
        below = lower[-1] if lower else float(round(now / step))
        above = upper[0] if upper else float(round(now * step))
        return (below if 1 <= below < now else None), (above if above > now else None)
    if now <= 0:  # no regularization: nothing below; above, the middle of the family's range
        return None, (grid[len(grid) // 2] if grid else 1.0)
    below = lower[-1] if lower and lower[-1] * step * 1.01 >= now else now / step
    above = upper[0] if upper and upper[0] <= now * step * 1.01 else now * step
    return below, above


def _step(grid: list[float], knob: str) -> float:
    """The grid's geometric step (default: a decade for reg, a doubling for size)."""
    positive = [v for v in grid if v > 0]
    if len(positive) < 2 or positive[-1] <= positive[0]:
        return 10.0 if knob == "reg" else 2.0
    return float((positive[-1] / positive[0]) ** (1 / (len(positive) - 1)))


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _unique(values: list[float]) -> list[float]:
    out: list[float] = []
    for v in sorted(values):
        if not out or not _close(out[-1], v):
            out.append(v)
    return out


# ------------------------------------------------------------------ spending the budget


@dataclass(frozen=True)
class _Group:
    """Curve points the budget buys or leaves out together, each with its k fits.

    A knob's step below and step above its current value are one group: a
    curve that reaches only one side cannot say the setting is well placed.
    """

    curve: str  # "learning", "reg" or "size"
    parts: tuple[tuple[float, tuple[Point, ...]], ...]

    @property
    def points(self) -> tuple[Point, ...]:
        return tuple(p for _, points in self.parts for p in points)

    @property
    def label(self) -> str:
        if self.curve == "learning":
            return "learning curve" if len(self.parts) > 1 else f"learning n={self.parts[0][0]:g}"
        return ", ".join(f"{self.curve}={x:.4g}" for x, _ in self.parts)


def workers(n_jobs: int | None, ray_address: str | None = None) -> int:
    """How many fits run at once for these ``n_jobs`` (joblib's meaning of the number)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if n_jobs is None or n_jobs == 0:
        return cpus if ray_address else 1
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return n_jobs if ray_address else min(n_jobs, cpus)


def makespan(costs: Sequence[float], n_workers: int) -> float:
    """Seconds ``costs`` take on ``n_workers`` (longest first, each to the least busy)."""
    loads = [0.0] * max(1, n_workers)
    for cost in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += cost
    return max(loads)


@dataclass
class Spend:
    """What :func:`spend` ran: the sweep as measured, its scores, and how it was planned."""

    sweep: Sweep
    scores: dict[Point, PointScore]
    planning: Planning


def spend(wanted: Sweep, scores: dict[Point, PointScore], fit: ScoreFits, *,
          family: type, current: Mapping[str, Any], folds: Folds, deadline: float,
          n_workers: int, tolerance: float, budget_s: float, tally: Tally | None = None,
          wall_s: float | None = None) -> Spend:
    """Fit the points of ``wanted`` the time to ``deadline`` affords, most informative first.

    ``scores`` holds the base points, already fitted (``wall_s`` seconds); they
    price the rest (:class:`_Pricer`), corrected after every round by what the
    fits really took. A round buys, in order, the groups (curve points with
    their k fits) that end within the time left; a group that does not fit is
    skipped, not waited for, so a cheaper one after it may still be bought.
    The core groups (:func:`_core_groups`) are offered first in every round
    until bought; after them come extensions past a best value at a curve's
    end, another learning size, and the rest of the complete grids. The budget
    is a plan, not a stop: a round whose fits take longer than guessed ends late.
    """
    base = wanted.base
    base_s = float(np.mean([scores[p].seconds for p in base]))
    priced = _Pricer([scores[p].seconds for p in base], base[0].n_train, current, n_workers,
                     wall_s)
    done = Sweep(list(base), {}, {})
    scores = dict(scores)
    considered: dict[str, _Group] = {}
    recorded: set[str] = set()
    core = queue = _core_groups(wanted, current)
    while queue:
        considered.update((g.label, g) for g in queue if g.label not in considered)
        chosen = priced.choose(queue, scores, SAFETY * (deadline - time.perf_counter()))
        if not chosen:
            break
        # longest first, so the short fits fill the workers' gaps at the end
        fresh = sorted(dict.fromkeys(p for g in chosen for p in g.points if p not in scores),
                       key=priced.guess, reverse=True)
        if tally is not None:
            tally.add(len(fresh))
        started = time.perf_counter()
        new = fit(fresh) if fresh else {}
        priced.learn(fresh, new, time.perf_counter() - started)
        scores.update(new)
        for g in chosen:
            _record(done, g)
            recorded.add(g.label)
        core = [g for g in core if g.label not in recorded]  # offered again, first
        queue = core + [g for g in _next_groups(done, scores, family=family, current=current,
                                                folds=folds, tolerance=tolerance)
                        if g.label not in recorded | {c.label for c in core}]
    _drop_thin_curves(done)
    planned = list(dict.fromkeys(list(base) + [p for g in considered.values()
                                               for p in g.points]))
    fitted = set(done.all())
    left = [label for label, g in considered.items() if not set(g.points) <= fitted]
    planning = Planning("budget", folds.k, budget_s, len(planned), len(fitted), base_s, left)
    return Spend(done, {p: scores[p] for p in done.all()}, planning)


def _core_groups(wanted: Sweep, current: Mapping[str, Any]) -> list[_Group]:
    """The learning curve (all its sizes: a part of it fits no law), then each knob's
    current value with a step either side. The knob's other values (a reg curve's reach
    into the family's grid) come after, with the extensions, once its span is measured."""
    groups = []
    if wanted.learning:
        groups.append(_Group("learning", tuple((float(n), tuple(points))
                                               for n, points in wanted.learning.items())))
    for knob in ("reg", "size"):
        values = wanted.curves.get(knob, {})
        now = current.get(knob)
        if not values or not isinstance(now, int | float):
            continue
        xs = sorted(values)
        at = min(range(len(xs)), key=lambda i: abs(xs[i] - float(now)))
        span = [x for i, x in enumerate(xs) if at - 1 <= i <= at + 1]
        groups.append(_Group(knob, tuple((x, tuple(values[x])) for x in span)))
    return groups


def _record(done: Sweep, group: _Group) -> None:
    for x, points in group.parts:
        if group.curve == "learning":
            done.learning[int(x)] = list(points)
        else:
            done.curves.setdefault(group.curve, {})[x] = list(points)
    done.learning = dict(sorted(done.learning.items()))
    done.curves = {knob: dict(sorted(values.items())) for knob, values in done.curves.items()}


def _drop_thin_curves(done: Sweep) -> None:
    """A validation curve of one value (the current one, free) says nothing: drop it."""
    for knob in [k for k, groups in done.curves.items() if len(groups) < 2]:
        del done.curves[knob]


def _next_groups(done: Sweep, scores: dict[Point, PointScore], *, family: type,
                 current: Mapping[str, Any], folds: Folds, tolerance: float) -> list[_Group]:
    """After a round: extensions past a best value at an end, a size for a falling
    learning curve, then the complete grids' other values, nearest the best first."""
    n_train, k = done.base[0].n_train, folds.k
    extend: list[_Group] = []
    fill: list[_Group] = []
    for knob, grid in (("reg", family.reg_grid), ("size", family.size_grid)):
        measured = done.curves.get(knob, {})
        if not grid or not measured:
            continue
        ladder = knob_values(knob, grid, current.get(knob), full=True)
        val = {x: summarize(scores, x, pts).val for x, pts in measured.items()}
        finite = {x: v for x, v in val.items() if np.isfinite(v)}
        best = min(finite, key=finite.get) if finite else None
        lo, hi = min(measured), max(measured)
        if best is not None and _close(best, lo):
            extend += [_group(knob, v, n_train, k, current) for v in ladder if v < lo][-1:]
        if best is not None and _close(best, hi):
            extend += [_group(knob, v, n_train, k, current) for v in ladder if v > hi][:1]
        rest = [v for v in ladder if not any(_close(v, x) for x in measured)]
        anchor = ladder.index(min(ladder, key=lambda v: abs(v - (lo if best is None else best))))
        rest.sort(key=lambda v: abs(ladder.index(v) - anchor))
        fill += [_group(knob, v, n_train, k, current) for v in rest]
    more = _learning_extra(done, scores, folds, tolerance)
    labels = {g.label for g in extend}
    return extend + more + [g for g in fill if g.label not in labels]


def _group(knob: str, value: float, n_train: int, k: int,
           current: Mapping[str, Any]) -> _Group:
    return _Group(knob, ((value, tuple(_points(knob, value, n_train, k, current))),))


def _learning_extra(done: Sweep, scores: dict[Point, PointScore], folds: Folds,
                    tolerance: float) -> list[_Group]:
    """Another learning size below the largest when the last doubling still lowered val
    error by more than ``tolerance`` (the extrapolation then matters most)."""
    if len(done.learning) < 2:
        return []
    sizes = sorted(done.learning)
    n_max, extra = sizes[-1], max(2, round(EXTRA_FRACTION * folds.max_train))
    if extra in done.learning or extra >= n_max:
        return []
    errors = [summarize(scores, n, done.learning[n]).val for n in sizes]
    half = float(np.interp(n_max / 2, sizes, errors))
    if not np.isfinite(half - errors[-1]) or half - errors[-1] < tolerance:
        return []
    return [_Group("learning", ((float(extra), tuple(Point((), extra, f)
                                                     for f in range(folds.k))),))]


class _Pricer:
    """Seconds a fit will take, from the base fits' seconds, corrected by what ran.

    A guess is the base fit's mean seconds times the fit's share of the base
    size (affine: a fit on a few rows still costs :data:`FIXED_SHARE` of a base
    fit, measured on digits' CNN) and, for a bigger size knob, its ratio to the
    current size; ``scale``
    is what every fit so far really took over what it was guessed to take,
    ``overhead`` the last round's wall time over its ideal packing on the workers.
    """

    def __init__(self, base_seconds: list[float], n_train: int, current: Mapping[str, Any],
                 n_workers: int, wall_s: float | None) -> None:
        self.base_s = float(np.mean(base_seconds))
        self.n_train, self.current, self.n_workers = n_train, current, n_workers
        self.guessed = self.taken = float(np.sum(base_seconds))
        self.overhead = 1.0
        if wall_s is not None:
            self._overhead(base_seconds, wall_s)

    @property
    def scale(self) -> float:
        return self.taken / self.guessed if self.guessed > 0 and self.taken > 0 else 1.0

    def guess(self, point: Point) -> float:
        """Seconds of one fit, before the correction by ``scale``."""
        share = point.n_train / max(self.n_train, 1)
        cost = self.base_s * (FIXED_SHARE + (1 - FIXED_SHARE) * share)
        for name, value in point.overrides:
            now = self.current.get(name)
            if name == "size" and isinstance(now, int | float) and 0 < now < value:
                cost *= float(value) / float(now)
        return cost

    def learn(self, points: list[Point], scores: dict[Point, PointScore], wall_s: float
              ) -> None:
        ran = [p for p in points if p in scores]
        self.guessed += sum(self.guess(p) for p in ran)
        self.taken += sum(scores[p].seconds for p in ran)
        self._overhead([scores[p].seconds for p in ran], wall_s)

    def _overhead(self, seconds: list[float], wall_s: float) -> None:
        ideal = makespan(seconds, self.n_workers)
        if ideal > 0:
            self.overhead = min(3.0, max(1.0, wall_s / ideal))

    def choose(self, groups: list[_Group], scores: dict[Point, PointScore], left_s: float
               ) -> list[_Group]:
        """The groups, in order, whose fits still end within ``left_s`` seconds."""
        chosen: list[_Group] = []
        costs: list[float] = []
        seen = set(scores)
        for group in groups:
            fresh = [p for p in group.points if p not in seen]
            trial = costs + [self.guess(p) * self.scale for p in fresh]
            if makespan(trial, self.n_workers) * self.overhead <= left_s:
                chosen.append(group)
                costs = trial
                seen.update(fresh)
        return chosen
