"""Leakage: a feature that alone predicts the target almost perfectly.

A column copied from the label, a code assigned after the outcome was known,
or a row number of a table sorted by class lets every model score 1.0 on
val and test and fail on new data. No model choice can reveal that, but one
cheap measure can: each feature *alone*, cross-validated on the train part.
Real features rarely reach 0.99 balanced accuracy (or R² 0.99) on their own;
a derived one does, so :func:`find_leakage` names it with its figure before a
day is spent on a model that learned the answer key.

The same :class:`DataWarning` carries the other warnings that save a day (a
run no better than the majority reference, a perfect score), so the CLI,
the autopilot and the dashboard read one typed object.

Example
-------
>>> import numpy as np, pandas as pd
>>> from loopml.data.dataset import Dataset
>>> y = np.array(["a", "b"] * 50)
>>> frame = pd.DataFrame({"x": np.arange(100) % 7, "code": np.where(y == "a", "p", "q"),
...                       "label": y})
>>> data = Dataset(frame, "label", {"x": "numeric", "code": "categorical"}, "classification")
>>> [w.column for w in find_leakage(data)]
['code']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from loopml.data.sampling import fold_indices, subsample

if TYPE_CHECKING:
    from loopml.data.dataset import Dataset
    from loopml.data.split import Split

#: a single feature scoring this much (balanced accuracy, or R²) is reported as leakage
LEAKAGE_THRESHOLD = 0.99
#: rows measured at most (a stratified, seeded sample of train beyond that): a
#: derived column is perfect on any sample, so more rows only cost time
MAX_ROWS = 5_000
#: below this many train rows a perfect single feature is as likely luck as leakage
MIN_ROWS = 30
FOLDS = 3
#: measures kept for reuse, by data and split version: ``loopml run`` records
#: several candidates on one data version and each carries the warnings
_MEASURED: dict[tuple, dict[str, float]] = {}
_MEASURED_KEEP = 8


class WarningKind(StrEnum):
    """What a warning is about."""

    LEAKAGE = "leakage"
    """a feature alone predicts the target almost perfectly"""
    MAJORITY_LEVEL = "majority_level"
    """a run scores no better than predicting the class balance (or the mean)"""
    PERFECT_SCORE = "perfect_score"
    """a run scores perfectly on val or test"""


@dataclass(frozen=True)
class DataWarning:
    """One warning, with the column and the figure it rests on.

    ``measure`` names what ``figure`` is (``balanced_accuracy`` or ``r2`` for
    leakage, the scope metric for a run's warnings); ``column`` is the
    feature concerned, or None when the warning is about a run.
    """

    kind: WarningKind
    message: str
    column: str | None = None
    figure: float | None = None
    measure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "message": self.message, "column": self.column,
                "figure": self.figure, "measure": self.measure}


def find_leakage(dataset: Dataset, split: Split | None = None, *,
                 threshold: float = LEAKAGE_THRESHOLD, seed: int = 0) -> list[DataWarning]:
    """A warning for each feature that alone predicts the target at ``threshold`` or more.

    Measured on the train part of ``split`` (all examples without one), each
    feature alone and cross-validated over 3 folds: a categorical or text
    column by the majority class (or mean target) of each of its values, a
    numeric one by a small decision tree; image columns are skipped. The
    figure is balanced accuracy for classification and R² for regression.
    Costs well under a second per feature on 10,000 rows.
    """
    key = (dataset.version, dataset.task, None if split is None else split.version, seed)
    scores = _MEASURED.get(key)
    if scores is None:
        ids = dataset.ids if split is None else split.ids("train")
        scores = single_feature_scores(dataset.X(ids), dataset.y(ids), dataset.features,
                                       task=dataset.task, seed=seed)
        while len(_MEASURED) >= _MEASURED_KEEP:
            _MEASURED.pop(next(iter(_MEASURED)))
        _MEASURED[key] = scores
    measure = "balanced accuracy" if dataset.task == "classification" else "R²"
    found = sorted(((s, c) for c, s in scores.items() if s >= threshold), reverse=True)
    return [DataWarning(
        WarningKind.LEAKAGE, column=column, figure=round(score, 4),
        measure="balanced_accuracy" if dataset.task == "classification" else "r2",
        message=(f"column '{column}' alone predicts '{dataset.target}' with {measure} "
                 f"{score:.3f} on train: check it is not derived from the target (leakage); "
                 f"if it is, remove it from data.features in loopml.yaml and list it under "
                 f"data.ignore"))
        for score, column in found]


def single_feature_scores(X: pd.DataFrame, y: np.ndarray, features: dict[str, str], *,
                          task: str, seed: int = 0) -> dict[str, float]:
    """Each feature's out-of-fold score alone (balanced accuracy or R²), by column.

    Empty when there are too few rows (under :data:`MIN_ROWS`) or nothing to
    predict (one class, a constant target). Image columns are not scored.
    """
    y = np.asarray(y)
    if len(y) < MIN_ROWS:
        return {}
    if task == "classification":
        classes, target = np.unique(y.astype(str), return_inverse=True)
        if len(classes) < 2:
            return {}
        labels: np.ndarray | None = target
    else:
        target = pd.to_numeric(pd.Series(y), errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(target).all() or np.var(target) == 0:
            return {}
        labels = None
    rows = np.arange(len(target))
    if len(rows) > MAX_ROWS:
        rows = np.sort(subsample(rows, labels, MAX_ROWS, seed=seed))
        target = target[rows]
        labels = None if labels is None else target
    folds = fold_indices(labels, FOLDS, seed=seed, n=len(target))
    scores = {}
    for column, kind in features.items():
        if kind == "image" or column not in X:
            continue
        values = X[column].iloc[rows]
        if kind == "numeric":
            pred = _tree_oof(_numeric(values), target, folds, task=task, seed=seed)
        else:
            pred = _level_oof(pd.factorize(values.astype(object).fillna("<missing>"))[0],
                              target, folds, task=task)
        scores[column] = _score(target, pred, task=task)
    return scores


def _numeric(values: pd.Series) -> np.ndarray:
    """A numeric column as one float column; NaN stays NaN (the tree routes it)."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float).reshape(-1, 1)


def _level_oof(codes: np.ndarray, target: np.ndarray, folds: list, *, task: str) -> np.ndarray:
    """Out-of-fold prediction from each value's majority class (or mean target).

    A value unseen in the training folds gets the folds' majority (or mean),
    so an id-like column scores as chance, not as a perfect predictor.
    """
    n_levels = int(codes.max()) + 1 if len(codes) else 0
    pred = np.zeros(len(target), dtype=target.dtype)
    for fit, held in folds:
        if task == "classification":
            n_classes = int(target.max()) + 1
            counts = np.zeros((n_levels, n_classes))
            np.add.at(counts, (codes[fit], target[fit]), 1)
            overall = int(np.argmax(counts.sum(axis=0)))
            majority = np.where(counts.sum(axis=1) > 0, np.argmax(counts, axis=1), overall)
            pred[held] = majority[codes[held]]
        else:
            sums = np.bincount(codes[fit], weights=target[fit], minlength=n_levels)
            counts = np.bincount(codes[fit], minlength=n_levels)
            mean = np.divide(sums, counts, out=np.full(n_levels, target[fit].mean()),
                             where=counts > 0)
            pred[held] = mean[codes[held]]
    return pred


def _tree_oof(x: np.ndarray, target: np.ndarray, folds: list, *, task: str,
              seed: int) -> np.ndarray:
    """Out-of-fold prediction of a small tree on one numeric column.

    Enough leaves to carve one interval per class (or a fine step function of
    a numeric target), few enough to stay cheap; leaves need 5 rows so a
    single odd row cannot make a column look perfect.
    """
    pred = np.zeros(len(target), dtype=target.dtype)
    if np.isnan(x).all():
        return _level_oof(np.zeros(len(target), dtype=int), target, folds, task=task)
    for fit, held in folds:
        if task == "classification":
            model: Any = DecisionTreeClassifier(
                max_leaf_nodes=max(16, 4 * int(target.max() + 1)), min_samples_leaf=5,
                random_state=seed)
        else:
            model = DecisionTreeRegressor(max_leaf_nodes=128, min_samples_leaf=5,
                                          random_state=seed)
        with warnings.catch_warnings():  # "many classes for few rows": true, and not news
            warnings.simplefilter("ignore", UserWarning)
            model.fit(x[fit], target[fit])
        pred[held] = model.predict(x[held])
    return pred


def _score(target: np.ndarray, pred: np.ndarray, *, task: str) -> float:
    """Balanced accuracy (classification) or R² (regression), computed directly."""
    if task == "classification":
        recalls = [np.mean(pred[target == c] == c) for c in np.unique(target)]
        return float(np.mean(recalls))
    residual = np.sum((target - pred) ** 2)
    return float(1.0 - residual / np.sum((target - target.mean()) ** 2))
