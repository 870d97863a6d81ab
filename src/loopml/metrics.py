"""The metrics a scope can name, as one table.

Each metric knows its task, its direction and its range, and how to turn a
value into an *error* (lower is better, 0 is perfect), because diagnosis and
the runs table compare errors across metrics with one rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
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
    """Cross-entropy; a class the model never saw (only in val) gets probability 0.

    That happens when a new class arrives with the data and is placed in val or
    test: the loss is then large, as it should be, instead of an error.
    """
    if classes is not None:
        unseen = [c for c in pd.unique(np.asarray(y)) if c not in set(classes)]
        if unseen:
            proba = np.hstack([np.asarray(proba, dtype=float),
                               np.zeros((len(proba), len(unseen)))])
            classes = [*classes, *unseen]
    return float(skm.log_loss(y, proba, labels=classes))


def positive_class(y_true, classes) -> Any:
    """The class a binary ranking metric is about: the rarer one in ``y_true``.

    The rare class is the one a user wants found (the fraud, the default), and
    the one whose average precision a majority-class model cannot fake. Ties
    go to the later of ``classes`` (``True`` over ``False``, ``1`` over ``0``).
    """
    y_true = np.asarray(y_true)
    counts = [(int(np.sum(y_true == c)), -i) for i, c in enumerate(classes)]
    return list(classes)[-min(counts)[1]]


def _one_vs_rest(score: Callable[[np.ndarray, np.ndarray], float]) -> Callable[..., float]:
    """A ranking metric over class probabilities: binary of the rarer class, else macro OvR.

    NaN, not an exception, where the metric is undefined: ``y_true`` holds one
    class, or a class the probabilities have no column for (diagnosis folds
    and tiny parts meet both). A multi-class part missing some class averages
    over the classes it holds, since a class with no examples has no ranking.
    """
    def compute(y, pred=None, proba=None, classes=None) -> float:
        y = np.asarray(y)
        classes = list(classes) if classes is not None else sorted(set(y.tolist()))
        proba = None if proba is None else np.asarray(proba, dtype=float)
        present = set(y.tolist())
        if (proba is None or proba.ndim != 2 or proba.shape != (len(y), len(classes))
                or len(present) < 2 or present - set(classes)):
            return float("nan")
        if len(classes) == 2:
            positive = positive_class(y, classes)
            return float(score(y == positive, proba[:, classes.index(positive)]))
        return float(np.mean([score(y == c, proba[:, j]) for j, c in enumerate(classes)
                              if c in present]))
    return compute


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
        Metric("roc_auc", "classification", True, 0.0, 1.0,
               "area under the ROC curve: how often an example of a class is ranked above "
               "one of another; 0.5 is chance, whatever the class balance (binary: of the "
               "rarer class; multi-class: macro one-vs-rest)", True,
               _one_vs_rest(skm.roc_auc_score)),
        Metric("average_precision", "classification", True, 0.0, 1.0,
               "area under the precision-recall curve; a majority-class model scores only "
               "the class's share (binary: of the rarer class; multi-class: macro "
               "one-vs-rest)", True, _one_vs_rest(skm.average_precision_score)),
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


def chance_scores(task: str, y_train, y_eval, *, classes=None) -> dict[str, float]:
    """Every metric of a model that learned nothing but ``y_train``'s class balance (or mean).

    It predicts the majority class with the training class frequencies as its
    probabilities (regression: the training mean), so a run that scores no
    better than this has learned nothing from the features. Every verdict
    and warning about "no better than the majority" compares against it.
    """
    y_train, y_eval = np.asarray(y_train), np.asarray(y_eval)
    if task == "classification":
        classes = list(classes) if classes is not None else sorted(set(y_train.tolist()))
        counts = np.array([(y_train == c).sum() for c in classes], dtype=float)
        prior = counts / max(counts.sum(), 1.0)
        majority = classes[int(np.argmax(counts))]
        pred = np.full(len(y_eval), majority, dtype=object)
        pred = pred.astype(y_eval.dtype) if y_eval.dtype != object else pred
        proba = np.tile(prior, (len(y_eval), 1))
        return evaluate(task, y_eval, pred, proba=proba, classes=classes)
    pred = np.full(len(y_eval), float(np.mean(y_train.astype(float))))
    return evaluate(task, y_eval.astype(float), pred)


# ---------------------------------------------------------------- class balance

#: binary: a minority class under this share of the rows is rare
RARE_BINARY_SHARE = 0.20
#: multi-class: a class under this fraction of an even share (1/k) is rare
RARE_MULTICLASS_FRACTION = 0.5
#: the metric init picks when a class is rare, by number of classes
IMBALANCE_METRIC = {"binary": "average_precision", "multiclass": "balanced_accuracy"}
#: metrics a model that always predicts the majority class scores well on
MAJORITY_FRIENDLY = ("accuracy",)


@dataclass(frozen=True)
class ClassBalance:
    """How many examples each class has, most frequent first.

    The figure that decides whether accuracy can be trusted: on a table with
    3% positives, predicting the majority always scores 97%.
    """

    counts: dict[Any, int]

    @property
    def n(self) -> int:
        return int(sum(self.counts.values()))

    @property
    def shares(self) -> dict[Any, float]:
        return {c: n / max(self.n, 1) for c, n in self.counts.items()}

    @property
    def majority(self) -> Any:
        return next(iter(self.counts))

    @property
    def rare_share(self) -> float:
        """The share under which a class is rare: 20% in binary, half of 1/k beyond."""
        k = len(self.counts)
        return RARE_BINARY_SHARE if k <= 2 else RARE_MULTICLASS_FRACTION / k

    @property
    def rare(self) -> list:
        """Classes under :attr:`rare_share`, rarest first."""
        return [c for c, share in reversed(self.shares.items()) if share < self.rare_share]

    def to_dict(self) -> dict[str, Any]:
        return {"counts": {str(c): n for c, n in self.counts.items()},
                "shares": {str(c): s for c, s in self.shares.items()},
                "rare": [str(c) for c in self.rare], "rare_share": self.rare_share}


def class_balance(y) -> ClassBalance:
    """The :class:`ClassBalance` of a target column (missing values are not a class)."""
    values, counts = np.unique(np.asarray(y)[~_missing(y)], return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (-counts[i], i))
    return ClassBalance({_plain(values[i]): int(counts[i]) for i in order})


def _missing(y) -> np.ndarray:
    return np.asarray(pd.isna(pd.Series(np.asarray(y, dtype=object))), dtype=bool)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class MetricChoice:
    """The metric (and class weighting) a new project starts with, and why.

    ``why`` is set when init chose for the user because a class is rare;
    ``warning`` when the user's own metric is one a majority-class model wins.
    """

    metric: str
    balance: bool = False
    why: str | None = None
    balance_why: str | None = None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "balance": self.balance, "why": self.why,
                "balance_why": self.balance_why, "warning": self.warning}

    def notes(self) -> dict[str, str]:
        """Comments for loopml.yaml, by key: why init chose what the user did not."""
        return {k: v for k, v in (("metric", self.why), ("balance", self.balance_why)) if v}


def choose_metric(task: str, balance: ClassBalance | None, *, given: str | None = None
                  ) -> MetricChoice:
    """The metric to judge a new project by: ``given``, the task's default, or, when a
    class is rare, one a majority-class model cannot win.

    Binary: average precision of the rare class (the majority model scores the
    class's share). Multi-class: balanced accuracy (the majority model scores
    1/k), which reads like accuracy and judges the predicted class itself, not
    only a ranking. Class weighting (``balance``) is turned on with it.
    """
    if task != "classification" or balance is None or not balance.rare:
        return MetricChoice(given or DEFAULT_METRIC[task])
    rare = balance.rare
    accuracy = balance.shares[balance.majority]
    kind = "binary" if len(balance.counts) == 2 else "multiclass"
    threshold = "" if kind == "binary" else \
        f", under half of an even share (1/{len(balance.counts)})"
    names = ", ".join(f"'{c}'" for c in rare[:3]) + (" ..." if len(rare) > 3 else "")
    verb = "is" if len(rare) == 1 else "are"
    share = balance.shares[rare[0]]
    fact = (f"{names} {verb} {share:.1%} of {balance.n:,} rows{threshold}" if len(rare) == 1
            else f"{names} {verb} under {balance.rare_share:.1%} each of {balance.n:,} "
                 f"rows{threshold}")
    habit = (f"accuracy would reward predicting '{balance.majority}' always ({accuracy:.1%})")
    if given is not None:
        warning = (f"{fact}; {given} would reward predicting '{balance.majority}' always "
                   f"({accuracy:.1%}); consider --metric {IMBALANCE_METRIC[kind]} and "
                   "balance: true") if given in MAJORITY_FRIENDLY else None
        return MetricChoice(given, warning=warning)
    return MetricChoice(
        IMBALANCE_METRIC[kind], balance=True, why=f"chosen by init: {fact}; {habit}",
        balance_why=f"turned on by init: {names} {verb} rare, so each class counts as much "
                    "as the others in every model's loss")
