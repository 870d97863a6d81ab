"""Slices: conjunctions of up to three predicates where the model errs most.

A *slice* is a set of rows picked by predicates over a table's columns
(features, metadata, boolean traits), such as ``island = Biscoe AND sex is
missing``. :func:`find_slices` looks for the slices whose error is much higher
than the model's average and proves it with a test corrected for every slice
it scored; :func:`score_slice` re-measures a stored slice on new predictions.

Slices are ranked by the SliceLine score (Sagadeeva & Boehm, SIGMOD 2021)::

    score = alpha * ((se / ss) / e_bar - 1) - (1 - alpha) * (n / ss - 1)

with ``se`` the slice's error sum, ``ss`` its size, ``e_bar`` the mean error
and ``n`` the number of rows: high error counts most, and tiny slices pay a
size penalty. The search is ours, not SliceLine's sparse-matrix lattice: every
column is integer-encoded once, and the sizes and error sums of *all* cells of
a combination of 1, 2 or 3 columns come from one ``np.bincount`` over a
combined code. Memory stays O(rows) per combination, and SliceLine's upper
bound on a child's score (from its parents' sizes and error sums) skips whole
combinations that cannot reach the current best scores.

The definitions (:class:`Predicate`, :class:`Slice`) live in
:mod:`loopml.groups.slice`, so other stages apply a found slice to new rows
without importing the search; the tests live in
:mod:`loopml.errors.significance`.

Example
-------
>>> search = find_slices(frame, (pred != y).astype(float), k=5)  # doctest: +SKIP
>>> for stat in search.slices:  # doctest: +SKIP
...     print(stat.slice.describe(), stat.error_rate, stat.p_value)
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import plain_value
from loopml.errors.significance import Totals, bonferroni, upper_tail_p
from loopml.groups.slice import Predicate, Slice

__all__ = ["Predicate", "Slice", "SliceSearch", "SliceStat", "find_slices", "score_slice"]

#: candidates kept during the search per slice asked for: the surplus absorbs
#: the slices dropped at the end as insignificant or redundant
_POOL_PER_SLICE = 20


@dataclass
class SliceStat:
    """A slice measured against the errors.

    ``p_value`` is one-sided (the error inside is higher than outside): from
    :func:`find_slices` it is Bonferroni-corrected, ``min(1, p * n_tried)``;
    from :func:`score_slice` it is the single test's, uncorrected.
    """

    slice: Slice
    size: int
    errors: float
    error_rate: float
    error_rate_outside: float
    score: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.slice.key, "description": self.slice.describe(),
                "slice": self.slice.to_dict(), "size": int(self.size),
                "errors": float(self.errors), "error_rate": float(self.error_rate),
                "error_rate_outside": float(self.error_rate_outside),
                "score": float(self.score), "p_value": float(self.p_value)}


@dataclass
class SliceSearch:
    """What :func:`find_slices` found: significant slices, best score first."""

    slices: list[SliceStat]
    n_tried: int
    n_rows: int
    base_error: float

    def to_dict(self) -> dict[str, Any]:
        return {"slices": [s.to_dict() for s in self.slices], "n_tried": self.n_tried,
                "n_rows": self.n_rows, "base_error": self.base_error}


# ------------------------------------------------------------------ public API


def find_slices(frame: pd.DataFrame, errors: np.ndarray, *, max_depth: int = 3,
                min_support: float | int = 0.01, alpha: float = 0.95, k: int = 10,
                bins: int = 5, max_levels: int = 20,
                significance: float = 0.05) -> SliceSearch:
    """Find the slices of ``frame`` where the errors are significantly high.

    Parameters
    ----------
    frame : DataFrame of shape (n, m)
        One row per example (matched to ``errors`` by position). Columns become
        predicates: a bool column gives one predicate, ``column`` (True); a
        categorical, object or string column one ``eq`` predicate per level,
        for its ``max_levels`` most frequent levels only, the rarer ones being
        pooled and never sliced on; a numeric column with at most ``bins``
        distinct values one ``eq`` per value, otherwise ``bins`` quantile bins
        (``range`` predicates, the lowest open below and the highest open above;
        tied quantiles merge bins). Missing values give a ``missing``
        predicate. Constant columns, datetimes and columns whose levels are not
        str, int, float or bool are skipped.
    errors : array of shape (n,)
        Per-example errors, non-negative: 0/1 for classification, or a loss
        such as the squared residual for regression.
    max_depth : int, default=3
        Most predicates in one slice (1 to 3).
    min_support : float or int, default=0.01
        Smallest slice: a fraction of the rows if < 1, else a row count.
    alpha : float, default=0.95
        SliceLine's weight on the error ratio against the size penalty, in (0, 1].
    k : int, default=10
        Most slices returned.
    bins : int, default=5
        Quantile bins per numeric column.
    max_levels : int, default=20
        Most levels sliced on per categorical column.
    significance : float, default=0.05
        Family-wise error level: a slice is reported only if its score is
        positive and its Bonferroni-corrected p-value is below this.

    Returns
    -------
    SliceSearch
        ``slices`` holds at most ``k`` :class:`SliceStat`, best score first.
        ``n_tried`` counts every slice of at least ``min_support`` rows whose
        size and errors were computed; a combination of columns that the
        SliceLine bound ruled out is not counted (it could not have beaten the
        slices kept). The test is one-sided: Fisher's exact test (hypergeometric
        tail) for 0/1 errors, Welch's t-test from per-slice sums and sums of
        squares for other errors.

    Notes
    -----
    A slice is kept as a candidate only if it scores higher than every slice
    it refines (``A AND B`` must beat ``A`` and ``B``), so the refinements of a
    strong slice do not crowd out other slices. At the end a slice is reported
    only if its rows outside the better reported slices still score above zero
    on their own: ``A``, ``A AND B AND C`` or ``A AND D`` would only echo a
    reported ``A AND B``.

    Cost: one pass of ``np.bincount`` over the rows per combination of
    columns that survives the bound, in batches of about two million codes.
    Memory is O(rows) plus the pair tables, ``12 * (m * C)**2`` bytes for
    ``m`` sliced columns of at most ``C`` codes each (``C <= max_levels + 2``).
    100,000 rows by 10 columns take well under a second.
    """
    errors = _check_errors(frame, errors)
    _check_options(max_depth=max_depth, min_support=min_support, alpha=alpha, k=k,
                   bins=bins, max_levels=max_levels, significance=significance)
    n = len(frame)
    support = math.ceil(min_support * n) if min_support < 1 else int(min_support)
    base = float(errors.mean())
    if base == 0:
        return SliceSearch(slices=[], n_tried=0, n_rows=n, base_error=0.0)
    columns = [c for name in frame.columns
               if (c := _encode(frame[name], name, bins, max_levels)) is not None]
    if not columns:
        return SliceSearch(slices=[], n_tried=0, n_rows=n, base_error=base)
    search = _Search(columns, errors, alpha=alpha, min_support=support,
                     pool_size=_POOL_PER_SLICE * k, significance=significance,
                     max_depth=max_depth)
    search.run()
    return SliceSearch(slices=search.select(k), n_tried=search.n_tried, n_rows=n,
                       base_error=base)


def score_slice(slc: Slice, frame: pd.DataFrame, errors: np.ndarray, *,
                alpha: float = 0.95) -> SliceStat:
    """Measure a stored slice on new predictions.

    Parameters
    ----------
    slc : Slice
        The slice, e.g. from ``Slice.from_dict`` of an earlier search.
    frame : DataFrame of shape (n, m)
        The new examples; must hold the slice's columns.
    errors : array of shape (n,)
        Their errors, as for :func:`find_slices`.
    alpha : float, default=0.95
        SliceLine's weight, as for :func:`find_slices`.

    Returns
    -------
    SliceStat
        ``p_value`` is the one-sided p-value of this one test, *uncorrected*:
        the slice was chosen before these errors were seen. An empty slice has
        score -inf, NaN rates and p-value 1.
    """
    errors = _check_errors(frame, errors)
    inside = slc.mask(frame)
    n, size = len(frame), int(inside.sum())
    total, err = float(errors.sum()), float(errors[inside].sum())
    sq = float((errors[inside] ** 2).sum())
    totals = Totals.of(errors)
    if size == 0:
        return SliceStat(slc, 0, 0.0, math.nan, total / n, -math.inf, 1.0)
    base = total / n
    score = _score(np.array([size]), np.array([err]), n, base, alpha)[0] if base > 0 else 0.0
    p = upper_tail_p(np.array([size]), np.array([err]), np.array([sq]), totals)[0]
    outside = (total - err) / (n - size) if size < n else math.nan
    return SliceStat(slc, size, err, err / size, outside, float(score), float(p))


# ------------------------------------------------------------------ input checks


def _check_errors(frame: pd.DataFrame, errors: np.ndarray) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, but it is {type(frame).__name__}.")
    errors = np.asarray(errors, dtype=float)
    if errors.ndim != 1 or len(errors) != len(frame):
        raise ValueError(f"errors must be 1-D with one value per row of frame, but frame "
                         f"has {len(frame)} rows and errors has shape {errors.shape}.")
    if len(errors) == 0:
        raise ValueError("frame and errors are empty: there is nothing to slice.")
    if not np.isfinite(errors).all() or (errors < 0).any():
        raise ValueError("errors must be finite and non-negative, but they hold "
                         f"{int((~np.isfinite(errors)).sum())} NaN/inf and "
                         f"{int((errors < 0).sum())} negative values.")
    return errors


def _check_options(**options: Any) -> None:
    rules = {"max_depth": (lambda v: v in (1, 2, 3), "1, 2 or 3"),
             "min_support": (lambda v: v > 0, "> 0 (a fraction if < 1, else a count)"),
             "alpha": (lambda v: 0 < v <= 1, "in (0, 1]"),
             "k": (lambda v: v >= 1, ">= 1"),
             "bins": (lambda v: v >= 2, ">= 2"),
             "max_levels": (lambda v: v >= 1, ">= 1"),
             "significance": (lambda v: 0 < v < 1, "in (0, 1)")}
    for name, value in options.items():
        ok, expected = rules[name]
        if not ok(value):
            raise ValueError(f"{name} must be {expected}, but it is {value!r}.")


# ------------------------------------------------------------------ encoding


@dataclass
class _Column:
    """A column as small integer codes, with the predicate each code stands for."""

    name: str
    codes: np.ndarray                     # int16, one per row
    predicates: list[Predicate | None]    # None: a code never sliced on

    @property
    def sliceable(self) -> np.ndarray:
        return np.array([p is not None for p in self.predicates])


def _encode(series: pd.Series, name: str, bins: int, max_levels: int) -> _Column | None:
    """Integer-encode one column, or None to skip it (constant or unsupported)."""
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(
            series) or pd.api.types.is_complex_dtype(series):
        return None
    if pd.api.types.is_bool_dtype(series):
        codes, predicates = _encode_bool(series, name)
    elif pd.api.types.is_numeric_dtype(series):
        codes, predicates = _encode_numeric(series, name, bins)
    else:
        encoded = _encode_categorical(series, name, max_levels)
        if encoded is None:
            return None
        codes, predicates = encoded
    if np.count_nonzero(np.bincount(codes, minlength=len(predicates))) <= 1:
        return None
    return _Column(name, codes.astype(np.int16), predicates)


def _encode_bool(series: pd.Series, name: str) -> tuple[np.ndarray, list[Predicate | None]]:
    codes = series.to_numpy(dtype=bool, na_value=False).astype(np.int16)
    predicates: list[Predicate | None] = [None, Predicate(name, "eq", True)]
    return _with_missing(codes, series.isna().to_numpy(dtype=bool), predicates, name)


def _encode_numeric(series: pd.Series, name: str,
                    bins: int) -> tuple[np.ndarray, list[Predicate | None]]:
    x = series.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(x)
    present = x[~missing]
    levels = np.unique(present)
    predicates: list[Predicate | None]
    if len(levels) <= bins:
        integer = pd.api.types.is_integer_dtype(series)
        codes = np.searchsorted(levels, x)
        predicates = [Predicate(name, "eq", int(v) if integer else float(v)) for v in levels]
    else:
        edges = _bin_edges(present, levels, bins)
        codes = np.searchsorted(edges, x, side="right")
        ends = [None, *map(float, edges), None]
        predicates = [Predicate(name, "range", lo=lo, hi=hi) for lo, hi in itertools.pairwise(ends)]
    return _with_missing(codes, missing, predicates, name)


def _bin_edges(present: np.ndarray, levels: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges of the quantile bins, each a data value, no bin empty.

    ``method="lower"`` makes every edge a value in the data, so each bin
    ``[edge, next edge)`` holds at least its lower edge. A value tied over
    several quantiles (70% zeros) gets a bin of its own, closed by the next
    value; an edge at the minimum, which would leave the bottom bin empty, is
    dropped.
    """
    quantiles = np.quantile(present, np.arange(1, bins) / bins, method="lower")
    edges, counts = np.unique(quantiles, return_counts=True)
    after = np.searchsorted(levels, edges[counts > 1], side="right")
    edges = np.union1d(edges, levels[after[after < len(levels)]])
    edges = edges[edges > levels[0]]
    return edges if len(edges) else levels[1:2]


def _encode_categorical(series: pd.Series, name: str,
                        max_levels: int) -> tuple[np.ndarray, list[Predicate | None]] | None:
    raw, uniques = pd.factorize(series, use_na_sentinel=True)
    missing = raw < 0
    counts = np.bincount(raw[~missing], minlength=len(uniques))
    order = np.argsort(-counts, kind="stable")
    kept = order[:max_levels]
    levels = [plain_value(uniques[i]) for i in kept]
    if not all(isinstance(v, str | int | float | bool) for v in levels):
        return None
    remap = np.full(len(uniques) + 1, len(kept), dtype=np.int64)   # pooled by default
    remap[kept] = np.arange(len(kept))
    codes = remap[np.where(missing, len(uniques), raw)]
    predicates: list[Predicate | None] = [Predicate(name, "eq", v) for v in levels]
    if len(uniques) > max_levels:
        predicates.append(None)
    return _with_missing(codes, missing, predicates, name)


def _with_missing(codes: np.ndarray, missing: np.ndarray, predicates: list[Predicate | None],
                  name: str) -> tuple[np.ndarray, list[Predicate | None]]:
    if missing.any():
        codes = np.where(missing, len(predicates), codes)
        predicates = [*predicates, Predicate(name, "missing")]
    return codes, predicates


# ------------------------------------------------------------------ statistics


def _score(size: np.ndarray, err: np.ndarray, n: int, base: float, alpha: float) -> np.ndarray:
    """SliceLine's score; -inf for empty slices."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score = alpha * ((err / size) / base - 1) - (1 - alpha) * (n / size - 1)
    return np.where(size > 0, score, -np.inf)


def _upper_bound(size_ub: np.ndarray, err_ub: np.ndarray, max_err: np.ndarray, n: int,
                 base: float, alpha: float, min_support: int) -> np.ndarray:
    """The best score any subset of at least ``min_support`` rows could reach.

    A subset of ``ss`` rows holds at most ``min(err_ub, ss * max_err)`` error,
    and for that best case the score is monotone in ``ss`` on either side of
    ``err_ub / max_err``; so its maximum over ``[min_support, size_ub]`` is at
    one of three points (SliceLine, section 3.2).
    """
    size_ub = size_ub.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        turn = np.where(max_err > 0, err_ub / max_err, min_support)
    best = np.full(size_ub.shape, -np.inf)
    for ss in (np.full(size_ub.shape, float(min_support)),
               np.clip(turn, min_support, np.maximum(size_ub, min_support)), size_ub):
        best = np.maximum(best, _score(ss, np.minimum(err_ub, ss * max_err), n, base, alpha))
    return np.where(size_ub >= min_support, best, -np.inf)


# ------------------------------------------------------------------ search

#: most codes counted by one ``np.bincount`` (bounds the memory of a batch)
_CHUNK = 1 << 21


@dataclass
class _Candidate:
    combo: tuple[int, ...]   # the search's column indices
    cell: tuple[int, ...]    # one code per column
    score: float
    size: int
    err: float
    sq: float
    p: float


class _Search:
    """One run of the search; see :func:`find_slices`.

    Work goes in batches: a *prefix* of columns and the columns ``cs`` that
    extend it, all counted by one ``np.bincount`` over offset codes. Columns
    are ordered by cardinality, highest first, so padding every extension to
    the first one's cardinality wastes little. The sizes and error sums of
    single columns and pairs are kept in arrays padded to the largest
    cardinality ``C`` (``m * C`` and ``m * m * C * C`` cells) for the bounds
    and generalisation checks of the next depth.
    """

    def __init__(self, columns: list[_Column], errors: np.ndarray, *, alpha: float,
                 min_support: int, pool_size: int, significance: float, max_depth: int) -> None:
        self.columns = sorted(columns, key=lambda c: -len(c.predicates))
        self.codes = np.stack([c.codes for c in self.columns])
        self.card = np.array([len(c.predicates) for c in self.columns])
        self.errors, self.alpha, self.min_support = errors, alpha, min_support
        self.pool_size, self.significance = pool_size, significance
        self.max_depth = min(max_depth, len(self.columns))
        self.totals = Totals.of(errors)
        self.base = self.totals.total / self.totals.n
        self.squares = None if self.totals.binary else errors**2
        self.pool: list[_Candidate] = []
        self.n_tried = 0
        m, c = len(self.columns), int(self.card.max())
        self.tables: dict[int, dict[str, np.ndarray]] = {1: {
            "size": np.zeros((m, c), dtype=np.int32), "err": np.zeros((m, c)),
            "sliceable": np.zeros((m, c), dtype=bool), "max_err": np.zeros((m, c))}}
        for i, column in enumerate(self.columns):
            self.tables[1]["sliceable"][i, :self.card[i]] = column.sliceable
            self.tables[1]["max_err"][i, :self.card[i]] = self._max_error(i)
        if self.max_depth == 3:
            self.tables[2] = {"size": np.zeros((m, m, c, c), dtype=np.int32),
                              "err": np.zeros((m, m, c, c))}
        # per evaluated combination: the best score a refinement of it could reach
        self.child_bound = {1: np.full(m, -np.inf), 2: np.full((m, m), -np.inf)}

    def _max_error(self, i: int) -> np.ndarray:
        """Largest error per code of column ``i``, for the bound (0/1 errors: 1)."""
        if self.totals.binary:
            return np.ones(self.card[i])
        out = np.zeros(self.card[i])
        np.maximum.at(out, self.codes[i], self.errors)
        return out

    def threshold(self) -> float:
        """The score a new candidate must beat: the pool's worst once it is full."""
        return max(self.pool[-1].score, 0.0) if len(self.pool) >= self.pool_size else 0.0

    def run(self) -> None:
        self._evaluate((), np.arange(len(self.columns)))
        for depth in range(2, self.max_depth + 1):
            for prefix, cs in self._batches(depth):
                self._evaluate(prefix, cs)

    def _batches(self, depth: int):
        """``(prefix, cs)`` for ``depth``, best prefixes first, filtered as the threshold rises.

        ``(*prefix, c)`` is built only if every parent could still have a
        child above the threshold, so depth 3 only visits columns seen in
        promising depth-2 slices.
        """
        bound = self.child_bound[depth - 1]
        prefixes = np.argwhere(np.isfinite(bound))
        prefixes = prefixes[np.argsort(-bound[tuple(prefixes.T)], kind="stable")]
        for prefix in map(tuple, prefixes.tolist()):
            thr = self.threshold()
            if bound[prefix] <= thr:
                break
            cs = np.arange(prefix[-1] + 1, len(self.columns))
            for sub in itertools.combinations(prefix, depth - 2):
                cs = cs[bound[(*sub, cs)] > thr]
            if len(cs):
                yield prefix, cs

    def _part(self, name: str, axes: tuple[int, ...], prefix: tuple[int, ...], cs: np.ndarray,
              shape: tuple[int, ...]) -> np.ndarray:
        """Table ``name`` of the sub-combination ``axes`` of ``(*prefix, c)`` for each c in
        ``cs``, broadcastable to ``(len(cs), *shape)``."""
        d = len(shape)
        fixed = tuple(prefix[a] for a in axes if a < d - 1)
        cut = tuple(slice(0, shape[a]) for a in axes)
        table = self.tables[len(axes)][name]
        if axes[-1] == d - 1:
            part = table[(*fixed, cs)][(slice(None), *cut)]
        else:
            part = table[fixed][cut][None]
        return np.expand_dims(part, [1 + a for a in range(d) if a not in axes])

    def _reduce(self, ufunc: np.ufunc, name: str, depth: int, prefix: tuple[int, ...],
                cs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return functools.reduce(ufunc, [self._part(name, axes, prefix, cs, shape) for axes
                                        in itertools.combinations(range(len(shape)), depth)])

    def _bound(self, size: np.ndarray, err: np.ndarray, max_err: np.ndarray) -> np.ndarray:
        return _upper_bound(size, err, max_err, self.totals.n, self.base, self.alpha,
                            self.min_support)

    def _evaluate(self, prefix: tuple[int, ...], cs: np.ndarray) -> None:
        """Count and score every cell of ``(*prefix, c)`` for the ``cs`` the bound leaves."""
        depth = len(prefix) + 1
        shape = (*(int(self.card[p]) for p in prefix), int(self.card[cs].max()))
        sliceable = self._reduce(np.logical_and, "sliceable", 1, prefix, cs, shape)
        max_err = self._reduce(np.minimum, "max_err", 1, prefix, cs, shape)
        if depth > 1:
            size_ub = self._reduce(np.minimum, "size", depth - 1, prefix, cs, shape)
            err_ub = self._reduce(np.minimum, "err", depth - 1, prefix, cs, shape)
            hopeful = sliceable & (self._bound(size_ub, err_ub, max_err) > self.threshold())
            keep = hopeful.reshape(len(cs), -1).any(axis=1)
            if not keep.any():
                return
            cs, sliceable, max_err = cs[keep], sliceable[keep], max_err[keep]
        size, err, sq = self._count(prefix, cs, shape)
        valid = sliceable & (size >= self.min_support)
        self.n_tried += int(np.count_nonzero(valid))
        score = np.where(valid, _score(size, err, self.totals.n, self.base, self.alpha), -np.inf)
        if depth < self.max_depth:
            index = (*prefix, cs, *(slice(0, k) for k in shape))
            self.tables[depth]["size"][index] = size
            self.tables[depth]["err"][index] = err
            bound = np.where(valid, self._bound(size, err, max_err), -np.inf)
            self.child_bound[depth][(*prefix, cs)] = bound.reshape(len(cs), -1).max(axis=1)
        self._offer(prefix, cs, shape, size, err, sq, score)

    def _count(self, prefix: tuple[int, ...], cs: np.ndarray,
               shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Sizes, error sums and squared-error sums, shaped ``(len(cs), *shape)``."""
        head = np.zeros(self.totals.n, dtype=np.intp)
        for p, k in zip(prefix, shape, strict=False):
            head *= k
            head += self.codes[p]
        head *= shape[-1]
        cells, step = math.prod(shape), max(1, _CHUNK // self.totals.n)
        sums: list[list[np.ndarray]] = [[], [], []]
        for start in range(0, len(cs), step):
            part = cs[start:start + step]
            code = self.codes[part].astype(np.intp)
            code += head
            code += (np.arange(len(part)) * cells)[:, None]
            code, length = code.ravel(), len(part) * cells
            sums[0].append(np.bincount(code, minlength=length))
            sums[1].append(np.bincount(code, np.tile(self.errors, len(part)), length))
            if self.squares is not None:
                sums[2].append(np.bincount(code, np.tile(self.squares, len(part)), length))
        size, err, sq = (np.concatenate(s).reshape(len(cs), *shape) if s else None for s in sums)
        return size, err, sq

    def _offer(self, prefix: tuple[int, ...], cs: np.ndarray, shape: tuple[int, ...],
               size: np.ndarray, err: np.ndarray, sq: np.ndarray | None,
               score: np.ndarray) -> None:
        """Pool the cells that beat the threshold and every generalisation, if the test allows."""
        better = score > self.threshold()
        for depth in range(1, len(shape)):
            for axes in itertools.combinations(range(len(shape)), depth):
                general = _score(self._part("size", axes, prefix, cs, shape),
                                 self._part("err", axes, prefix, cs, shape),
                                 self.totals.n, self.base, self.alpha)
                better &= score > general
        if not better.any():
            return
        idx = np.nonzero(better)
        sq = err if sq is None else sq   # 0/1 errors: e**2 == e
        p = upper_tail_p(size[idx], err[idx], sq[idx], self.totals)
        # a loose gate (uncorrected): select() applies the corrected test, and for later
        # slices tests them against the rows the better slices leave unexplained
        for i in np.flatnonzero(p < self.significance):
            at = tuple(int(axis[i]) for axis in idx)
            self.pool.append(_Candidate((*prefix, int(cs[at[0]])), at[1:], float(score[at]),
                                        int(size[at]), float(err[at]), float(sq[at]), float(p[i])))
        self.pool.sort(key=lambda c: (-c.score, c.combo, c.cell))
        del self.pool[self.pool_size:]

    def select(self, k: int) -> list[SliceStat]:
        """The best ``k`` significant candidates that each add rows of their own.

        A candidate is kept only if its rows outside the better slices already
        kept still score above zero: a refinement of a kept slice has no such
        rows, and a slice that merely overlaps one (``A``, or ``A AND C``, next
        to a kept ``A AND B``) scores nothing once the overlap is taken out.

        The first slice is tested against every row outside it; each later one
        against the rows that no better kept slice explains (its own new rows
        against the rest), so a strong slice does not hide a weaker one by
        inflating the error "outside". The correction stays ``n_tried``.
        """
        chosen: list[tuple[_Candidate, float]] = []
        covered = np.zeros(self.totals.n, dtype=bool)
        for cand in self.pool:
            inside = self._mask(cand)
            p = cand.p if not chosen else self._p_beyond(inside & ~covered, ~covered)
            if bonferroni(p, self.n_tried) >= self.significance:
                continue
            if chosen and not self._scores_alone(inside & ~covered):
                continue
            chosen.append((cand, p))
            covered |= inside
            if len(chosen) == k:
                break
        return [self._stat(c, p) for c, p in chosen]

    def _p_beyond(self, rows: np.ndarray, universe: np.ndarray) -> float:
        """One-sided p that ``rows`` err more than the rest of ``universe``."""
        errors = self.errors[universe]
        totals = Totals(n=int(universe.sum()), total=float(errors.sum()),
                        total_sq=float((errors**2).sum()), binary=self.totals.binary)
        picked = self.errors[rows]
        p = upper_tail_p(np.array([len(picked)]), np.array([picked.sum()]),
                         np.array([(picked**2).sum()]), totals)
        return float(p[0])

    def _mask(self, cand: _Candidate) -> np.ndarray:
        inside = np.ones(self.totals.n, dtype=bool)
        for c, v in zip(cand.combo, cand.cell, strict=True):
            inside &= self.codes[c] == v
        return inside

    def _scores_alone(self, rows: np.ndarray) -> bool:
        size = np.array([np.count_nonzero(rows)])
        if size[0] < self.min_support:
            return False
        err = np.array([self.errors[rows].sum()])
        return bool(_score(size, err, self.totals.n, self.base, self.alpha)[0] > 0)

    def _stat(self, cand: _Candidate, p: float) -> SliceStat:
        predicates = tuple(self.columns[c].predicates[v] for c, v in zip(cand.combo, cand.cell,
                                                                          strict=True))
        n, total = self.totals.n, self.totals.total
        outside = (total - cand.err) / (n - cand.size) if cand.size < n else math.nan
        return SliceStat(Slice(predicates), cand.size, cand.err, cand.err / cand.size, outside,
                         cand.score, bonferroni(p, self.n_tried))
