"""Fit and evaluate one candidate on the stored split, and record it as an Iteration.

Fitting (:func:`fit_candidate`) is kept apart from recording
(:func:`record_iteration`) so fits can run in parallel workers while one
process writes the store. Reports are built elsewhere (:mod:`loopml.report`),
from what a recorded iteration leaves behind.

Recording also stores the majority reference (``<part>_chance_<metric>``: the
score of a model that learned only the class balance or the mean) and the
warnings that save a day (:func:`run_warnings`): a feature that leaks the
target, a run no better than the majority reference, a perfect score.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import Dataset
from loopml.data.leakage import DataWarning, WarningKind, find_leakage
from loopml.data.sampling import subsample
from loopml.data.split import Split
from loopml.exceptions import LoopmlError
from loopml.iteration import Iteration
from loopml.metrics import METRICS, Metric, chance_scores, evaluate
from loopml.track import Tracker

#: a run whose val error is not lower than the majority reference's by more than
#: this (in the metric's unit; a share of the reference's error for unbounded
#: metrics such as rmse) learned nothing from the features
CHANCE_TOLERANCE = 0.01
#: a perfect score on fewer examples of a part is no evidence of leakage (a model
#: right 97% of the time gets all 22 of iris's val examples right half the time)
MIN_PERFECT_ROWS = 50


@dataclass
class FitResult:
    """What a (possibly remote) fit hands back to the recording process."""

    architecture: str
    estimator: Any
    seconds: float
    train_ids: pd.Index | None = None


def train_subset(dataset: Dataset, split: Split, fraction: float | None, *, seed: int,
                 ids: pd.Index | None = None) -> pd.Index:
    """The train ids (or ``ids``, some of them), or a seeded, stratified share of them.

    ``ids`` lets a lift take the same share of the train part without an
    action's examples as the reference run took of the whole train part.
    """
    train = split.ids("train") if ids is None else ids
    if fraction is None or fraction >= 1:
        return train
    if not 0 < fraction < 1:
        raise LoopmlError(f"train fraction must be in (0, 1], got {fraction}")
    n = max(2, round(fraction * len(train)))
    labels = dataset.y(train) if dataset.task == "classification" else None
    return pd.Index(subsample(train, labels, n, seed=seed), name=train.name)


def fit_candidate(architecture: str, estimator: Any, dataset: Dataset, split: Split, *,
                  train_ids: pd.Index | None = None) -> FitResult:
    """Fit on train (or ``train_ids``); val is never shown to the fit.

    Families that stop early carve their own seeded holdout out of the
    training rows (:mod:`loopml.data.sampling`), so val only compares candidates.
    """
    train = split.ids("train") if train_ids is None else train_ids
    start = time.perf_counter()
    estimator.fit(dataset.X(train), dataset.y(train))
    return FitResult(architecture, estimator, time.perf_counter() - start, train)


def predict_parts(estimator: Any, dataset: Dataset, split: Split, parts: tuple[str, ...], *,
                  train_ids: pd.Index | None = None) -> pd.DataFrame:
    """Predictions (and class probabilities) for the ids of the given parts."""
    frames = []
    for part in parts:
        ids = train_ids if part == "train" and train_ids is not None else split.ids(part)
        if len(ids) == 0:
            continue
        X = dataset.X(ids)
        frame = pd.DataFrame({"id": ids.astype(str), "part": part, "y_true": dataset.y(ids)})
        if dataset.task == "classification":
            proba = estimator.predict_proba(X)
            frame["y_pred"] = estimator.classes_[np.argmax(proba, axis=1)]
            columns = pd.DataFrame(proba, columns=[f"proba:{c}" for c in estimator.classes_])
            frame = pd.concat([frame, columns], axis=1)  # one block: 200 classes, one copy
        else:
            frame["y_pred"] = estimator.predict(X)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def score_parts(predictions: pd.DataFrame, task: str, classes: list) -> dict[str, float]:
    """Every metric of the task on every part present, named ``<part>_<metric>``."""
    out: dict[str, float] = {}
    proba_cols = [f"proba:{c}" for c in classes]
    for part, rows in predictions.groupby("part", sort=False):
        proba = rows[proba_cols].to_numpy() if task == "classification" else None
        for name, value in evaluate(task, rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(),
                                    proba=proba, classes=classes).items():
            out[f"{part}_{name}"] = value
    return out


def _params(estimator: Any) -> dict[str, Any]:
    """The estimator's JSON-able settings (not the column list, which the schema holds)."""
    # where and how it ran, not what it is: the same model trained in another folder is the same
    skip = {"features", "verbose", "device", "cache_dir"}
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in estimator.get_params().items()
            if k not in skip and (v is None or isinstance(v, str | int | float | bool | tuple))}


def record_iteration(fit: FitResult, dataset: Dataset, split: Split, *, metric: str,
                     tracker: Tracker, seed: int = 0, tags: dict[str, str] | None = None
                     ) -> Iteration:
    """Evaluate a fitted candidate on train and val, and store everything as one run.

    ``iteration.json`` is written last and atomically: a run folder without it
    is an interrupted run, which every verb skips.
    """
    predictions = predict_parts(fit.estimator, dataset, split, ("train", "val"),
                                train_ids=fit.train_ids)
    classes = list(fit.estimator.classes_) if dataset.task == "classification" else []
    metrics = score_parts(predictions, dataset.task, classes)
    metrics.update(chance_metrics(dataset, split, metric, classes=classes,
                                  train_ids=fit.train_ids))
    params = _params(fit.estimator)
    all_tags = {"loopml.architecture": fit.architecture, "loopml.data_version": dataset.version,
                "loopml.split_version": split.version, "loopml.seed": str(seed), **(tags or {})}
    with tracker.run(name=f"{fit.architecture}", tags=all_tags) as run:
        iteration = Iteration(
            run_id=run.run_id, architecture=fit.architecture, params=params, metrics=metrics,
            metric=metric, data_version=dataset.version, split_version=split.version,
            created=datetime.now(UTC).isoformat(timespec="microseconds"),
            duration_s=round(fit.seconds, 3),
            n_train=len(split.ids("train") if fit.train_ids is None else fit.train_ids),
            tags=dict(tags or {}), seed=seed, path=run.local_dir)
        iteration.warnings = [w.message for w in find_leakage(dataset, split, seed=seed)
                              + run_warnings(iteration, predictions["part"].value_counts(),
                                             parts=("val",))] + _unread(fit)
        run.log(params=params, metrics={**metrics, "fit_seconds": fit.seconds})
        run.save_model(fit.estimator, schema=dataset.schema())
        iteration.save_predictions(predictions)
        iteration.save()
    return iteration


def _unread(fit: FitResult) -> list[str]:
    """A warning when the model left input columns unread (a text backbone reads text only)."""
    ignored = list(getattr(fit.estimator, "ignored_features_", None) or [])
    if not ignored:
        return []
    shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    return [f"{fit.architecture} reads only its backbone's inputs: {len(ignored)} column(s) "
            f"were not used ({shown}); a table model (linear, gbt) reads them"]


def chance_metrics(dataset: Dataset, split: Split, metric: str, *, classes: list,
                   train_ids: pd.Index | None = None) -> dict[str, float]:
    """The majority reference on train and val, named ``<part>_chance_<metric>``.

    The reference learns the class balance (or mean) of the rows the run was
    fitted on, so the two are compared on equal terms.
    """
    train = split.ids("train") if train_ids is None else train_ids
    out: dict[str, float] = {}
    for part, ids in (("train", train), ("val", split.ids("val"))):
        if len(ids) == 0 or len(train) == 0:
            continue
        scores = chance_scores(dataset.task, dataset.y(train), dataset.y(ids),
                               classes=classes or None)
        if metric in scores:
            out[f"{part}_chance_{metric}"] = scores[metric]
    return out


def run_warnings(iteration: Iteration, sizes: Mapping[str, int], *,
                 parts: tuple[str, ...] = ("val", "test")) -> list[DataWarning]:
    """What makes a run's scores misleading, read from its own metrics.

    A val score no better than the majority reference (``val_chance_<metric>``)
    means the run learned nothing from the features; a perfect score on the
    parts in ``parts`` it was scored on almost always means the target leaked
    into a feature, or examples are shared between train and those parts,
    once the part is large enough for that to be more than luck. ``sizes``
    counts the examples per part.
    """
    metric = METRICS[iteration.metric]
    out = []
    value = iteration.metrics.get(f"val_{metric.name}")
    chance = iteration.metrics.get(f"val_chance_{metric.name}")
    if value is not None and chance is not None and _no_better(value, chance, metric):
        reference = ("predicting the class balance alone" if metric.task == "classification"
                     else "predicting the training mean alone")
        out.append(DataWarning(
            WarningKind.MAJORITY_LEVEL, figure=value, measure=metric.name,
            message=f"{iteration.architecture} scores val {metric.name} {_fmt(value)}; "
                    f"{reference} scores {_fmt(chance)}: it learned nothing from the features"))
    scores = {part: iteration.metrics.get(f"{part}_{metric.name}") for part in parts}
    # a perfect score on a handful of examples is luck, not a sign of leakage
    perfect = [p for p, score in scores.items() if score is not None
               and metric.error(score) <= 1e-9 and sizes.get(p, 0) >= MIN_PERFECT_ROWS]
    if perfect:
        score, where = scores[perfect[0]], " and ".join(perfect)
        counted = " + ".join(f"{sizes[p]} {p}" for p in perfect)
        out.append(DataWarning(
            WarningKind.PERFECT_SCORE, figure=score, measure=metric.name,
            message=f"{iteration.architecture} scores a perfect {where} {metric.name} "
                    f"({_fmt(score)} on {counted} examples): check for leakage, a feature "
                    f"derived from the target or examples shared between train and {where}"))
    return out


def note_test_scores(iteration: Iteration, sizes: Mapping[str, int]) -> list[str]:
    """Bring a run's warnings up to date once it has a test score; returns the new ones.

    A perfect val score's warning becomes one about val and test together.
    """
    def perfect(parts: tuple[str, ...]) -> list[str]:
        return [w.message for w in run_warnings(iteration, sizes, parts=parts)
                if w.kind is WarningKind.PERFECT_SCORE]

    before = perfect(("val",))
    new = [m for m in perfect(("val", "test")) if m not in iteration.warnings]
    iteration.warnings = [m for m in iteration.warnings if m not in before or not new] + new
    return new


def _no_better(value: float, chance: float, metric: Metric) -> bool:
    """Whether a score is within the tolerance of the majority reference, or worse."""
    chance_error = metric.error(chance)
    bounded = np.isfinite(metric.lower) and np.isfinite(metric.upper)
    tolerance = CHANCE_TOLERANCE if bounded else CHANCE_TOLERANCE * abs(chance_error)
    if metric.name == "r2":  # unbounded below, but its unit is a share of variance
        tolerance = CHANCE_TOLERANCE
    return chance_error > 1e-9 and metric.error(value) >= chance_error - tolerance


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.5g}"
