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
from loopml.diagnose.budget import (
    BUDGET_FOLDS,
    FULL_FOLDS,
    Planning,
    Sweep,
    Tally,
    check_budget,
    plan,
    spend,
    workers,
)
from loopml.diagnose.curves import (
    Folds,
    Point,
    PointScore,
    ValidationCurve,
    band,
    score_points,
    summarize,
)
from loopml.diagnose.diagnosis import Diagnosis
from loopml.diagnose.evidence import CurveSetting
from loopml.diagnose.learning import LearningCurve, extrapolate
from loopml.iteration import Iteration
from loopml.metrics import METRICS, Metric, chance_scores
from loopml.models.registry import EstimatorFactory, get_architecture
from loopml.progress import Progress

#: families for the strong reference, first choice first; the diagnosed family never
#: references itself, so a verdict never compares a model with its own kind
REFERENCES = ("gbt", "linear", "mlp")
#: a gap is "well above" when it exceeds this share of the error scale
RELATIVE_TOLERANCE = 0.15


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


@dataclass(frozen=True)
class _Baseline:
    """The baseline a diagnosis measures against, and the strong reference behind it."""

    error: float
    source: str
    estimated: bool
    note: str
    n_fits: int = 0
    architecture: str = ""  # the strong reference's family; "" when none was fitted
    reference_error: float = float("nan")
    reference_band: float = float("nan")


def _reference_family(factory: EstimatorFactory, architecture: str) -> str | None:
    """The first of :data:`REFERENCES` that fits the data and is not the diagnosed family."""
    own = get_architecture(architecture).name
    return next((name for name in REFERENCES if name != own and factory.supports(name)), None)


def _reference_fits(reference: Reference, factory: EstimatorFactory, architecture: str,
                    k: int) -> int:
    """How many fits :func:`_baseline` will make (for the progress count)."""
    if reference.baseline is not None or _reference_family(factory, architecture) is None:
        return 0
    return k


def _baseline(reference: Reference, factory: EstimatorFactory, dataset: Dataset, folds: Folds,
              architecture: str, *, seed: int, n_jobs, ray_address, advance) -> _Baseline:
    """The scope's baseline, or else a strong reference from another family at defaults."""
    metric = METRICS[reference.metric]
    if reference.baseline is not None:
        value = reference.baseline
        return _Baseline(metric.error(value), reference.baseline_source, False,
                         f"from loopml.yaml: {metric.name} {value:g} "
                         f"({reference.baseline_source})")
    name = _reference_family(factory, architecture)
    if name is None:
        return _Baseline(float("nan"), "none", True,
                         f"no family other than {architecture} fits this data, so there is "
                         "no reference model; set baseline: in loopml.yaml")
    estimator = factory.make(name, quiet=True)
    points = [Point((), folds.max_train, f) for f in range(folds.k)]
    scores = score_points(estimator, dataset, folds, points, metric=metric.name, seed=seed,
                          n_jobs=n_jobs, ray_address=ray_address,
                          on_done=lambda point, score: advance())
    summary = summarize(scores, 0, points)
    error, spread = summary.val, summary.val_band
    if not np.isfinite(error):
        return _Baseline(float("nan"), "none", True,
                         f"the {name} reference could not be fitted on any fold", len(points),
                         name)
    note = (f"no baseline in loopml.yaml, so loopml estimated one: a strong reference from "
            f"another family ({name}, defaults, {folds.k}-fold val error {error:.4g}). It is "
            "a pessimistic stand-in for human-level error; set baseline: in loopml.yaml for "
            "a sharper verdict")
    return _Baseline(error, f"estimated ({name})", True, note, len(points), name, error,
                     spread)


def _majority_errors(dataset: Dataset, folds: Folds, metric: Metric) -> np.ndarray:
    """Per fold, the val error of a model that learned only the class balance (or the mean).

    No fit: :func:`loopml.metrics.chance_scores` scores the training fold's class
    frequencies (or mean) on the held-out fold, so the reference costs nothing.
    """
    classes = dataset.classes if dataset.task == "classification" else None
    errors = []
    for train_ids, held_ids in folds.pairs:
        scores = chance_scores(dataset.task, dataset.y(train_ids), dataset.y(held_ids),
                               classes=classes)
        value = scores.get(metric.name, float("nan"))
        errors.append(metric.error(value) if np.isfinite(value) else float("nan"))
    return np.array(errors, dtype=float)


def diagnose(iteration: Iteration, dataset: Dataset, split: Split, *,
             factory: EstimatorFactory, reference: Reference, seed: int = 0,
             folds: int | None = None, full: bool = False, budget: float | None = None,
             curves: bool = True, n_jobs: int | None = None, ray_address: str | None = None,
             progress: Progress | None = None) -> Diagnosis:
    """Diagnose ``iteration`` on ``dataset`` and ``split`` (see the module docstring).

    ``full`` runs the complete sweep (5 folds, every learning size, the whole
    grids). Otherwise the sweep keeps within ``budget`` seconds (default
    :data:`~loopml.diagnose.budget.DEFAULT_BUDGET_S`) on 3 folds: the base
    fits, then the most informative curve points the rest affords
    (:mod:`loopml.diagnose.budget`); ``d.planning`` says what ran and what was
    left out. ``folds`` overrides either mode's count. ``progress("fits", done,
    total)`` is called as fits finish; in budget mode the total grows as it plans.
    """
    start = time.perf_counter()
    seconds = check_budget(budget, full=full)
    metric = METRICS[reference.metric]
    k = folds if folds is not None else FULL_FOLDS if full else BUDGET_FOLDS
    fold_set = Folds.make(dataset, split, k=k, seed=seed)
    n_train = min(iteration.n_train, fold_set.max_train)
    family = get_architecture(iteration.architecture)
    estimator = factory.like(iteration.architecture, iteration.params)
    current = estimator.get_params()
    sweep = plan(family, fold_set, n_train, curves=curves, current=current, full=full)
    first = sweep.all() if full or not curves else sweep.base  # budget: base fits first
    tally = Tally(progress, "fits", _reference_fits(reference, factory, iteration.architecture,
                                                    fold_set.k) + len(first))
    baseline = _baseline(reference, factory, dataset, fold_set, iteration.architecture,
                         seed=seed, n_jobs=n_jobs, ray_address=ray_address,
                         advance=tally.advance)

    def fit(points: list[Point]) -> dict[Point, PointScore]:
        return score_points(estimator, dataset, fold_set, points, metric=metric.name,
                            seed=seed, n_jobs=n_jobs, ray_address=ray_address,
                            on_done=lambda point, score: tally.advance())

    began = time.perf_counter()
    scores = fit(first)
    d = _assemble(scores, sweep, iteration, dataset, split, reference, baseline=baseline,
                  majority=_majority_errors(dataset, fold_set, metric))
    d.planning = Planning("full" if full else "budget", fold_set.k, None if full else seconds,
                          len(first), len(first),
                          float(np.mean([scores[p].seconds for p in sweep.base])))
    if curves and not full:
        spent = spend(sweep, scores, fit, family=family, current=current, folds=fold_set,
                      deadline=start + seconds, n_workers=workers(n_jobs, ray_address),
                      tolerance=d.tolerance, budget_s=seconds, tally=tally,
                      wall_s=time.perf_counter() - began)
        sweep, scores, d.planning = spent.sweep, spent.scores, spent.planning
    d.n_fits = baseline.n_fits + len(sweep.all())
    if curves:
        _add_curves(d, scores, sweep, fold_set, estimator, seed)
        if not sweep.learning:  # the budget afforded no learning curve
            d.learning_curve = None
    d.advice = advise(d)
    d.seconds = round(time.perf_counter() - start, 3)
    return d


def _assemble(scores, sweep: Sweep, iteration: Iteration, dataset: Dataset, split: Split,
              reference: Reference, *, baseline: _Baseline, majority: np.ndarray
              ) -> Diagnosis:
    """The Diagnosis from the base points' errors; ``majority`` holds one error per fold."""
    metric = METRICS[reference.metric]
    train = np.array([scores[p].train_error for p in sweep.base])
    val = np.array([scores[p].val_error for p in sweep.base])
    on_fold = majority[np.array([p.fold for p in sweep.base], dtype=int)]
    ok = np.isfinite(train) & np.isfinite(val)
    train, val = train[ok], val[ok]
    j_train, j_cv = _mean(train), _mean(val)
    paired = np.isfinite(on_fold[ok])  # the majority reference on the same folds as val
    majority_error = _mean(on_fold[ok][paired])
    target = reference.target_performance
    target_error = None if target is None else metric.error(target)
    b = baseline.error
    scale = max(b if np.isfinite(b) else 0.0, j_cv if np.isfinite(j_cv) else 0.0)
    floor = 0.005 if metric.upper == 1.0 else 0.0
    bias_band = band(train - b) if np.isfinite(b) else float("nan")
    var_band = band(val - train)
    tolerance = max(RELATIVE_TOLERANCE * scale, floor)
    return Diagnosis(
        run_id=iteration.run_id, architecture=iteration.architecture, metric=metric.name,
        modality=modality(dataset), folds=len(sweep.base), n_train=sweep.base[0].n_train,
        baseline_error=b, baseline_source=baseline.source,
        baseline_estimated=baseline.estimated, baseline_note=baseline.note,
        target_error=target_error, j_train=j_train,
        j_train_band=band(train), j_cv=j_cv, j_cv_band=band(val),
        avoidable_bias=j_train - b, bias_band=bias_band, variance=j_cv - j_train,
        variance_band=var_band, tolerance=tolerance,
        data_version=dataset.version, split_version=split.version,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        majority_error=majority_error, signal_band=band(val[paired] - on_fold[ok][paired]),
        reference_architecture=baseline.architecture,
        reference_error=baseline.reference_error, reference_band=baseline.reference_band)


def _mean(values: np.ndarray) -> float:
    """The mean, NaN (and no warning) when there is nothing to average."""
    return float(values.mean()) if len(values) else float("nan")


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
