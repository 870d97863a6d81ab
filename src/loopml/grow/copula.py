"""Synthesize table rows with a Gaussian copula, and report how faithful they are.

The method is SDV's ``GaussianCopulaSynthesizer``; SDV itself (and its
``copulas``, ``rdt`` and ``sdmetrics``) pins pandas < 3, so loopml carries its
own, on NumPy, SciPy and scikit-learn:

1. Each column is mapped to uniforms in (0, 1). A numeric column by its ranks
   (ties broken at random, seeded), so its marginal is the empirical one; a
   categorical column by SDV's trick: each category owns an interval of
   [0, 1] as wide as its share (most frequent first) and a row draws a uniform
   inside its category's interval. A missing category is a category; a numeric
   column with missing values gets a missing indicator, a two-category column
   of the copula, so missingness keeps its rate and its ties to other columns.
2. The uniforms become normal scores (``Phi^-1``); their correlation matrix
   (pairwise complete, shrunk toward the identity when not positive definite)
   is the copula.
3. Sampling draws from that multivariate normal, maps back through ``Phi`` and
   the inverse marginals: a numeric value interpolates the sorted observed
   values (so it stays within the observed range; whole-number columns are
   rounded), a category is the one whose interval holds the uniform.

:func:`synthesize_rows` fits one copula per class (a regression target is a
column of one copula), on the source's train examples only (of a stored group
when given), and measures each with :func:`fidelity`: per-column distance (KS
and scaled Wasserstein for numbers, total variation for categories), the
difference of the Pearson correlation matrices, and the cross-validated AUC of
a classifier telling real rows from synthetic ones (0.5: it cannot).

>>> copula = GaussianCopula({"x": "numeric", "k": "categorical"}).fit(frame)  # doctest: +SKIP
>>> rows = copula.sample(100, rng=np.random.default_rng(0))  # doctest: +SKIP
>>> fidelity(frame, rows, {"x": "numeric", "k": "categorical"}).auc  # doctest: +SKIP
0.52
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.images import modality
from loopml.exceptions import DataError, LoopmlError
from loopml.grow.augment import train_parents
from loopml.progress import Progress, counter

if TYPE_CHECKING:
    from loopml.data.dataset import Dataset
    from loopml.data.split import Split
    from loopml.groups import Group

MIN_ROWS = 5  # train rows a class (or a regression group) needs for its own copula
EIGEN_FLOOR = 1e-3  # the smallest eigenvalue a correlation matrix is shrunk to
EDGE = 1e-6  # uniforms are kept inside (EDGE, 1 - EDGE) before Phi^-1
AUC_FOLDS = 5
MISSING = "__loopml_missing__"  # the category a missing categorical value becomes inside the fit


# ---------------------------------------------------------------- the copula


@dataclass
class _Marginal:
    """One column's marginal: sorted values (numeric) or category intervals (categorical)."""

    name: str
    kind: str
    values: np.ndarray | None = None  # numeric: sorted observed values
    whole: bool = False
    categories: list = field(default_factory=list)  # categorical: most frequent first
    bounds: np.ndarray | None = None  # categorical: cumulative shares, last = 1
    missing: float = 0.0  # numeric: share of missing values (its indicator is a copula column)


class GaussianCopula:
    """A Gaussian copula over a table's columns (SDV's method; see the module docstring).

    Parameters
    ----------
    columns
        Column name -> "numeric" or "categorical" (a dataset's ``features``).
    seed
        Seeds the fit's random draws (tie-breaking, the uniforms inside a
        category's interval): the same table gives the same copula.

    Attributes (after :meth:`fit`)
    ------------------------------
    marginals_ : one per column; correlation_ : the normal-score correlation
    matrix (numeric columns, their missing indicators, categorical columns);
    dims_ : the name of each of its rows; shrinkage_ : how far it was pulled
    toward the identity to be positive definite (0: not at all); n_rows_ .
    """

    def __init__(self, columns: dict[str, str], *, seed: int = 0) -> None:
        self.columns = columns
        self.seed = seed

    def fit(self, frame: pd.DataFrame) -> GaussianCopula:
        """Learn the marginals and the correlation of ``frame``'s columns; returns self."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise DataError(f"column(s) {', '.join(missing)} are not in the table to fit")
        if len(frame) < 2:
            raise DataError(f"a copula needs at least 2 rows, got {len(frame)}")
        rng = np.random.default_rng(self.seed)
        marginals, uniforms, dims = [], [], []
        for name, kind in self.columns.items():
            column = frame[name]
            if kind == "numeric":
                marginal, parts = _fit_numeric(name, column, rng)
            else:
                marginal, parts = _fit_categorical(name, column.astype(object), rng)
            marginals.append(marginal)
            for dim, u in parts:
                dims.append(dim)
                uniforms.append(u)
        from scipy.stats import norm

        scores = pd.DataFrame(norm.ppf(np.clip(np.column_stack(uniforms), EDGE, 1 - EDGE)),
                              columns=range(len(dims)))
        correlation = scores.corr().fillna(0.0).to_numpy(copy=True)  # pairwise; constant -> 0
        np.fill_diagonal(correlation, 1.0)
        self.correlation_, self.shrinkage_ = _positive_definite(correlation)
        self.marginals_, self.dims_, self.n_rows_ = marginals, dims, len(frame)
        return self

    def sample(self, n: int, *, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` synthetic rows with the fitted columns, in their order."""
        if not hasattr(self, "correlation_"):
            raise LoopmlError("the copula is not fitted: call fit first")
        from scipy.stats import norm

        chol = np.linalg.cholesky(self.correlation_)
        u = norm.cdf(rng.standard_normal((int(n), len(self.dims_))) @ chol.T)
        at = {dim: i for i, dim in enumerate(self.dims_)}
        out = {}
        for m in self.marginals_:
            if m.kind == "numeric":
                out[m.name] = _inverse_numeric(m, u[:, at[m.name]] if m.name in at else None,
                                               u[:, at[f"{m.name}.missing"]]
                                               if f"{m.name}.missing" in at else None, n)
            else:
                index = np.minimum(np.searchsorted(m.bounds, u[:, at[m.name]], side="right"),
                                   len(m.categories) - 1)
                values = np.asarray(m.categories, dtype=object)[index]
                values[values == MISSING] = np.nan
                out[m.name] = values
        return pd.DataFrame(out)


def _fit_numeric(name: str, column: pd.Series, rng: np.random.Generator
                 ) -> tuple[_Marginal, list[tuple[str, np.ndarray]]]:
    x = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(x)
    values = x[present]
    marginal = _Marginal(name, "numeric", np.sort(values),
                         bool(len(values)) and bool(np.allclose(values % 1, 0)),
                         missing=float(1 - present.mean()))
    parts = []
    if len(values):
        order = np.lexsort((rng.random(len(values)), values))  # ties broken at random
        ranks = np.empty(len(values))
        ranks[order] = np.arange(len(values))
        u = np.full(len(x), np.nan)
        u[present] = (ranks + 0.5) / len(values)
        parts.append((name, u))
    if 0 < marginal.missing < 1:  # the indicator: present below 1 - missing, missing above
        low = np.where(present, 0.0, 1 - marginal.missing)
        width = np.where(present, 1 - marginal.missing, marginal.missing)
        parts.append((f"{name}.missing", low + rng.random(len(x)) * width))
    return marginal, parts


def _fit_categorical(name: str, column: pd.Series, rng: np.random.Generator
                     ) -> tuple[_Marginal, list[tuple[str, np.ndarray]]]:
    values = column.where(column.notna(), MISSING)
    shares = values.value_counts(normalize=True, sort=False)
    shares = shares.iloc[np.lexsort((shares.index.astype(str), -shares.to_numpy()))]
    bounds = np.cumsum(shares.to_numpy())
    bounds[-1] = 1.0
    low = pd.Series(bounds - shares.to_numpy(), index=shares.index)
    start = low.reindex(values).to_numpy()
    width = shares.reindex(values).to_numpy()
    return (_Marginal(name, "categorical", categories=list(shares.index), bounds=bounds),
            [(name, start + rng.random(len(values)) * width)])


def _inverse_numeric(m: _Marginal, u: np.ndarray | None, gone: np.ndarray | None,
                     n: int) -> np.ndarray:
    if u is None:  # no value was ever present
        return np.full(n, np.nan)
    ranks = (np.arange(len(m.values)) + 0.5) / len(m.values)
    out = np.interp(u, ranks, m.values)  # clipped to the observed range at both ends
    if m.whole:
        out = np.round(out)
    if gone is not None:
        out[gone >= 1 - m.missing] = np.nan
    return out


def _positive_definite(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    """``matrix`` shrunk toward the identity just enough for its eigenvalues to reach
    :data:`EIGEN_FLOOR`, and the weight of the identity (0 when already fine)."""
    lowest = float(np.linalg.eigvalsh(matrix).min())
    if lowest >= EIGEN_FLOOR:
        return matrix, 0.0
    weight = (EIGEN_FLOOR - lowest) / (1 - lowest)
    return (1 - weight) * matrix + weight * np.eye(len(matrix)), float(weight)


# ---------------------------------------------------------------- fidelity


@dataclass(frozen=True)
class ColumnDistance:
    """How far one synthetic column is from the real one.

    Numbers: ``ks`` (Kolmogorov-Smirnov statistic, 0..1) and ``wasserstein``
    (earth mover's distance over the real std: 1 = a shift of one std).
    Categories: ``tvd`` (total variation distance of the shares, 0..1; a
    missing value is a category). ``distance`` is ks or tvd.
    """

    column: str
    kind: str
    ks: float | None
    wasserstein: float | None
    tvd: float | None
    missing_real: float
    missing_synthetic: float

    @property
    def distance(self) -> float:
        return self.ks if self.kind == "numeric" else self.tvd

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "kind": self.kind, "distance": self.distance,
                "ks": self.ks, "wasserstein": self.wasserstein, "tvd": self.tvd,
                "missing_real": self.missing_real, "missing_synthetic": self.missing_synthetic}


@dataclass(frozen=True)
class Fidelity:
    """Synthetic rows against the real ones they imitate.

    ``correlation_diff``: mean absolute difference of the pairwise Pearson
    correlations of the numeric columns (None with fewer than two);
    ``worst_pair``: the pair that differs most, with its real and synthetic
    correlation; ``auc``: cross-validated ROC AUC of a gradient-boosted
    classifier telling real (0) from synthetic (1) rows; 0.5 means it cannot,
    1 means it always can (None when a side has fewer than 2 rows). Compared
    with the very rows the copula was fitted on, synthetic rows follow that
    sample's own quirks, and the AUC often falls below 0.5 (a fold's real rows
    left out of training make their region look synthetic): read it as 0.5,
    as SDMetrics' detection score does. A Gaussian copula cannot keep rows
    that share one exact value across columns (Boston's ``rad`` 24 always
    with ``tax`` 666): such tables get a high AUC, and should.
    """

    columns: list[ColumnDistance]
    correlation_diff: float | None
    worst_pair: tuple[str, str, float, float] | None
    auc: float | None
    n_real: int
    n_synthetic: int

    def column(self, name: str) -> ColumnDistance:
        return next(c for c in self.columns if c.column == name)

    @property
    def worst_column(self) -> ColumnDistance | None:
        return max(self.columns, key=lambda c: c.distance, default=None)

    def to_dict(self) -> dict[str, Any]:
        pair = self.worst_pair
        return {"n_real": self.n_real, "n_synthetic": self.n_synthetic, "auc": self.auc,
                "correlation_diff": self.correlation_diff,
                "worst_pair": None if pair is None else
                {"columns": [pair[0], pair[1]], "real": pair[2], "synthetic": pair[3]},
                "columns": [c.to_dict() for c in self.columns]}


def fidelity(real: pd.DataFrame, synthetic: pd.DataFrame, columns: dict[str, str], *,
             seed: int = 0) -> Fidelity:
    """Per-column distance, correlation difference and real-vs-synthetic AUC.

    ``columns`` maps each column to compare to "numeric" or "categorical".
    """
    distances = [_column_distance(name, kind, real[name], synthetic[name])
                 for name, kind in columns.items()]
    numeric = [c for c, k in columns.items() if k == "numeric"]
    diff, worst = _correlation_diff(real[numeric], synthetic[numeric])
    return Fidelity(distances, diff, worst, _real_vs_synthetic_auc(real, synthetic, columns,
                                                                   seed=seed),
                    len(real), len(synthetic))


def _column_distance(name: str, kind: str, real: pd.Series, fake: pd.Series) -> ColumnDistance:
    missing_real, missing_fake = float(real.isna().mean()), float(fake.isna().mean())
    if kind == "numeric":
        from scipy.stats import ks_2samp, wasserstein_distance

        a = pd.to_numeric(real, errors="coerce").dropna().to_numpy(dtype=float)
        b = pd.to_numeric(fake, errors="coerce").dropna().to_numpy(dtype=float)
        if not len(a) or not len(b):
            return ColumnDistance(name, kind, None, None, None, missing_real, missing_fake)
        std = float(a.std()) or 1.0
        return ColumnDistance(name, kind, float(ks_2samp(a, b).statistic),
                              float(wasserstein_distance(a, b) / std), None,
                              missing_real, missing_fake)
    p = real.astype(object).where(real.notna(), MISSING).value_counts(normalize=True)
    q = fake.astype(object).where(fake.notna(), MISSING).value_counts(normalize=True)
    tvd = 0.5 * float((p.reindex(p.index.union(q.index), fill_value=0.0)
                       - q.reindex(p.index.union(q.index), fill_value=0.0)).abs().sum())
    return ColumnDistance(name, kind, None, None, tvd, missing_real, missing_fake)


def _correlation_diff(real: pd.DataFrame, fake: pd.DataFrame
                      ) -> tuple[float | None, tuple[str, str, float, float] | None]:
    if real.shape[1] < 2:
        return None, None
    a = real.apply(pd.to_numeric, errors="coerce").astype(float).corr()
    b = fake.apply(pd.to_numeric, errors="coerce").astype(float).corr()
    upper = np.triu_indices(len(a), k=1)
    ra, rb = a.to_numpy()[upper], b.to_numpy()[upper]
    known = ~(np.isnan(ra) | np.isnan(rb))  # a constant column has no correlation
    if not known.any():
        return None, None
    gaps = np.abs(ra - rb)[known]
    at = int(np.argmax(gaps))
    i, j = upper[0][known][at], upper[1][known][at]
    return (float(gaps.mean()),
            (str(a.columns[i]), str(a.columns[j]), float(ra[known][at]), float(rb[known][at])))


def _real_vs_synthetic_auc(real: pd.DataFrame, fake: pd.DataFrame, columns: dict[str, str], *,
                           seed: int) -> float | None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = min(AUC_FOLDS, len(real), len(fake))
    if folds < 2:
        return None
    both = pd.concat([real[list(columns)], fake[list(columns)]], ignore_index=True)
    features, categorical = {}, []
    for name, kind in columns.items():
        if kind == "numeric":
            features[name] = pd.to_numeric(both[name], errors="coerce").astype(float)
            categorical.append(False)
        else:
            codes = pd.Categorical(both[name].astype(object).where(both[name].notna(), None)
                                   .map(lambda v: None if v is None else str(v))).codes
            features[name] = np.where(codes < 0, np.nan, codes).astype(float)
            categorical.append(int(codes.max(initial=0)) < 250)  # HistGB bins categories
    X = pd.DataFrame(features).to_numpy()
    y = np.r_[np.zeros(len(real)), np.ones(len(fake))]
    model = HistGradientBoostingClassifier(max_iter=100, min_samples_leaf=10,
                                           categorical_features=np.asarray(categorical),
                                           random_state=seed)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


# ---------------------------------------------------------------- synthesizing a dataset's rows


@dataclass
class Stratum:
    """One copula: its class (None for regression), rows fitted on and added, its fidelity.

    ``fidelity`` compares the real rows with a check sample of the same copula
    of ``n_checked`` rows (at least as many as the real ones), not with the
    few rows added: 30 rows would measure the sampling noise of 30 rows, and a
    cross-validated AUC on so few rows can fall far below 0.5.
    """

    label: Any
    n_real: int
    n_synthetic: int
    n_checked: int
    fidelity: Fidelity
    shrinkage: float

    def to_dict(self) -> dict[str, Any]:
        return {"class": _plain(self.label), "n_real": self.n_real,
                "n_synthetic": self.n_synthetic, "n_checked": self.n_checked,
                "shrinkage": self.shrinkage, "fidelity": self.fidelity.to_dict()}


@dataclass
class TableSynthResult:
    """Synthetic train rows of a table, one copula per class, with their fidelity.

    ``rows`` holds the dataset's features and target; ``strata`` one entry per
    copula; ``skipped`` the classes with too few train rows for a copula
    (class -> why).
    """

    rows: pd.DataFrame
    strata: list[Stratum]
    skipped: dict[Any, str] = field(default_factory=dict)
    group: str | None = None
    lift: Any = None  # the action's Lift, once measured

    def frame(self, dataset: Dataset) -> pd.DataFrame:
        """The rows for ``add_examples`` (the image result's API; they hold the columns)."""
        return self.rows

    @property
    def auc(self) -> float | None:
        """The real-vs-synthetic AUC averaged over the copulas, weighted by their real rows."""
        known = [(s.fidelity.auc, s.n_real) for s in self.strata if s.fidelity.auc is not None]
        if not known:
            return None
        return float(np.average([a for a, _ in known], weights=[n for _, n in known]))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "table", "method": "gaussian_copula", "group": self.group,
                "n_rows": len(self.rows), "auc": self.auc,
                "strata": [s.to_dict() for s in self.strata],
                "skipped": [{"class": _plain(c), "reason": r} for c, r in self.skipped.items()],
                "lift": None if self.lift is None else self.lift.to_dict()}

    def describe(self) -> str:
        text = (f"synthesized {len(self.rows)} row(s) with {len(self.strata)} Gaussian "
                f"copula(s)")
        if self.auc is not None:
            text += f"; real-vs-synthetic AUC {self.auc:.2f}"
        if self.skipped:
            text += f"; {len(self.skipped)} class(es) skipped (too few train rows)"
        return text


def check_table_request(dataset: Dataset, *, count: Any) -> int:
    """The checks before any fit: a table (not text), ``count`` a whole number >= 1."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        unit = "rows per class" if dataset.task == "classification" else "rows"
        raise LoopmlError(f"count must be a whole number of {unit}, at least 1, not {count!r}",
                          hint="e.g. --count 20")
    if modality(dataset) == "text":
        raise DataError(f"dataset '{dataset.name}' has text columns: synthesize makes table "
                        "rows (Gaussian copula) and images of characters, not text",
                        hint="add text examples with 'loopml augment' (typos, dropped words) "
                             "or 'loopml collect'")
    return int(count)


def synthesize_rows(dataset: Dataset, split: Split, *, count: int, group: Group | None = None,
                    group_key: str | None = None, seed: int = 0,
                    progress: Progress | None = None) -> TableSynthResult:
    """``count`` synthetic rows per class (a regression table: ``count`` rows in all).

    Each copula is fitted on the source's train examples of its class (of
    ``group``'s members when given; never val or test, never rows an action
    added), so a class keeps its own correlations. A class with fewer than
    :data:`MIN_ROWS` train rows is skipped and named. Each copula's fidelity
    is measured on a check sample as large as its real rows (:class:`Stratum`).
    """
    count = check_table_request(dataset, count=count)
    key = group_key or (group.key if group is not None else None)
    train = train_parents(dataset, split, group, key)
    origin = dataset.origin.reindex(train).astype(str)
    train = train[(origin == "source").to_numpy()]
    columns = dict(dataset.features)
    frame = dataset.frame.loc[train]
    if dataset.task == "classification":
        labels = pd.Series(dataset.y(train), index=train)
        strata = [(c, labels.index[(labels == c).to_numpy()]) for c in dataset.classes
                  if (labels == c).any()]
    else:
        columns[dataset.target] = "numeric"
        strata = [(None, train)]
    skipped = {c: f"{len(ids)} train row(s); a copula needs at least {MIN_ROWS}"
               for c, ids in strata if len(ids) < MIN_ROWS}
    strata = [(c, ids) for c, ids in strata if len(ids) >= MIN_ROWS]
    if not strata:
        where = f"group '{key}'" if key else "the train part"
        raise DataError(f"{where} has no class with {MIN_ROWS} or more source train rows: "
                        "there is too little to fit a copula on",
                        hint="pick a larger group, or leave --group out")
    rng, check_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    advance = counter(progress, "fitting copulas", len(strata))
    parts, done = [], []
    for label, ids in strata:
        real = frame.loc[ids, list(columns)]
        copula = GaussianCopula(columns, seed=seed).fit(real)
        rows = copula.sample(count, rng=rng)
        check = copula.sample(max(count, len(ids)), rng=check_rng)
        if label is not None:
            rows[dataset.target] = label
        done.append(Stratum(label, len(ids), count, len(check),
                            fidelity(real, check, columns, seed=seed), copula.shrinkage_))
        parts.append(rows)
        advance()
    rows = pd.concat(parts, ignore_index=True)
    return TableSynthResult(_typed_like(rows, frame), done, skipped, group=key)


def _typed_like(rows: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """Numbers as floats (whole numbers stay whole); categories keep their values."""
    for c in rows.columns:
        if c in like and pd.api.types.is_numeric_dtype(like[c]) \
                and not pd.api.types.is_bool_dtype(like[c]):
            rows[c] = pd.to_numeric(rows[c], errors="coerce")
    return rows


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


__all__ = ["MIN_ROWS", "ColumnDistance", "Fidelity", "GaussianCopula", "Stratum",
           "TableSynthResult", "check_table_request", "fidelity", "synthesize_rows"]
