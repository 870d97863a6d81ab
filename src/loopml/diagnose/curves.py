"""Curve points: fit one setting at one training size on one fold, score it.

Bias/variance, learning curves and validation curves are all made of the
same unit of work, a :class:`Point`. Points are de-duplicated (the
iteration's own setting at its own size appears in every curve) and run
through :mod:`loopml.parallel`, so one sweep engine serves every curve, on
local cores or a Ray cluster. Folds are k-fold over train ∪ val; the test
part is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from loopml.data.dataset import Dataset
from loopml.data.sampling import fold_indices, subsample
from loopml.data.split import Split
from loopml.diagnose.evidence import CurveSetting, number, optional_number
from loopml.exceptions import LoopmlError
from loopml.metrics import METRICS
from loopml.parallel import parallel_map


@dataclass(frozen=True)
class Point:
    """One fit: parameter overrides, training-set size, fold."""

    overrides: tuple[tuple[str, Any], ...]
    n_train: int
    fold: int


@dataclass
class PointScore:
    train_error: float
    val_error: float
    seconds: float


@dataclass
class Folds:
    """k (train ids, held-out ids) pairs over train ∪ val."""

    pairs: list[tuple[pd.Index, pd.Index]]

    @property
    def k(self) -> int:
        return len(self.pairs)

    @property
    def max_train(self) -> int:
        return min(len(train) for train, _ in self.pairs)

    @classmethod
    def make(cls, dataset: Dataset, split: Split, *, k: int, seed: int) -> Folds:
        pool = split.ids("train").append(split.ids("val"))
        if k < 2:
            raise LoopmlError(f"folds must be at least 2, got {k}")
        if len(pool) < 2 * k:
            raise LoopmlError(f"train + val hold {len(pool)} examples, too few for {k} folds",
                              hint="use fewer folds (--folds) or add data")
        y = dataset.y(pool)
        if dataset.task == "classification":
            _, counts = np.unique(y.astype(str), return_counts=True)
            if counts.min() < k:
                raise LoopmlError(
                    f"the rarest class has {counts.min()} examples in train + val, fewer "
                    f"than the {k} folds asked for", hint=f"use --folds {max(2, counts.min())}"
                    if counts.min() >= 2 else "add examples of the rare classes")
        labels = y if dataset.task == "classification" else None
        pairs = [(pool[a], pool[b]) for a, b in fold_indices(labels, k, seed=seed, n=len(pool))]
        return cls(pairs)


def _error(estimator: Any, X: pd.DataFrame, y: np.ndarray, metric: str, task: str) -> float:
    m = METRICS[metric]
    if task == "classification":
        proba = estimator.predict_proba(X)
        pred = estimator.classes_[np.argmax(proba, axis=1)]
        classes = list(estimator.classes_)
        if m.needs_proba and set(np.unique(y)) - set(classes):
            return float("nan")
        return m.error(m.compute(y, pred, proba=proba, classes=classes))
    return m.error(m.compute(y, estimator.predict(X)))


@dataclass
class _Task:
    estimator: Any
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_val: pd.DataFrame
    y_val: np.ndarray
    metric: str
    task: str


def _run(task: _Task) -> PointScore:
    start = time.perf_counter()
    try:
        task.estimator.fit(task.X_train, task.y_train)
    except ValueError:  # e.g. a tiny subsample holding a single class
        return PointScore(float("nan"), float("nan"), time.perf_counter() - start)
    train = _error(task.estimator, task.X_train, task.y_train, task.metric, task.task)
    val = _error(task.estimator, task.X_val, task.y_val, task.metric, task.task)
    return PointScore(train, val, time.perf_counter() - start)


def score_points(estimator: Any, dataset: Dataset, folds: Folds, points: Iterable[Point], *,
                 metric: str, seed: int, n_jobs: int | None = None,
                 ray_address: str | None = None,
                 on_done: Callable[[Point, PointScore], None] | None = None
                 ) -> dict[Point, PointScore]:
    """Fit a clone of ``estimator`` for every distinct point; its errors by point."""
    unique = list(dict.fromkeys(points))
    tasks = []
    for point in unique:
        train_ids, val_ids = folds.pairs[point.fold]
        labels = dataset.y(train_ids) if dataset.task == "classification" else None
        train_ids = pd.Index(subsample(train_ids, labels, point.n_train, seed=seed + point.fold),
                             name=train_ids.name)
        est = clone(estimator).set_params(**dict(point.overrides))
        tasks.append(_Task(est, dataset.X(train_ids), dataset.y(train_ids),
                           dataset.X(val_ids), dataset.y(val_ids), metric, dataset.task))
    scores: dict[Point, PointScore] = {}
    for point, score in zip(unique, parallel_map(_run, tasks, n_jobs=n_jobs,
                                                 ray_address=ray_address), strict=True):
        scores[point] = score
        if on_done:
            on_done(point, score)
    return scores


@dataclass
class CurvePoint:
    """Mean train and val error at one x, with 95% bands over folds."""

    x: float
    train: float
    train_band: float
    val: float
    val_band: float
    folds: int

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "train": self.train, "train_band": self.train_band,
                "val": self.val, "val_band": self.val_band, "folds": self.folds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CurvePoint:
        x = data["x"]  # a training size is stored as an int, a knob value as a float
        return cls(x if isinstance(x, int) else float(x), number(data["train"]),
                   number(data["train_band"]), number(data["val"]), number(data["val_band"]),
                   int(data["folds"]))


@dataclass
class ValidationCurve:
    """Val error against one knob, and where the iteration's own value sits on it.

    ``best`` and ``best_error`` are the curve's lowest val error and its knob
    value; they and ``setting`` are None when no point could be scored.
    """

    knob: str
    points: list[CurvePoint]
    current: float
    current_error: float
    best: float | None = None
    best_error: float | None = None
    setting: CurveSetting | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "points": [p.to_dict() for p in self.points],
                "current": self.current, "current_error": self.current_error,
                "best": self.best, "best_error": self.best_error,
                "setting": None if self.setting is None else str(self.setting)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationCurve:
        setting = data["setting"]
        return cls(str(data["knob"]), [CurvePoint.from_dict(p) for p in data["points"]],
                   number(data["current"]), number(data["current_error"]),
                   optional_number(data["best"]), optional_number(data["best_error"]),
                   None if setting is None else CurveSetting(setting))


def band(values: np.ndarray) -> float:
    """Half-width of a 95% interval for the mean of per-fold values."""
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan")
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


def summarize(scores: dict[Point, PointScore], x: float, points: list[Point]) -> CurvePoint:
    train = np.array([scores[p].train_error for p in points])
    val = np.array([scores[p].val_error for p in points])
    ok = np.isfinite(train) & np.isfinite(val)
    if not ok.any():
        return CurvePoint(x, float("nan"), float("nan"), float("nan"), float("nan"), 0)
    return CurvePoint(x, float(train[ok].mean()), band(train[ok]), float(val[ok].mean()),
                      band(val[ok]), int(ok.sum()))
