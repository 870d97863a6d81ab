"""The metrics a scope can name, as one table.

Each metric knows its task, its direction and its range, and how to turn a
value into an *error* (lower is better, 0 is perfect), because diagnosis and
the runs table compare errors across metrics with one rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm


@dataclass(frozen=True)
class Metric:
    """One metric: how to compute it and how to read it."""

    name: str
    task: str
    greater_is_better: bool
    lower: float
    upper: float
    help: str
    needs_proba: bool
    compute: Callable[..., float]

    def error(self, value: float) -> float:
        """The value as an error: 0 is perfect, larger is worse."""
        if self.greater_is_better:
            return float(self.upper - value)
        return float(value)

    def in_range(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def _rmse(y, pred, proba=None, classes=None) -> float:
    return float(np.sqrt(skm.mean_squared_error(y, pred)))


def _log_loss(y, pred, proba=None, classes=None) -> float:
    return float(skm.log_loss(y, proba, labels=classes))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", "classification", True, 0.0, 1.0,
               "share of examples whose predicted class is right", False,
               lambda y, p, proba=None, classes=None: float(skm.accuracy_score(y, p))),
        Metric("balanced_accuracy", "classification", True, 0.0, 1.0,
               "mean recall over classes; fair when classes are imbalanced", False,
               lambda y, p, proba=None, classes=None: float(skm.balanced_accuracy_score(y, p))),
        Metric("f1_macro", "classification", True, 0.0, 1.0,
               "F1 averaged over classes, each class counting equally", False,
               lambda y, p, proba=None, classes=None: float(
                   skm.f1_score(y, p, average="macro", zero_division=0))),
        Metric("log_loss", "classification", False, 0.0, float("inf"),
               "cross-entropy of the predicted probabilities", True, _log_loss),
        Metric("rmse", "regression", False, 0.0, float("inf"),
               "root mean squared error, in the target's unit", False, _rmse),
        Metric("mae", "regression", False, 0.0, float("inf"),
               "mean absolute error, in the target's unit", False,
               lambda y, p, proba=None, classes=None: float(skm.mean_absolute_error(y, p))),
        Metric("r2", "regression", True, float("-inf"), 1.0,
               "share of the target's variance explained", False,
               lambda y, p, proba=None, classes=None: float(skm.r2_score(y, p))),
    ]
}

DEFAULT_METRIC = {"classification": "accuracy", "regression": "rmse"}


def metrics_for(task: str) -> list[Metric]:
    """All metrics of a task, the default first."""
    default = METRICS[DEFAULT_METRIC[task]]
    return [default] + [m for m in METRICS.values() if m.task == task and m is not default]


def evaluate(task: str, y_true, y_pred, proba=None, classes=None) -> dict[str, float]:
    """Every metric of the task that the inputs allow, by name."""
    out: dict[str, float] = {}
    for metric in metrics_for(task):
        if metric.needs_proba and proba is None:
            continue
        out[metric.name] = metric.compute(y_true, y_pred, proba=proba, classes=classes)
    return out
