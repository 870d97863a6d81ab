"""Fit and evaluate one candidate on the stored split, and record it as an Iteration.

Fitting (:func:`fit_candidate`) is kept apart from recording
(:func:`record_iteration`) so fits can run in parallel workers while one
process writes the store. Reports are built elsewhere (:mod:`loopml.report`),
from what a recorded iteration leaves behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import Dataset
from loopml.data.sampling import subsample
from loopml.data.split import Split
from loopml.exceptions import LoopmlError
from loopml.iteration import Iteration
from loopml.metrics import evaluate
from loopml.track import Tracker


@dataclass
class FitResult:
    """What a (possibly remote) fit hands back to the recording process."""

    architecture: str
    estimator: Any
    seconds: float
    train_ids: pd.Index | None = None


def train_subset(dataset: Dataset, split: Split, fraction: float | None, *, seed: int
                 ) -> pd.Index:
    """The train ids, or a seeded (stratified where possible) share of them."""
    train = split.ids("train")
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
            for i, cls in enumerate(estimator.classes_):
                frame[f"proba:{cls}"] = proba[:, i]
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
    skip = {"features", "verbose", "device"}
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
    metrics = score_parts(predictions, dataset.task, list(fit.estimator.classes_)
                          if dataset.task == "classification" else [])
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
        run.log(params=params, metrics={**metrics, "fit_seconds": fit.seconds})
        run.save_model(fit.estimator, schema=dataset.schema())
        iteration.save_predictions(predictions)
        iteration.save()
    return iteration
