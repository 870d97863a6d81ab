"""Label issues: examples whose given label the data itself argues against.

cleanlab's confident learning needs predicted probabilities that the model
did not see the label of. Val predictions of a run already are; for train we
refit the run's architecture (same settings) on K-1 folds and predict the
held-out fold. A slice full of label issues asks for relabelling, not for a
better model, so the ErrorReport counts them per slice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from loopml.data.dataset import Dataset
from loopml.data.sampling import fold_indices
from loopml.parallel import parallel_map


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
