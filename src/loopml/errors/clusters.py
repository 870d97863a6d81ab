"""Clusters of errors in the embedding space of a pretrained encoder.

Traits and slices find errors that a column can name. Many failures have no
column: blurry sevens that look like ones, complaints written in a dialect
the training set lacked. A pretrained encoder puts such examples close
together, so we cluster the validation examples in its embedding space and
keep the clusters where the model errs much more than elsewhere, with a test
that says it is not chance.

- Clustering: KMeans (fixed ``n_init``, seeded) on L2-normalised embeddings,
  i.e. by cosine similarity, which is how sentence and image encoders are
  meant to be compared. Default ``k = round(sqrt(n / 2))`` clamped to
  [2, 30] and to ``n // min_size`` so an average cluster can be reported.
- Test, per cluster of at least ``min_size`` rows, inside > outside
  (one-sided): Fisher's exact test on the 2x2 table when errors are 0/1,
  Welch's t-test when they are continuous (regression losses), both from
  :mod:`loopml.errors.significance`. P-values are Bonferroni-corrected for
  the number of clusters tested.
- Order: by *excess errors*, ``errors - size * error_rate_outside``, the
  errors that would go away if the cluster erred like the rest of the data:
  the most a fix aimed at that cluster can gain. (Lift favours tiny clusters.)
- Description: the cluster's most distinctive words against the rest
  (log-odds ratio with an informative Dirichlet prior, Monroe, Colaresi &
  Quinn 2008, over document frequencies of a CountVectorizer vocabulary with
  English stop words removed), then the values of ``describe`` columns whose
  share inside most exceeds their share outside: "label = 8 (61% vs 10%)",
  "low_contrast (40% vs 9%)", "brightness high (median 0.81 vs 0.52)".

Example
-------
>>> vectors = embed_text(texts)  # doctest: +SKIP
>>> for c in find_clusters(vectors, (pred != y).astype(float), texts=texts):  # doctest: +SKIP
...     print(c.size, f"{c.error_rate:.0%} vs {c.error_rate_outside:.0%}", c.description)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer

from loopml.errors.significance import bonferroni, is_binary, mask_p_values

#: KMeans restarts (fixed, so a seed gives one answer)
N_INIT = 4
#: bounds of the default number of clusters
MIN_CLUSTERS, MAX_CLUSTERS = 2, 30
#: erroneous members kept per cluster as thumbnails / quotes
N_EXAMPLES = 8
#: distinctive words named per cluster, and their minimum z-score / document count
N_WORDS = 5
MIN_WORD_Z = 1.96
MIN_WORD_DOCS = 2
#: strength of the log-odds prior, as a share of each word's corpus-wide count
WORD_PRIOR = 0.1
#: describe items kept per cluster, and the smallest share gap worth naming
N_FACTS = 4
MIN_SHARE_GAP = 0.1
#: columns with at most this many distinct values are read as categories
MAX_LEVELS = 30


@dataclass
class Cluster:
    """A group of nearby examples where the model errs more than elsewhere.

    ``errors`` is the sum of the members' errors (a count for 0/1 errors) and
    ``error_rate`` their mean; ``p_value`` is one-sided (inside > outside) and
    Bonferroni-corrected. ``members`` and ``examples`` are row positions in
    the arrays given to :func:`find_clusters`; ``examples`` are erroneous
    members closest to the cluster's centre, the most typical failures.
    """

    label: int
    size: int
    errors: float
    error_rate: float
    error_rate_outside: float
    p_value: float
    members: np.ndarray
    examples: list[int] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    #: all k KMeans centres (unit-vector space): a row is in cluster ``label`` when
    #: centre ``label`` is its nearest, which is how the members were assigned
    centres: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def excess_errors(self) -> float:
        """Errors beyond what the cluster would have at the outside rate (the sort key)."""
        return self.errors - self.size * self.error_rate_outside

    @property
    def lift(self) -> float:
        """``error_rate / error_rate_outside`` (inf when nothing errs outside)."""
        if self.error_rate_outside == 0:
            return math.inf if self.error_rate > 0 else 1.0
        return self.error_rate / self.error_rate_outside

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain Python numbers and lists, members included."""
        lift = self.lift
        return {
            "label": int(self.label), "size": int(self.size), "errors": float(self.errors),
            "error_rate": float(self.error_rate),
            "error_rate_outside": float(self.error_rate_outside),
            "p_value": float(self.p_value), "excess_errors": float(self.excess_errors),
            "lift": None if math.isinf(lift) else float(lift),
            "members": [int(i) for i in self.members],
            "examples": [int(i) for i in self.examples],
            "description": list(self.description),
        }


def find_clusters(embeddings: np.ndarray, errors: np.ndarray, *,
                  texts: Sequence[str] | None = None, describe: pd.DataFrame | None = None,
                  n_clusters: int | None = None, min_size: int = 5,
                  significance: float = 0.05, random_state: int = 0) -> list[Cluster]:
    """Clusters of the embedding space where errors concentrate, most excess errors first.

    Parameters
    ----------
    embeddings : ndarray, shape (n, d)
        One vector per example (e.g. :func:`loopml.models.backbones.embed_text`);
        rows are L2-normalised here, so only directions matter.
    errors : ndarray, shape (n,)
        0/1 per example for classification, or a non-negative loss for
        regression (then tested with Welch's t-test instead of Fisher's).
    texts : sequence of str, optional
        The examples' texts: each cluster is described by its distinctive words.
    describe : DataFrame, optional
        n rows, aligned by position: categorical, boolean or numeric columns
        (true label, predicted label, traits) whose over-represented values
        describe each cluster.
    n_clusters : int, optional
        KMeans' k; None: ``round(sqrt(n / 2))`` in [2, 30], at most ``n // min_size``.
        Never more than the number of distinct rows.
    min_size : int, default 5
        Smaller clusters are neither tested nor reported.
    significance : float, default 0.05
        Largest corrected p-value reported.
    random_state : int, default 0
        Seed of KMeans.

    Returns
    -------
    list of Cluster
        Clusters erring more than the rest with corrected p < ``significance``,
        sorted by :attr:`Cluster.excess_errors` (descending). Empty when
        nothing errs, there are too few rows, or no cluster stands out.
    """
    vectors, errs = _check_inputs(embeddings, errors, texts, describe, n_clusters, min_size,
                                  significance)
    n = len(errs)
    if n < 2 or errs.sum() <= 0:
        return []
    k = _n_clusters(vectors, n_clusters, min_size)
    if k < 2:
        return []
    model = KMeans(n_clusters=k, n_init=N_INIT, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(vectors)
    binary = is_binary(errs)
    tested = [c for c in range(k) if min_size <= np.sum(labels == c) < n]
    raw = mask_p_values(errs, labels[None, :] == np.array(tested)[:, None]) if tested else []
    found = []
    for c, p_raw in zip(tested, raw, strict=True):
        inside = labels == c
        rate, rate_out = float(errs[inside].mean()), float(errs[~inside].mean())
        if rate <= rate_out:
            continue
        p = bonferroni(float(p_raw), len(tested))
        if p < significance:
            members = np.flatnonzero(inside)
            found.append(Cluster(
                label=int(c), size=len(members), errors=float(errs[inside].sum()),
                error_rate=rate, error_rate_outside=rate_out, p_value=p, members=members,
                examples=_examples(vectors, errs, members, model.cluster_centers_[c], rate_out,
                                   binary), centres=model.cluster_centers_))
    found.sort(key=lambda cl: (-cl.excess_errors, cl.p_value, cl.label))
    if found:
        _describe(found, labels, texts, describe)
    return found


# ------------------------------------------------------------------ steps


def _n_clusters(vectors: np.ndarray, wanted: int | None, min_size: int) -> int:
    """k: wanted (or the default), never above the number of distinct rows."""
    n = len(vectors)
    if wanted is None:
        wanted = min(MAX_CLUSTERS, max(MIN_CLUSTERS, round(math.sqrt(n / 2))))
        wanted = max(MIN_CLUSTERS, min(wanted, n // max(min_size, 1)))
    return int(min(wanted, len(np.unique(vectors, axis=0))))


def _examples(vectors: np.ndarray, errs: np.ndarray, members: np.ndarray, centre: np.ndarray,
              rate_out: float, binary: bool) -> list[int]:
    """Erroneous members (above the outside mean for losses) nearest the centre."""
    bad = members[errs[members] > 0] if binary else members[errs[members] > rate_out]
    closeness = vectors[bad] @ centre
    order = np.argsort(-closeness, kind="stable")[:N_EXAMPLES]
    return [int(i) for i in bad[order]]


# ------------------------------------------------------------------ descriptions


def _describe(found: list[Cluster], labels: np.ndarray, texts: Sequence[str] | None,
              describe: pd.DataFrame | None) -> None:
    words = _distinctive_words(list(texts), labels, [c.label for c in found]) \
        if texts is not None else {}
    columns = _column_codes(describe) if describe is not None else []
    for cluster in found:
        inside = labels == cluster.label
        items = []
        if words.get(cluster.label):
            items.append("words: " + ", ".join(words[cluster.label]))
        items += _facts(columns, inside)
        cluster.description = items


def _distinctive_words(texts: list[str], labels: np.ndarray,
                       wanted: list[int]) -> dict[int, list[str]]:
    """Per cluster, the words whose log-odds inside vs outside have the highest z-score.

    Counts are document frequencies (a word counts once per text), so one
    long text cannot carry a cluster's description. The prior adds
    ``WORD_PRIOR`` times each word's corpus-wide count to both sides, which
    shrinks the odds of rare words towards zero (Monroe et al. 2008, eq. 22).
    """
    vectorizer = CountVectorizer(stop_words="english", binary=True, lowercase=True,
                                 token_pattern=r"(?u)\b[^\W\d_][^\W\d_]+\b")
    try:
        counts = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # empty vocabulary: nothing but stop words, digits or blanks
        return {}
    vocabulary = vectorizer.get_feature_names_out()
    total = np.asarray(counts.sum(axis=0)).ravel().astype(float)
    prior = WORD_PRIOR * total + 0.01
    prior_sum = prior.sum()
    out = {}
    for label in wanted:
        inside = labels == label
        y_in = np.asarray(counts[inside].sum(axis=0)).ravel().astype(float)
        y_out = total - y_in
        n_in, n_out = y_in.sum(), y_out.sum()
        if n_in == 0 or n_out == 0:
            out[label] = []
            continue
        log_odds_in = np.log((y_in + prior) / (n_in + prior_sum - y_in - prior))
        log_odds_out = np.log((y_out + prior) / (n_out + prior_sum - y_out - prior))
        z = (log_odds_in - log_odds_out) / np.sqrt(1 / (y_in + prior) + 1 / (y_out + prior))
        keep = np.flatnonzero((z > MIN_WORD_Z) & (y_in >= MIN_WORD_DOCS))
        best = keep[np.lexsort((vocabulary[keep], -z[keep]))][:N_WORDS]
        out[label] = [str(vocabulary[i]) for i in best]
    return out


@dataclass
class _Column:
    """One describe column, encoded once: level codes or numeric values."""

    name: str
    kind: str  # "bool", "category" or "numeric"
    codes: np.ndarray  # int codes (-1: missing) or float values (NaN: missing)
    levels: list[Any]


def _column_codes(describe: pd.DataFrame) -> list[_Column]:
    out = []
    for name in describe.columns:
        series = describe[name].reset_index(drop=True)
        if pd.api.types.is_bool_dtype(series):
            out.append(_Column(str(name), "bool", series.to_numpy(dtype=bool).astype(int), []))
            continue
        numeric = pd.api.types.is_numeric_dtype(series)
        if numeric and series.nunique(dropna=True) > MAX_LEVELS:
            out.append(_Column(str(name), "numeric", series.to_numpy(dtype=float), []))
            continue
        codes, levels = pd.factorize(series, sort=True)
        out.append(_Column(str(name), "category", codes, list(levels)))
    return out


def _facts(columns: list[_Column], inside: np.ndarray) -> list[str]:
    """The describe values most over-represented inside, as readable items."""
    scored: list[tuple[float, str]] = []
    for col in columns:
        if col.kind == "bool":
            share_in, share_out = _shares(col.codes == 1, inside)
            scored.append((share_in - share_out,
                           f"{col.name} ({_pct(share_in)} vs {_pct(share_out)})"))
        elif col.kind == "category":
            for code, level in enumerate(col.levels):
                share_in, share_out = _shares(col.codes == code, inside)
                scored.append((share_in - share_out, f"{col.name} = {_level(level)} "
                                                     f"({_pct(share_in)} vs {_pct(share_out)})"))
        else:
            scored += _numeric_fact(col, inside)
    scored = [s for s in scored if s[0] >= MIN_SHARE_GAP]
    scored.sort(key=lambda s: -s[0])
    return [text for _, text in scored[:N_FACTS]]


def _numeric_fact(col: _Column, inside: np.ndarray) -> list[tuple[float, str]]:
    """'x high/low (median a vs b)', scored by the gap in shares above the overall median."""
    values = col.codes
    known = ~np.isnan(values)
    if known[inside].sum() == 0 or known[~inside].sum() == 0:
        return []
    median = np.median(values[known])
    above_in = float(np.mean(values[inside & known] > median))
    above_out = float(np.mean(values[~inside & known] > median))
    med_in = float(np.median(values[inside & known]))
    med_out = float(np.median(values[~inside & known]))
    word = "high" if above_in >= above_out else "low"
    return [(abs(above_in - above_out),
             f"{col.name} {word} (median {med_in:.3g} vs {med_out:.3g})")]


def _shares(hit: np.ndarray, inside: np.ndarray) -> tuple[float, float]:
    return float(hit[inside].mean()), float(hit[~inside].mean())


def _pct(share: float) -> str:
    return f"{share:.0%}"


def _level(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


# ------------------------------------------------------------------ checks


def _check_inputs(embeddings: np.ndarray, errors: np.ndarray, texts: Sequence[str] | None,
                  describe: pd.DataFrame | None, n_clusters: int | None, min_size: int,
                  significance: float) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies: unit-length float rows and float errors."""
    vectors = np.asarray(embeddings, dtype=float)
    if vectors.ndim != 2:
        raise ValueError(f"embeddings must have shape (n, d), but shape {vectors.shape} arrived")
    errs = np.asarray(errors, dtype=float)
    if errs.ndim != 1 or len(errs) != len(vectors):
        raise ValueError(f"embeddings and errors must be the same length, but embeddings has "
                         f"{len(vectors)} rows and errors has shape {errs.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("embeddings must be finite, but they hold NaN or inf")
    if not np.isfinite(errs).all() or (errs < 0).any():
        raise ValueError("errors must be finite and non-negative (0/1, or a loss), but "
                         f"they span [{np.nanmin(errs) if len(errs) else 0:.3g}, "
                         f"{np.nanmax(errs) if len(errs) else 0:.3g}] or hold NaN")
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, one per row, not one string")
    for what, other in (("texts", texts), ("describe", describe)):
        if other is not None and len(other) != len(errs):
            raise ValueError(f"{what} must have one entry per row, but {what} has {len(other)} "
                             f"and embeddings has {len(errs)}")
    if n_clusters is not None and (isinstance(n_clusters, bool) or n_clusters < 2):
        raise ValueError(f"n_clusters must be at least 2 (or None), but {n_clusters!r} arrived")
    if isinstance(min_size, bool) or min_size < 1:
        raise ValueError(f"min_size must be a positive integer, but {min_size!r} arrived")
    if not 0 < significance <= 1:
        raise ValueError(f"significance must be in (0, 1], but {significance!r} arrived")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0), errs
