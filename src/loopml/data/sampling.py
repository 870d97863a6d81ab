"""The one place that draws seeded samples of examples: holdouts, subsamples, folds.

Every part of loopml that sets examples aside asks here, so one rule holds
everywhere: classification samples are stratified whenever every class can
be represented on both sides, and plain (still seeded) otherwise. The split
of a project, the early-stopping holdout a model carves from its training
rows, the share of train a ``--train-fraction`` run sees, the folds of a
diagnosis and the out-of-fold probabilities of label checks all come from
these three functions.

Labels are compared as strings, so a column of mixed ints and strings, or of
booleans, stratifies like any other.

Example
-------
>>> import numpy as np
>>> keep, held = holdout(np.arange(10), np.array([0, 1] * 5), 0.2, seed=0)
>>> len(keep), len(held)
(8, 2)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

#: share of a model's training rows held out for early stopping (never the val part)
EARLY_STOPPING_FRACTION = 0.1


def _as_labels(labels: Sequence[Any] | np.ndarray | None) -> np.ndarray | None:
    return None if labels is None else np.asarray(labels).astype(str)


def can_stratify(labels: np.ndarray | None, n_held: int, n_kept: int) -> bool:
    """Whether a stratified draw of ``n_held`` (leaving ``n_kept``) can hold every class."""
    if labels is None or len(labels) == 0:
        return False
    _, counts = np.unique(labels, return_counts=True)
    return bool(counts.min() >= 2 and min(n_held, n_kept) >= len(counts))


def holdout(items: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray | None,
            fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``items`` into (kept, held out), holding out ``fraction`` of them.

    Stratified by ``labels`` (None for regression) when every class fits on
    both sides; seeded, so the same call gives the same halves.
    """
    items = np.asarray(items)
    if not 0 < fraction < 1:
        raise ValueError(f"a holdout fraction must be in (0, 1), got {fraction}")
    if len(items) < 2:
        raise ValueError(f"a holdout needs at least 2 examples, got {len(items)}")
    strata = _as_labels(labels)
    n_held = min(len(items) - 1, max(1, math.ceil(fraction * len(items))))
    stratify = strata if can_stratify(strata, n_held, len(items) - n_held) else None
    kept, held = train_test_split(items, test_size=n_held, random_state=seed,
                                  stratify=stratify)
    return np.asarray(kept), np.asarray(held)


def subsample(items: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray | None,
              n: int, *, seed: int) -> np.ndarray:
    """``n`` of ``items`` (all of them when ``n >= len(items)``), keeping class shares."""
    items = np.asarray(items)
    if n >= len(items):
        return items
    if n < 1:
        raise ValueError(f"a subsample needs at least 1 example, got n={n}")
    strata = _as_labels(labels)
    stratify = strata if can_stratify(strata, len(items) - n, n) else None
    kept, _ = train_test_split(items, train_size=n, random_state=seed, stratify=stratify)
    return np.asarray(kept)


def fold_indices(labels: Sequence[Any] | np.ndarray | None, k: int, *, seed: int,
                 n: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train positions, held-out positions) pairs, stratified when every class has k rows.

    ``labels`` None (regression) needs ``n``, the number of rows.
    """
    strata = _as_labels(labels)
    size = len(strata) if strata is not None else n
    if size is None:
        raise ValueError("fold_indices needs labels or n")
    if k < 2 or k > size:
        raise ValueError(f"folds must be between 2 and the {size} rows, got {k}")
    if strata is not None and np.unique(strata, return_counts=True)[1].min() >= k:
        splitter: Any = StratifiedKFold(k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(k, shuffle=True, random_state=seed)
    dummy = np.zeros(size)
    return [(a, b) for a, b in splitter.split(dummy, strata if strata is not None else dummy)]
