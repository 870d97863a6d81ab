"""Compare candidates at several shares of the train part: which to use, and what it costs.

This is the engine behind ``loopml transfer --compare`` (scratch vs freeze vs
fine-tune vs lp-ft), and it is generic: each candidate is a label, an
architecture and its parameters, made by the project's one
:class:`~loopml.models.registry.EstimatorFactory`. Each is trained at every
train fraction (default 10%, 30% and 100%) over seeds ``factory.seed + i``;
seed ``s`` also draws the share of the train part
(:func:`loopml.train.train_subset`), so the spread over seeds includes which
rows were drawn, as in :mod:`loopml.grow.lift`. Every fit is scored on the
whole val part; the test part is never read.

The recommendation follows the autopilot's rule: a candidate is better only
when the difference of the means is beyond the spread over seeds (the larger
of the two sample standard deviations, as for a lift). Among the candidates
within the spread of the best, the cheapest (mean fit time) is recommended.

Nothing here writes: the fits are not recorded as project runs. A comparison
is dozens of fits on shares of the data; recorded, they would fill
``loopml runs`` and compete for the best run, where a seed that happens to
score high would win by luck. The verb that uses it stores the result
(:meth:`Comparison.to_dict`) and records the one iteration the user chooses.
It sits in ``grow``'s layer because it fits models through :mod:`loopml.train`.

>>> comparison = compare_candidates(dataset, split, factory,  # doctest: +SKIP
...     [Candidate("linear", "linear"), Candidate("gbt", "gbt", {"size": 16})],
...     metric="accuracy")
>>> comparison.recommendation().sentence  # doctest: +SKIP
'at your data size (800 train rows), linear is within the spread of gbt ...'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loopml.data.dataset import Dataset
from loopml.data.split import Split
from loopml.exceptions import LoopmlError
from loopml.metrics import METRICS
from loopml.models.registry import EstimatorFactory
from loopml.parallel import parallel_map
from loopml.progress import Progress, counter
from loopml.train import fit_candidate, predict_parts, score_parts, train_subset

DEFAULT_FRACTIONS = (0.1, 0.3, 1.0)
#: a candidate within the spread of the best is preferred when it costs at most this share
CHEAPER = 0.5
DEFAULT_SEEDS = 3
_SHARES = {2: "half", 3: "a third", 4: "a quarter", 5: "a fifth", 6: "a sixth",
           7: "a seventh", 8: "an eighth", 9: "a ninth", 10: "a tenth"}


@dataclass(frozen=True)
class Candidate:
    """One contender: a label for tables, an architecture and its parameters.

    ``size`` and ``reg`` in ``params`` are the knobs every architecture has;
    the rest are passed to the estimator (``backbone``, ``mode``, ...).
    """

    label: str
    architecture: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One candidate at one train fraction: its val metric and fit time per seed."""

    label: str
    fraction: float
    n_train: int
    scores: tuple[float, ...]
    fit_seconds: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds (0 with one seed)."""
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    @property
    def cost(self) -> float:
        """Mean fit time in seconds."""
        return float(np.mean(self.fit_seconds))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "fraction": self.fraction, "n_train": self.n_train,
                "scores": [_plain(s) for s in self.scores], "mean": _plain(self.mean),
                "std": _plain(self.std), "fit_seconds": list(self.fit_seconds),
                "mean_fit_seconds": self.cost}


@dataclass(frozen=True)
class Recommendation:
    """Which candidate to use at one train fraction, and why in one sentence."""

    label: str
    best: str
    within_spread: tuple[str, ...]
    fraction: float
    n_train: int
    sentence: str


@dataclass
class Comparison:
    """Every candidate at every train fraction, scored on val over the same seeds."""

    metric: str
    greater_is_better: bool
    seeds: list[int]
    fractions: list[float]
    candidates: list[Candidate]
    cells: list[Cell]
    n_val: int

    def cell(self, label: str, fraction: float) -> Cell:
        return next(c for c in self.cells if c.label == label and c.fraction == fraction)

    def rows(self) -> list[dict[str, Any]]:
        """One plain row per candidate and fraction, ready for a Rich or HTML table."""
        return [{"candidate": c.label, "fraction": c.fraction, "n_train": c.n_train,
                 f"val {self.metric}": _plain(c.mean), "std": _plain(c.std),
                 "fit s": round(c.cost, 3)} for c in self.cells]

    def recommendation(self, fraction: float | None = None) -> Recommendation:
        """The recommendation at ``fraction`` (default the largest: the data the user has)."""
        fraction = max(self.fractions) if fraction is None else fraction
        cells = [self.cell(c.label, fraction) for c in self.candidates]
        return recommend(cells, metric=self.metric, greater_is_better=self.greater_is_better,
                         n_seeds=len(self.seeds))

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "greater_is_better": self.greater_is_better,
                "seeds": list(self.seeds), "fractions": list(self.fractions),
                "n_val": self.n_val,
                "candidates": [{"label": c.label, "architecture": c.architecture,
                                "params": dict(c.params)} for c in self.candidates],
                "cells": [c.to_dict() for c in self.cells],
                "recommendations": {str(f): self.recommendation(f).sentence
                                    for f in self.fractions}}

    def figure(self) -> Any:
        """Val metric against train rows, one line per candidate, error bars one std."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for candidate in self.candidates:
            cells = sorted((c for c in self.cells if c.label == candidate.label),
                           key=lambda c: c.n_train)
            fig.add_trace(go.Scatter(
                x=[c.n_train for c in cells], y=[c.mean for c in cells], name=candidate.label,
                mode="lines+markers", error_y={"type": "data", "array": [c.std for c in cells]},
                customdata=[[c.fraction, c.cost] for c in cells],
                hovertemplate="%{x} train rows (%{customdata[0]:.0%})<br>val "
                              f"{self.metric} " "%{y:.4f}<br>fit %{customdata[1]:.2f} s"))
        fig.update_layout(xaxis_title="train rows", yaxis_title=f"val {self.metric}",
                          title=f"val {self.metric} against train size "
                                f"(mean and std over {len(self.seeds)} seeds)")
        fig.update_xaxes(type="log")
        return fig


def recommend(cells: Sequence[Cell], *, metric: str, greater_is_better: bool,
              n_seeds: int) -> Recommendation:
    """The cheapest candidate within the spread of the best, if it saves half the cost.

    ``cells`` are the candidates at one fraction. A candidate is within the
    spread of the best when the difference of their means is not larger than
    the larger of their two standard deviations over seeds (the autopilot's
    rule). Being within the spread says only that 3 seeds cannot tell the two
    apart, and a noisy candidate is within the spread of almost anything: on a
    tenth of the reviews (H200), fine-tuning's 0.763 ± 0.039 was "within" lp-ft's
    0.799 ± 0.004 at 97% of its cost. So a cheaper candidate is recommended
    over the best only when it costs at most :data:`CHEAPER` of the best's
    time per fit, a saving worth a possibly lower score.
    """
    scored = [c for c in cells if np.isfinite(c.mean)]
    if not scored:
        raise LoopmlError(f"no candidate has a val {metric} to compare",
                          hint="the metric is not defined on the val part (one class only?)")
    sign = 1.0 if greater_is_better else -1.0
    best = max(scored, key=lambda c: (sign * c.mean, -c.cost))
    within = [c for c in scored if abs(best.mean - c.mean) <= max(best.std, c.std)]
    cheaper = [c for c in within if c is not best and c.cost <= CHEAPER * best.cost]
    chosen = min(cheaper, key=lambda c: (c.cost, -sign * c.mean)) if cheaper else best
    where = f"at your data size ({best.n_train} train rows)" if best.fraction >= 1 else (
        f"at {best.fraction:.0%} of your data ({best.n_train} train rows)")
    spread = f"over {n_seeds} seeds" if n_seeds > 1 else "(one seed: no spread)"
    if chosen is not best:
        sentence = (f"{where}, {chosen.label} is within the spread of {best.label} (val "
                    f"{metric} {_pm(chosen)} against {_pm(best)} {spread}) at "
                    f"{_share(chosen.cost, best.cost)} of the cost ({chosen.cost:.3g} s against "
                    f"{best.cost:.3g} s per fit): use {chosen.label}")
    else:
        others = [c for c in scored if c is not best]
        tied = [c for c in within if c is not best]
        if tied and all(c.cost >= best.cost for c in tied):
            names = ", ".join(c.label for c in tied)
            sentence = (f"{where}, {best.label} is best (val {metric} {_pm(best)} {spread}) "
                        f"and the cheapest of those within its spread ({names}): use "
                        f"{best.label}")
        elif tied:  # within the spread, but not half as costly: no saving worth a lower score
            names = ", ".join(f"{c.label} ({_pm(c)}, {_share(c.cost, best.cost)} of the cost)"
                              for c in tied)
            sentence = (f"{where}, {best.label} is best (val {metric} {_pm(best)} {spread}); "
                        f"within its spread but not half as costly: {names}: use "
                        f"{best.label}")
        elif others:
            runner = max(others, key=lambda c: sign * c.mean)
            sentence = (f"{where}, {best.label} is best beyond the spread {spread}: val "
                        f"{metric} {_pm(best)} against {runner.label}'s {_pm(runner)}: use "
                        f"{best.label}")
        else:
            sentence = f"{where}, {best.label} scores val {metric} {_pm(best)} {spread}"
    return Recommendation(chosen.label, best.label, tuple(c.label for c in within),
                          best.fraction, best.n_train, sentence)


def compare_candidates(dataset: Dataset, split: Split, factory: EstimatorFactory,
                       candidates: Sequence[Candidate], *, metric: str,
                       fractions: Sequence[float] = DEFAULT_FRACTIONS,
                       seeds: int = DEFAULT_SEEDS, n_jobs: int | None = None,
                       progress: Progress | None = None) -> Comparison:
    """Train every candidate at every train fraction over ``seeds`` seeds; score on val.

    Parameters
    ----------
    dataset, split : Dataset, Split
        The project's data and stored split; the test part is never read.
    factory : EstimatorFactory
        Makes each candidate's estimator; seed ``i`` is ``factory.seed + i``.
    candidates : sequence of Candidate
        Distinct labels; ``params`` may hold ``size`` and ``reg``.
    metric : str
        The metric compared on val (the scope's).
    fractions : sequence of float, default (0.1, 0.3, 1.0)
        Shares of the train part, each in (0, 1].
    seeds : int, default 3
        Fits per candidate and fraction: ``len(candidates) * len(fractions) *
        seeds`` fits in all, run by :func:`loopml.parallel.parallel_map`.
    progress : callable, optional
        Hears ``("fits", done, total)``.

    Returns
    -------
    Comparison
        Not recorded anywhere (see the module's docstring for why).
    """
    fractions = _check(candidates, fractions, seeds, metric)
    val = split.ids("val")
    if len(val) == 0:
        raise LoopmlError("the val part is empty: there is nothing to compare candidates on",
                          hint="re-split the project with a val part ('loopml resplit')")
    seed_list = [factory.seed + i for i in range(seeds)]
    shares = {(f, s): train_subset(dataset, split, f, seed=s)
              for f in fractions for s in seed_list}
    tasks = [(c, f, s) for c in candidates for f in fractions for s in seed_list]
    advance = counter(progress, "fits", len(tasks))

    def fit(task: tuple[Candidate, float, int]) -> tuple[float, float]:
        candidate, fraction, seed = task
        params = dict(candidate.params)
        size, reg = params.pop("size", None), params.pop("reg", None)
        estimator = factory.make(candidate.architecture, size=size, reg=reg, seed=seed,
                                 quiet=True, **params)
        fitted = fit_candidate(candidate.architecture, estimator, dataset, split,
                               train_ids=shares[fraction, seed])
        predictions = predict_parts(fitted.estimator, dataset, split, ("val",))
        classes = (list(fitted.estimator.classes_) if dataset.task == "classification"
                   else [])
        score = score_parts(predictions, dataset.task, classes).get(f"val_{metric}", np.nan)
        return float(score), fitted.seconds

    results = []
    for result in parallel_map(fit, tasks, n_jobs=n_jobs):
        results.append(result)
        advance()
    cells, at = [], 0
    for candidate in candidates:
        for fraction in fractions:
            done = results[at:at + seeds]
            at += seeds
            cells.append(Cell(candidate.label, fraction, len(shares[fraction, seed_list[0]]),
                              tuple(s for s, _ in done), tuple(round(t, 4) for _, t in done)))
    spec = METRICS[metric]
    return Comparison(spec.name, spec.greater_is_better, seed_list, list(fractions),
                      list(candidates), cells, len(val))


def _check(candidates: Sequence[Candidate], fractions: Sequence[float], seeds: int,
           metric: str) -> list[float]:
    """Refuse what would make the comparison meaningless, before any fit."""
    if not candidates:
        raise LoopmlError("no candidates to compare", hint="name at least two")
    labels = [c.label for c in candidates]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise LoopmlError(f"candidate label(s) {', '.join(map(repr, repeated))} given more "
                          "than once", hint="give every candidate its own label")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise LoopmlError(f"seeds must be a whole number of at least 1, got {seeds!r}",
                          hint="3 or more gives a spread to judge the differences against")
    bad = [f for f in fractions if not 0 < f <= 1]
    if not fractions or bad:
        raise LoopmlError(f"train fractions must be in (0, 1], got {list(fractions)}",
                          hint="e.g. 0.1 0.3 1.0")
    if metric not in METRICS:
        raise LoopmlError(f"unknown metric {metric!r}",
                          hint=f"one of {', '.join(sorted(METRICS))}")
    return sorted({float(f) for f in fractions})


def _pm(cell: Cell) -> str:
    return f"{cell.mean:.4f} ± {cell.std:.4f}"


def _share(cheap: float, dear: float) -> str:
    """'a tenth', 'half', '1/40' or '80%': how the cheaper cost reads against the dearer."""
    if dear <= 0 or cheap >= dear:
        return "the same"
    ratio = dear / max(cheap, 1e-9)
    whole = round(ratio)
    if ratio >= 1.9 and abs(ratio - whole) <= 0.15 * whole:
        return _SHARES.get(whole, f"1/{whole}")
    return f"{cheap / dear:.0%}"


def _plain(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
