"""Label issues: examples whose given label the data itself argues against.

cleanlab's confident learning needs predicted probabilities that the model
did not see the label of. Val predictions of a run already are; for train we
refit the judge's architecture (same settings) on K-1 folds and predict the
held-out fold. A slice full of label issues asks for relabelling, not for a
better model, so the ErrorReport counts them per slice.

The judge's disagreements are evidence only when the judge is good: one that
scores like the majority reference (a model that learned only the class
balance) disagrees with labels it cannot predict, right or wrong.
:func:`judge_scores` measures it against that reference, :func:`weak_judge`
says when its list must be withheld, and :func:`class_flags` shows how the
flags fall on the classes, warning where a class's share is too high to be
noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from loopml.data.dataset import Dataset, plain_value
from loopml.data.sampling import fold_indices
from loopml.errors.report import ClassFlags
from loopml.metrics import METRICS, chance_scores, evaluate
from loopml.parallel import parallel_map

#: a judge must close at least this share of the gap between chance and perfect
#: balanced accuracy (binary: 0.55 against 0.50; ten classes: 0.19 against 0.10)
JUDGE_MARGIN = 0.1
#: ... and its error in the scope metric must be below this share of the majority's
JUDGE_ERROR_SHARE = 0.9
#: metrics of calibration, not of separation: an over-confident judge can rank and
#: separate well with a log loss above the prior's, so they do not rule a judge out
CALIBRATION_METRICS = frozenset({"log_loss"})
#: a class with more than this share flagged is more likely beyond the judge than noisy
MAX_NOISE_SHARE = 0.2
#: ... or with more than this many times the overall share (and at least MIN_RATIO_SHARE)
MAX_SHARE_RATIO = 3.0
MIN_RATIO_SHARE = 0.1
#: fewer flags in a class than this never warn (3 of 10 is not a pattern)
MIN_FLAGS_TO_WARN = 5


def out_of_fold_proba(estimator: Any, dataset: Dataset, ids: pd.Index, classes: list, *,
                      folds: int = 5, seed: int = 0, n_jobs: int | None = None,
                      on_fold: Callable[[], None] | None = None) -> np.ndarray:
    """(len(ids), len(classes)) probabilities, each row from a model that never saw it.

    Columns follow ``classes``; a class missing from a fold's training rows
    gets probability 0 there.
    """
    y = dataset.y(ids)
    k = max(2, min(folds, len(ids)))
    pairs = fold_indices(y, k, seed=seed)
    if "verbose" in estimator.get_params():
        estimator = clone(estimator).set_params(verbose=False)

    def fit_fold(pair: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        train, held = pair
        model = clone(estimator).fit(dataset.X(ids[train]), y[train])
        proba = model.predict_proba(dataset.X(ids[held]))
        out = np.zeros((len(held), len(classes)))
        index = {c: i for i, c in enumerate(classes)}
        for j, c in enumerate(model.classes_):
            out[:, index[c]] = proba[:, j]
        return out

    result = np.zeros((len(ids), len(classes)))
    for (_, held), proba in zip(pairs, parallel_map(fit_fold, pairs, n_jobs=n_jobs),
                                strict=True):
        result[held] = proba
        if on_fold:
            on_fold()
    return result


def find_label_issues(ids: pd.Index, labels: np.ndarray, proba: np.ndarray, classes: list
                      ) -> pd.DataFrame:
    """cleanlab's label issues, worst first: id, given, suggested, quality.

    ``quality`` is cleanlab's self-confidence (the probability of the given
    label); low means the label is likely wrong.
    """
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    index = {c: i for i, c in enumerate(classes)}
    given = np.array([index[c] for c in labels])
    present = np.unique(given)
    # cleanlab needs every column to be a class that occurs; drop absent ones and renormalise
    pred = proba[:, present]
    pred = pred / np.clip(pred.sum(axis=1, keepdims=True), 1e-12, None)
    remap = {c: i for i, c in enumerate(present)}
    given_local = np.array([remap[g] for g in given])
    if len(present) < 2:
        return pd.DataFrame(columns=["id", "given", "suggested", "quality"])
    flagged = cl_find(given_local, pred, filter_by="prune_by_noise_rate",
                      return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(given_local, pred, method="self_confidence")
    suggested = present[pred.argmax(axis=1)]
    return pd.DataFrame({
        "id": np.asarray(ids)[flagged].astype(str),
        "given": [classes[given[i]] for i in flagged],
        "suggested": [classes[suggested[i]] for i in flagged],
        "quality": quality[flagged].astype(float),
    })


@dataclass
class JudgeScores:
    """A judge's out-of-fold scores next to the majority reference's, on the same rows."""

    metric: str
    judge_error: float | None  # in ``metric``; None when the metric cannot be computed
    majority_error: float | None
    judge_balanced_accuracy: float
    chance_balanced_accuracy: float


def judge_scores(labels: np.ndarray, proba: np.ndarray, classes: list, *, metric: str
                 ) -> JudgeScores:
    """Score out-of-fold ``proba`` against the majority reference on ``labels``.

    The reference predicts the most frequent class of ``labels`` with their
    class balance as probabilities (:func:`loopml.metrics.chance_scores`).
    """
    labels = np.asarray(labels)
    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    predicted = predicted.astype(labels.dtype) if labels.dtype != object else predicted
    with warnings.catch_warnings():  # a class the judge never predicts, or never present
        warnings.simplefilter("ignore")
        judge = evaluate("classification", labels, predicted, proba=proba, classes=classes)
        chance = chance_scores("classification", labels, labels, classes=classes)
    error = METRICS[metric].error
    return JudgeScores(
        metric=metric,
        judge_error=error(judge[metric]) if metric in judge else None,
        majority_error=error(chance[metric]) if metric in chance else None,
        judge_balanced_accuracy=float(judge["balanced_accuracy"]),
        chance_balanced_accuracy=float(chance["balanced_accuracy"]))


def weak_judge(scores: JudgeScores, judge: str, *, on: str = "out of fold") -> str | None:
    """Why ``judge``'s disagreements are not evidence of wrong labels; None if they are.

    A judge is weak when its balanced accuracy is within :data:`JUDGE_MARGIN`
    of the room above chance, or when its error in the scope metric is within
    10% of the majority reference's (calibration metrics aside). ``on`` says
    where the scores were measured.
    """
    chance, got = scores.chance_balanced_accuracy, scores.judge_balanced_accuracy
    if got < chance + JUDGE_MARGIN * (1 - chance):
        return (f"the judge, {judge}, scores {got:.2f} balanced accuracy {on}, chance "
                f"is {chance:.2f}: its disagreements are not evidence of wrong labels")
    if scores.metric in CALIBRATION_METRICS or scores.judge_error is None \
            or scores.majority_error is None or scores.majority_error <= 0:
        return None
    if scores.judge_error > JUDGE_ERROR_SHARE * scores.majority_error:
        return (f"the judge, {judge}, has {scores.metric} error {scores.judge_error:.3f} {on}, "
                f"predicting the majority class gives {scores.majority_error:.3f}: its "
                "disagreements are not evidence of wrong labels")
    return None


def class_flags(labels: np.ndarray, flagged_given: np.ndarray, classes: list
                ) -> list[ClassFlags]:
    """The share of each class the judge flags, with a warning where it is too high.

    Label noise spreads over the classes roughly as the labelling work did;
    when one class has more than :data:`MAX_NOISE_SHARE` of its examples
    flagged, or :data:`MAX_SHARE_RATIO` times the overall share, the judge more
    likely cannot separate that class.
    """
    labels, flagged_given = np.asarray(labels), np.asarray(flagged_given)
    overall = len(flagged_given) / max(1, len(labels))
    out = []
    for c in classes:
        n = int((labels == c).sum())
        if n == 0:
            continue
        hits = int((flagged_given == c).sum())
        share = hits / n
        high = share > MAX_NOISE_SHARE or (share > MAX_SHARE_RATIO * overall
                                           and share >= MIN_RATIO_SHARE)
        warning = (f"{share:.0%} of class '{plain_value(c)}' flagged: more likely a model that "
                   "cannot separate that class than wrong labels"
                   if high and hits >= MIN_FLAGS_TO_WARN else None)
        out.append(ClassFlags(label=plain_value(c), n=n, n_flagged=hits, share=share,
                              warning=warning))
    return out
