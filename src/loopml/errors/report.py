"""The ErrorReport: where a run errs, how much each group weighs, what to fix first.

Every group (a trait, a most-confused class pair, a discovered slice, an
embedding cluster) is measured the same way on the validation examples:
how many errors it holds, their share of all error, the error rate inside
against outside, and its *ceiling*: how far the run's error (in the scope
metric) would fall if every error inside the group were fixed. Ceilings are
computed by really fixing those predictions and re-scoring, so they are
right for any metric, not only accuracy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.atomic import write_text_atomic
from loopml.data.dataset import plain_value
from loopml.metrics import METRICS

ERRORS_FILE = "errors.json"


@dataclass
class GroupStat:
    """One group of validation examples and what its errors weigh."""

    kind: str  # trait | pair | slice | cluster
    key: str  # stable across iterations: "trait:blurry", "pair:3->8", "slice:<hash>"
    name: str
    description: str
    size: int
    n_errors: int
    share: float  # of all error (count, or residual mass for regression)
    rate_inside: float
    rate_outside: float
    ceiling: float  # drop in the metric's error if every error inside were fixed
    label_issues: int = 0  # val examples inside that cleanlab flags
    p_value: float | None = None
    source: str | None = None  # for traits: scope | python | tag | builtin
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lift(self) -> float:
        return self.rate_inside / self.rate_outside if self.rate_outside > 0 else float("inf")


@dataclass
class Scorer:
    """Per-example errors of one run's val predictions, and the metric to re-score with."""

    ids: pd.Index
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: list
    metric: str
    loss: np.ndarray  # 0/1 misclassified, or the residual loss the metric sums
    is_error: np.ndarray  # bool: a misclassification, or one of the largest residuals

    @classmethod
    def from_predictions(cls, val: pd.DataFrame, task: str, metric: str, classes: list,
                         *, top_residuals: float = 0.1) -> Scorer:
        y_true, y_pred = val["y_true"].to_numpy(), val["y_pred"].to_numpy()
        proba = None
        if task == "classification":
            cols = [f"proba:{c}" for c in classes]
            proba = val[cols].to_numpy() if all(c in val for c in cols) else None
            loss = (y_true != y_pred).astype(float)
            is_error = loss > 0
        else:
            residual = np.abs(y_true.astype(float) - y_pred.astype(float))
            loss = residual if metric == "mae" else residual ** 2
            cut = np.quantile(residual, 1 - top_residuals) if len(residual) else 0.0
            is_error = (residual >= cut) & (residual > 0)
        return cls(pd.Index(val["id"].astype(str)), y_true, y_pred, proba, classes, metric,
                   loss, is_error)

    def error(self, fixed: np.ndarray | None = None) -> float:
        """The metric's error on val, with the ``fixed`` examples predicted perfectly."""
        y_pred, proba = self.y_pred, self.proba
        if fixed is not None and fixed.any():
            y_pred = np.where(fixed, self.y_true, y_pred)
            if proba is not None:
                onehot = (np.asarray(self.classes)[None, :] == self.y_true[:, None])
                proba = np.where(fixed[:, None], onehot.astype(float), proba)
        m = METRICS[self.metric]
        if m.needs_proba and proba is None:
            return float("nan")
        value = m.compute(self.y_true, y_pred, proba=proba, classes=self.classes)
        return m.error(value)

    @cached_property
    def base_error(self) -> float:
        """The metric's error on val as predicted (every ceiling is measured from it)."""
        return self.error()

    def group(self, kind: str, key: str, name: str, description: str, mask: np.ndarray,
              *, label_issue: np.ndarray | None = None, **kw: Any) -> GroupStat:
        mask = np.asarray(mask, dtype=bool)
        inside, outside = self.loss[mask], self.loss[~mask]
        total = self.loss.sum()
        fixed = mask & (self.loss > 0)
        return GroupStat(
            kind=kind, key=key, name=name, description=description, size=int(mask.sum()),
            n_errors=int((mask & self.is_error).sum()),
            share=float(inside.sum() / total) if total > 0 else 0.0,
            rate_inside=float(inside.mean()) if len(inside) else 0.0,
            rate_outside=float(outside.mean()) if len(outside) else 0.0,
            ceiling=float(self.base_error - self.error(fixed)) if fixed.any() else 0.0,
            label_issues=int((mask & label_issue).sum()) if label_issue is not None else 0,
            **kw)


def trait_p_values(scorer: Scorer, masks: list[np.ndarray]) -> list[float | None]:
    """One-sided p (errors more frequent inside than outside), Bonferroni over the traits.

    Fisher's exact test for 0/1 errors, Welch's t-test for residual losses.
    """
    from scipy import stats

    binary = scorer.proba is not None or set(np.unique(scorer.loss)) <= {0.0, 1.0}
    total = int(scorer.loss.sum())
    raw: list[float | None] = []
    for mask in masks:
        inside, outside = scorer.loss[mask], scorer.loss[~mask]
        if len(inside) < 2 or len(outside) < 2:
            raw.append(None)
        elif binary:
            k, n = int(inside.sum()), len(inside)
            raw.append(float(stats.hypergeom.sf(k - 1, len(scorer.loss), total, n)))
        else:
            test = stats.ttest_ind(inside, outside, equal_var=False, alternative="greater")
            raw.append(float(test.pvalue) if np.isfinite(test.pvalue) else None)
    tested = sum(p is not None for p in raw)
    return [None if p is None else min(1.0, p * tested) for p in raw]


def confused_pairs(scorer: Scorer, *, top: int = 10, label_issue: np.ndarray | None = None
                   ) -> list[GroupStat]:
    """The most frequent (true -> predicted) mistakes, as groups of val examples."""
    wrong = scorer.y_true != scorer.y_pred
    if not wrong.any():
        return []
    pairs = pd.Series(list(zip(scorer.y_true[wrong], scorer.y_pred[wrong], strict=True)))
    out = []
    for (a, b), _ in pairs.value_counts().head(top).items():
        mask = (scorer.y_true == a) & (scorer.y_pred == b)
        stat = scorer.group("pair", f"pair:{a}->{b}", f"{a} → {b}",
                            f"true {a}, predicted {b}", mask, label_issue=label_issue)
        # the rates that matter for a pair: how often class a goes to b, against how
        # often the other classes (neither a nor b) do
        of_a = scorer.y_true == a
        others = ~of_a & (scorer.y_true != b)
        stat.rate_inside = float(mask.sum() / of_a.sum())
        stat.rate_outside = float(((scorer.y_pred == b) & others).sum() / others.sum()) \
            if others.any() else float("nan")  # two classes: there are no others
        stat.extra = {"true": plain_value(a), "predicted": plain_value(b)}
        out.append(stat)
    return out


@dataclass
class ErrorReport:
    """Everything ``loopml errors`` found for one run, JSON-ready."""

    run_id: str
    architecture: str
    task: str
    metric: str
    data_version: str
    split_version: str
    created: str
    n_val: int
    n_errors: int
    error: float  # the metric's error on val
    errors: list[dict[str, Any]]  # the error examples, worst first
    traits: list[GroupStat]
    pairs: list[GroupStat]
    slices: list[GroupStat]
    clusters: list[GroupStat]
    label_issues: list[dict[str, Any]]  # "check these labels", worst first
    label_check: dict[str, Any]  # how label issues were looked for (or why not)
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thumbnails: dict[str, str] = field(default_factory=dict)  # id -> data: URI
    modality: str = "tabular"

    @property
    def clean(self) -> bool:
        """No errors to analyse: every val example predicted right."""
        return self.n_errors == 0

    def ranked(self) -> list[GroupStat]:
        """Every group with errors, biggest ceiling first: what to work on first."""
        groups = [g for g in (*self.traits, *self.pairs, *self.slices, *self.clusters)
                  if g.n_errors > 0]
        return sorted(groups, key=lambda g: (-g.ceiling, -g.n_errors, g.key))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ranked"] = [g.key for g in self.ranked()]
        return _json_ready(out)

    def save(self, directory: Path) -> Path:
        return write_text_atomic(Path(directory) / ERRORS_FILE,
                                 json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, directory: Path) -> ErrorReport | None:
        path = Path(directory) / ERRORS_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data.pop("ranked", None)
        for kind in ("traits", "pairs", "slices", "clusters"):
            data[kind] = [GroupStat(**g) for g in data[kind]]
        return cls(**data)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
