"""The significance tests of error analysis, in one place.

Every group the ErrorReport names (a trait, a discovered slice, an embedding
cluster) must err *more* inside than outside by more than chance allows. One
question, so one test, whoever asks it:

- errors that are 0/1 (misclassified or not): Fisher's exact test, one-sided,
  i.e. the hypergeometric upper tail ``P(X >= k)`` of drawing ``k`` errors in
  a group of ``size`` rows out of ``n`` rows holding ``total`` errors;
- other errors (residual losses): Welch's one-sided t-test, computed from the
  group's sum and sum of squares, so a search can test thousands of groups
  from ``np.bincount`` sums without touching the rows again;
- many groups tried: Bonferroni, ``min(1, p * tried)``.

The functions are vectorised: ``size``, ``err`` and ``sq`` may be arrays of
any shape, one entry per group.

Example
-------
>>> errors = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0], dtype=float)
>>> inside = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
>>> p = mask_p_values(errors, inside[None])[0]
>>> round(float(p), 4), round(float(bonferroni(p, 5)), 4)
(0.119, 0.5952)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def is_binary(errors: np.ndarray) -> bool:
    """Whether every error is 0 or 1 (then the exact test applies)."""
    return bool(np.isin(errors, (0.0, 1.0)).all())


@dataclass(frozen=True)
class Totals:
    """What the tests need to know about all the rows a group is compared with."""

    n: int
    total: float  # sum of errors
    total_sq: float  # sum of squared errors
    binary: bool

    @classmethod
    def of(cls, errors: np.ndarray) -> Totals:
        errors = np.asarray(errors, dtype=float)
        return cls(len(errors), float(errors.sum()), float((errors**2).sum()), is_binary(errors))


def upper_tail_p(size: np.ndarray, err: np.ndarray, sq: np.ndarray, totals: Totals
                 ) -> np.ndarray:
    """One-sided p-values that each group errs more than the rows outside it.

    Parameters
    ----------
    size, err, sq : arrays of one shape
        Each group's row count, error sum and sum of squared errors.
    totals : Totals
        The same sums over all rows (the group's rows included).

    Returns
    -------
    ndarray, same shape
        Uncorrected p-values. A group (or its outside) of fewer than two rows
        gets 1 under Welch's test; when both sides are constant the t-statistic
        is undefined and p is 0 if the inside errs more, else 1.
    """
    size, err, sq = (np.asarray(a, dtype=float) for a in (size, err, sq))
    if totals.binary:  # Fisher's exact test: the hypergeometric upper tail
        return stats.hypergeom.sf(np.rint(err) - 1, totals.n, round(totals.total), size)
    n_out = totals.n - size
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_in, mean_out = err / size, (totals.total - err) / n_out
        var_in = np.maximum(sq - err * mean_in, 0) / (size - 1)
        sq_out = totals.total_sq - sq - (totals.total - err) * mean_out
        var_out = np.maximum(sq_out, 0) / (n_out - 1)
        a, b = var_in / size, var_out / n_out
        t = (mean_in - mean_out) / np.sqrt(a + b)
        df = (a + b) ** 2 / (a**2 / (size - 1) + b**2 / (n_out - 1))
        p = stats.t.sf(t, df)
    p = np.where((a + b) == 0, np.where(mean_in > mean_out, 0.0, 1.0), p)
    return np.where((size > 1) & (n_out > 1), p, 1.0)


def mask_p_values(errors: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """:func:`upper_tail_p` of each row of ``masks`` (shape (m, n), bool) against the rest."""
    errors = np.asarray(errors, dtype=float)
    masks = np.asarray(masks, dtype=bool).reshape(-1, len(errors))
    inside = masks.astype(float)
    return upper_tail_p(masks.sum(axis=1), inside @ errors, inside @ errors**2,
                        Totals.of(errors))


def bonferroni(p: np.ndarray | float, tried: int) -> np.ndarray | float:
    """Family-wise correction for ``tried`` tests: ``min(1, p * tried)``."""
    out = np.minimum(1.0, np.asarray(p, dtype=float) * tried)
    return float(out) if np.ndim(out) == 0 else out
