"""The Diagnosis of one iteration: bias and variance against a baseline.

The standard recipe: compare the baseline error (human-level, a competing
system, or an estimate), the training error J_train and the cross-validated
error J_cv. Avoidable bias = J_train - baseline; variance = J_cv - J_train.
Both come with 95% bands over k folds of train ∪ val (the test part is never
touched), and the learning and validation curves say which remedy the
evidence supports.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loopml.atomic import write_text_atomic
from loopml.data.dataset import Dataset
from loopml.data.images import modality
from loopml.data.split import Split
from loopml.diagnose.advice import advise
from loopml.diagnose.curves import Folds, Point, band, score_points, summarize
from loopml.diagnose.learning import extrapolate
from loopml.iteration import Iteration
from loopml.metrics import METRICS
from loopml.models.registry import EstimatorFactory, get_architecture
from loopml.progress import Progress, counter

DIAGNOSIS_FILE = "diagnosis.json"
LEARNING_FRACTIONS = (0.1, 0.25, 0.45, 0.7, 1.0)
REFERENCES = ("linear", "gbt")
RELATIVE_TOLERANCE = 0.15
VERDICT_TEXT = {
    "high_bias": "high bias: the model underfits; it does not reach the baseline even on "
                 "its training data",
    "high_variance": "high variance: the model overfits; it does much better on its "
                     "training data than on new data",
    "both": "high bias and high variance: it underfits and overfits at once",
    "at_target": "at target: val error is within reach of the target",
}


@dataclass
class Diagnosis:
    """Evidence and verdict for one iteration (attributes read like the recipe)."""

    run_id: str
    architecture: str
    metric: str
    modality: str
    folds: int
    n_train: int
    baseline_error: float
    baseline_source: str
    baseline_estimated: bool
    baseline_note: str
    target_error: float | None
    j_train: float
    j_train_band: float
    j_cv: float
    j_cv_band: float
    avoidable_bias: float
    bias_band: float
    variance: float
    variance_band: float
    tolerance: float
    verdict: str = ""
    verdict_text: str = ""
    learning_curve: dict = field(default_factory=dict)
    validation_curves: dict = field(default_factory=dict)
    advice: list[dict] = field(default_factory=list)
    data_version: str = ""
    split_version: str = ""
    created: str = ""
    seconds: float = 0.0
    n_fits: int = 0

    @property
    def reach_error(self) -> float:
        return self.target_error if self.target_error is not None else self.baseline_error

    @property
    def gap_to_reach(self) -> float:
        return self.j_cv - self.reach_error

    @property
    def gain_from_doubling(self) -> float:
        """Expected fall in val error from twice this iteration's training data (NaN: unknown)."""
        value = self.learning_curve.get("gain_from_doubling")
        return float("nan") if value is None else float(value)

    @property
    def more_data_helps(self) -> bool:
        gain = self.gain_from_doubling
        if np.isfinite(gain):
            return gain > self.tolerance
        return not self.learning_curve.get("extrapolation", {}).get("flattened", True)

    @property
    def learning_message(self) -> str:
        message = self.learning_curve.get("extrapolation", {}).get("message", "not computed")
        gain = self.gain_from_doubling
        if not np.isfinite(gain):
            return message
        return (f"doubling the training data from {self.n_train} to {2 * self.n_train} "
                f"examples should lower val error by about {gain:.4g}; {message}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """The dict with NaN and infinity as None, as JSON needs."""
        return _finite(self.to_dict())

    def save(self, directory: Path) -> Path:
        return write_text_atomic(directory / DIAGNOSIS_FILE,
                                 json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Diagnosis | None:
        path = directory / DIAGNOSIS_FILE
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def judge(d: Diagnosis) -> str:
    """The verdict: at target first, then which gap is well above the tolerance."""
    if d.j_cv <= d.reach_error + d.tolerance:
        return "at_target"
    bias = d.avoidable_bias > max(d.tolerance, d.bias_band)
    variance = d.variance > max(d.tolerance, d.variance_band)
    if bias and variance:
        return "both"
    if bias or variance:
        return "high_bias" if bias else "high_variance"
    return "high_bias" if d.avoidable_bias >= d.variance else "high_variance"


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
                      current_error: float, tolerance: float) -> dict:
    points = [summarize(scores, x, pts) for x, pts in sorted(groups.items())]
    finite = [p for p in points if np.isfinite(p.val)]
    out: dict[str, Any] = {"knob": knob, "points": [p.to_dict() for p in points],
                           "current": float(current), "current_error": current_error,
                           "best": None, "best_error": None, "setting": None}
    if not finite:
        return out
    best = min(finite, key=lambda p: p.val)
    out.update(best=best.x, best_error=best.val)
    better = best.val < current_error - tolerance
    if not better:
        out["setting"] = "well set"
    elif knob == "reg":
        out["setting"] = "under-regularized" if best.x > current else "over-regularized"
    else:
        out["setting"] = "too small" if best.x > current else "too big"
    return out


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
    d.verdict = judge(d)
    d.verdict_text = VERDICT_TEXT[d.verdict]
    d.advice = [a.to_dict() for a in advise(d)]
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
    d.learning_curve = {"points": [p.to_dict() for p in points],
                        "extrapolation": extrapolation.to_dict(), "max_train": folds.max_train,
                        "gain_from_doubling": gain}
    params = estimator.get_params()
    for knob, groups in sweep.curves.items():
        d.validation_curves[knob] = _validation_curve(knob, groups, scores, params[knob],
                                                      d.j_cv, d.tolerance)
