"""The diagnosis stage: plan the sweep of fits, run it, and assemble the Diagnosis.

:func:`diagnose` is what a project (or the autopilot) calls: it fits the
iteration's architecture on k folds of train ∪ val at several training sizes
and settings (:mod:`loopml.diagnose.curves`), measures the baseline, and hands
the numbers to :class:`~loopml.diagnose.diagnosis.Diagnosis`, whose verdict
and advice (:mod:`loopml.diagnose.advice`) read them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from loopml.data.dataset import Dataset
from loopml.data.images import modality
from loopml.data.split import Split
from loopml.diagnose.advice import advise
from loopml.diagnose.curves import Folds, Point, ValidationCurve, band, score_points, summarize
from loopml.diagnose.diagnosis import Diagnosis
from loopml.diagnose.evidence import CurveSetting
from loopml.diagnose.learning import LearningCurve, extrapolate
from loopml.iteration import Iteration
from loopml.metrics import METRICS
from loopml.models.registry import EstimatorFactory, get_architecture
from loopml.progress import Progress, counter

#: shares of the largest fold's training rows the learning curve is measured at
LEARNING_FRACTIONS = (0.1, 0.25, 0.45, 0.7, 1.0)
#: cheap families whose cross-validated error stands in for a missing baseline
REFERENCES = ("linear", "gbt")
#: a gap is "well above" when it exceeds this share of the error scale
RELATIVE_TOLERANCE = 0.15


@dataclass
class Sweep:
    """The points a diagnosis needs, grouped by what they are for."""

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


def plan(family: type, folds: Folds, n_train: int, *, curves: bool) -> Sweep:
    k = range(folds.k)
    base = [Point((), n_train, f) for f in k]
    if not curves:
        return Sweep(base, {}, {})
    sizes = sorted({max(2, round(fr * folds.max_train)) for fr in LEARNING_FRACTIONS})
    learning = {n: [Point((), n, f) for f in k] for n in sizes}
    knobs = {"reg": family.reg_grid, "size": family.size_grid}
    grids = {knob: {float(v): [Point(((knob, _knob_value(knob, v)),), n_train, f) for f in k]
                    for v in values} for knob, values in knobs.items() if values}
    return Sweep(base, learning, grids)


def _knob_value(knob: str, value: float) -> float:
    return int(value) if knob == "size" and float(value).is_integer() else float(value)


def _validation_curve(knob: str, groups: dict[float, list[Point]], scores, current: float,
                      current_error: float, tolerance: float) -> ValidationCurve:
    points = [summarize(scores, x, pts) for x, pts in sorted(groups.items())]
    curve = ValidationCurve(knob, points, float(current), current_error)
    finite_points = [p for p in points if np.isfinite(p.val)]
    if not finite_points:
        return curve
    best = min(finite_points, key=lambda p: p.val)
    curve.best, curve.best_error = best.x, best.val
    better = best.val < current_error - tolerance
    if not better:
        curve.setting = CurveSetting.well_set
    elif knob == "reg":
        curve.setting = (CurveSetting.under_regularized if best.x > current
                         else CurveSetting.over_regularized)
    else:
        curve.setting = CurveSetting.too_small if best.x > current else CurveSetting.too_big
    return curve


@dataclass(frozen=True)
class Reference:
    """What the diagnosis measures against: the scope's baseline and target, if any."""

    metric: str
    baseline: float | None = None  # in metric units, from loopml.yaml
    baseline_source: str = "human-level"
    target_performance: float | None = None


def _baseline(reference: Reference, factory: EstimatorFactory, dataset: Dataset, folds: Folds,
              *, seed: int, n_jobs, ray_address, advance) -> tuple[float, str, bool, str, int]:
    """The scope's baseline, or the best cheap model's cross-validated error."""
    metric = METRICS[reference.metric]
    if reference.baseline is not None:
        value = reference.baseline
        return (metric.error(value), reference.baseline_source, False,
                f"from loopml.yaml: {metric.name} {value:g} ({reference.baseline_source})", 0)
    best: tuple[float, str] | None = None
    n_fits = 0
    for name in REFERENCES:
        if not factory.supports(name):
            continue
        estimator = factory.make(name, quiet=True)
        points = [Point((), folds.max_train, f) for f in range(folds.k)]
        scores = score_points(estimator, dataset, folds, points, metric=metric.name, seed=seed,
                              n_jobs=n_jobs, ray_address=ray_address,
                              on_done=lambda point, score: advance())
        n_fits += len(points)
        error = summarize(scores, 0, points).val
        if np.isfinite(error) and (best is None or error < best[0]):
            best = (error, name)
    if best is None:
        return float("nan"), "none", True, "no reference model could be fitted", n_fits
    note = (f"no baseline in loopml.yaml, so loopml estimated one: the best cheap model "
            f"({best[1]}, defaults, {folds.k}-fold val error {best[0]:.4g}). A cheap model "
            "is a pessimistic stand-in for human-level error; set baseline: in loopml.yaml "
            "for a sharper verdict")
    return best[0], f"estimated ({best[1]})", True, note, n_fits


def diagnose(iteration: Iteration, dataset: Dataset, split: Split, *,
             factory: EstimatorFactory, reference: Reference, seed: int = 0, folds: int = 5,
             curves: bool = True, n_jobs: int | None = None, ray_address: str | None = None,
             progress: Progress | None = None) -> Diagnosis:
    """Diagnose ``iteration`` on ``dataset`` and ``split`` (see the module docstring).

    ``progress("fits", done, total)`` is called as the sweep's fits finish.
    """
    start = time.perf_counter()
    metric = METRICS[reference.metric]
    fold_set = Folds.make(dataset, split, k=folds, seed=seed)
    n_train = min(iteration.n_train, fold_set.max_train)
    family = get_architecture(iteration.architecture)
    estimator = factory.like(iteration.architecture, iteration.params)
    sweep = plan(family, fold_set, n_train, curves=curves)
    n_refs = 0 if reference.baseline is not None else folds * sum(
        factory.supports(r) for r in REFERENCES)
    advance = counter(progress, "fits", n_refs + len(sweep.all()))
    baseline, source, estimated, note, n_ref = _baseline(
        reference, factory, dataset, fold_set, seed=seed, n_jobs=n_jobs,
        ray_address=ray_address, advance=advance)
    scores = score_points(estimator, dataset, fold_set, sweep.all(), metric=metric.name,
                          seed=seed, n_jobs=n_jobs, ray_address=ray_address,
                          on_done=lambda point, score: advance())
    d = _assemble(scores, sweep, iteration, dataset, split, reference, baseline=baseline)
    d.baseline_source, d.baseline_estimated, d.baseline_note = source, estimated, note
    d.n_fits = n_ref + len(sweep.all())
    if curves:
        _add_curves(d, scores, sweep, fold_set, estimator, seed)
    d.advice = advise(d)
    d.seconds = round(time.perf_counter() - start, 3)
    return d


def _assemble(scores, sweep: Sweep, iteration: Iteration, dataset: Dataset, split: Split,
              reference: Reference, *, baseline: float) -> Diagnosis:
    metric = METRICS[reference.metric]
    train = np.array([scores[p].train_error for p in sweep.base])
    val = np.array([scores[p].val_error for p in sweep.base])
    ok = np.isfinite(train) & np.isfinite(val)
    train, val = train[ok], val[ok]
    j_train, j_cv = float(train.mean()), float(val.mean())
    target = reference.target_performance
    target_error = None if target is None else metric.error(target)
    scale = max(baseline if np.isfinite(baseline) else 0.0, j_cv)
    floor = 0.005 if metric.upper == 1.0 else 0.0
    bias_band = band(train - baseline) if np.isfinite(baseline) else float("nan")
    var_band = band(val - train)
    tolerance = max(RELATIVE_TOLERANCE * scale, floor)
    return Diagnosis(
        run_id=iteration.run_id, architecture=iteration.architecture, metric=metric.name,
        modality=modality(dataset), folds=len(sweep.base), n_train=sweep.base[0].n_train,
        baseline_error=baseline, baseline_source="", baseline_estimated=False,
        baseline_note="", target_error=target_error, j_train=j_train,
        j_train_band=band(train), j_cv=j_cv, j_cv_band=band(val),
        avoidable_bias=j_train - baseline, bias_band=bias_band, variance=j_cv - j_train,
        variance_band=var_band, tolerance=tolerance,
        data_version=dataset.version, split_version=split.version,
        created=datetime.now(UTC).isoformat(timespec="seconds"))


def _doubling_gain(n: int, sizes: np.ndarray, errors: np.ndarray, fit) -> float:
    """How much val error should fall if this iteration had twice its training data."""
    if fit.fitted:
        def law(x: float) -> float:
            return fit.a * x ** -fit.b + fit.asymptote
        return float(law(n) - law(2 * n))
    ok = np.isfinite(errors)
    if ok.sum() >= 2 and 2 * n <= sizes[ok].max():
        return float(np.interp(n, sizes[ok], errors[ok]) - np.interp(2 * n, sizes[ok],
                                                                     errors[ok]))
    return float("nan")


def _add_curves(d: Diagnosis, scores, sweep: Sweep, folds: Folds, estimator, seed: int
                ) -> None:
    points = [summarize(scores, n, pts) for n, pts in sorted(sweep.learning.items())]
    sizes = np.array([p.x for p in points])
    errors = np.array([p.val for p in points])
    extrapolation = extrapolate(sizes, errors, target_error=d.reach_error,
                                tolerance=d.tolerance, seed=seed)
    gain = _doubling_gain(d.n_train, sizes, errors, extrapolation)
    d.learning_curve = LearningCurve(points, extrapolation, folds.max_train, gain)
    params = estimator.get_params()
    for knob, groups in sweep.curves.items():
        d.validation_curves[knob] = _validation_curve(knob, groups, scores, params[knob],
                                                      d.j_cv, d.tolerance)
