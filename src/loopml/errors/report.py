"""The ErrorReport: where a run errs, how much each group weighs, what to fix first.

Every group (a trait, a most-confused class pair, a discovered slice, an
embedding cluster) is measured the same way on the validation examples:
how many errors it holds, their share of all error, the error rate inside
against outside, and its *ceiling*: how far the run's error (in the scope
metric) would fall if every error inside the group were fixed. Ceilings are
computed by really fixing those predictions and re-scoring, so they are
right for any metric, not only accuracy.

The report is typed evidence: each group carries its definition (a
:class:`loopml.groups.Group`, applicable to any rows), examples, label
issues and history are dataclasses, and JSON appears only in
:meth:`ErrorReport.to_dict` / :meth:`ErrorReport.load` (the shape of
``errors.json`` and ``loopml errors --json`` is kept; ``definition`` is new).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.atomic import write_text_atomic
from loopml.errors.significance import bonferroni, mask_p_values
from loopml.exceptions import DataError
from loopml.groups import (
    Group,
    GroupKind,
    PairGroup,
    Slice,
    SliceGroup,
    TraitGroup,
    TraitSource,
    group_from_dict,
)
from loopml.jsonable import json_ready
from loopml.metrics import METRICS

ERRORS_FILE = "errors.json"


@dataclass
class GroupStat:
    """One group of validation examples, its typed definition, and what its errors weigh.

    ``definition`` applies the group to any rows
    (:func:`loopml.groups.membership`); it is None only for traits and
    clusters read from reports written before groups travelled.
    """

    kind: GroupKind
    key: str  # stable across runs: "trait:blurry", "pair:3->8", "slice:<hash>"
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
    source: TraitSource | None = None  # for traits: scope | python | tag | builtin
    definition: Group | None = None
    score: float | None = None  # slices: the SliceLine score
    n_tried: int | None = None  # slices: how many slices the search scored (the correction)
    examples: list[str] = field(default_factory=list)  # clusters: typical erroneous ids

    @property
    def lift(self) -> float:
        return self.rate_inside / self.rate_outside if self.rate_outside > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """JSON as reports have always had it (``extra`` included), plus ``definition``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("definition", "score", "n_tried", "examples")}
        out["kind"] = str(self.kind)
        out["source"] = None if self.source is None else str(self.source)
        out["extra"] = self._extra()
        out["definition"] = None if self.definition is None else self.definition.to_dict()
        return out

    def _extra(self) -> dict[str, Any]:
        if isinstance(self.definition, SliceGroup):
            return {"slice": self.definition.slice.to_dict(), "score": self.score,
                    "n_tried": self.n_tried}
        if isinstance(self.definition, PairGroup):
            return {"true": self.definition.true, "predicted": self.definition.predicted}
        if self.kind is GroupKind.CLUSTER:
            return {"examples": list(self.examples)}
        return {}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupStat:
        """Read :meth:`to_dict`, or a group of a report written before ``definition``."""
        data = dict(data)
        extra = data.pop("extra", None) or {}
        stored = data.pop("definition", None)
        kind = GroupKind(data.pop("kind"))
        source = data.pop("source", None)
        definition = group_from_dict(stored) if stored else _legacy_definition(kind, extra)
        known = {f.name for f in fields(cls)}
        return cls(kind=kind, source=None if source is None else TraitSource(source),
                   definition=definition, score=extra.get("score"),
                   n_tried=extra.get("n_tried"), examples=list(extra.get("examples", [])),
                   **{k: v for k, v in data.items() if k in known})


def _legacy_definition(kind: GroupKind, extra: dict[str, Any]) -> Group | None:
    """What an old report's ``extra`` defines: slices and pairs; traits and clusters: None."""
    if kind is GroupKind.SLICE:
        return SliceGroup(Slice.from_dict(extra["slice"]))
    if kind is GroupKind.PAIR:
        return PairGroup(extra["true"], extra["predicted"])
    return None


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

    def group(self, definition: Group, mask: np.ndarray, *,
              label_issue: np.ndarray | None = None, p_value: float | None = None,
              **found: Any) -> GroupStat:
        """Measure the group ``definition`` whose val rows are ``mask``.

        ``found`` holds what the finder knows besides: a slice's ``score``
        and ``n_tried``, a cluster's ``examples``.
        """
        mask = np.asarray(mask, dtype=bool)
        inside, outside = self.loss[mask], self.loss[~mask]
        total = self.loss.sum()
        fixed = mask & (self.loss > 0)
        return GroupStat(
            kind=definition.kind, key=definition.key, name=definition.name,
            description=definition.description, size=int(mask.sum()),
            n_errors=int((mask & self.is_error).sum()),
            share=float(inside.sum() / total) if total > 0 else 0.0,
            rate_inside=float(inside.mean()) if len(inside) else 0.0,
            rate_outside=float(outside.mean()) if len(outside) else 0.0,
            ceiling=float(self.base_error - self.error(fixed)) if fixed.any() else 0.0,
            label_issues=int((mask & label_issue).sum()) if label_issue is not None else 0,
            p_value=p_value, definition=definition,
            source=definition.source if isinstance(definition, TraitGroup) else None, **found)


def trait_p_values(scorer: Scorer, masks: list[np.ndarray]) -> list[float | None]:
    """One-sided p (errors more frequent inside than outside), Bonferroni over the traits.

    A trait with fewer than two rows inside or outside is not tested (None)
    and does not count in the correction. The test is
    :mod:`loopml.errors.significance`'s: Fisher's exact test for 0/1 errors,
    Welch's t-test for residual losses.
    """
    if not masks:
        return []
    stacked = np.vstack([np.asarray(m, dtype=bool) for m in masks])
    sizes = stacked.sum(axis=1)
    tested = (sizes >= 2) & (len(scorer.loss) - sizes >= 2)
    corrected = bonferroni(mask_p_values(scorer.loss, stacked), int(tested.sum()))
    return [float(p) if ok else None for p, ok in zip(corrected, tested, strict=True)]


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
        stat = scorer.group(PairGroup(a, b), mask, label_issue=label_issue)
        # the rates that matter for a pair: how often class a goes to b, against how
        # often the other classes (neither a nor b) do
        of_a = scorer.y_true == a
        others = ~of_a & (scorer.y_true != b)
        stat.rate_inside = float(mask.sum() / of_a.sum())
        stat.rate_outside = float(((scorer.y_pred == b) & others).sum() / others.sum()) \
            if others.any() else float("nan")  # two classes: there are no others
        out.append(stat)
    return out


# ---------------------------------------------------------------- the other evidence


@dataclass
class ErrorExample:
    """One misclassified (or worst-residual) val example, as the report lists it."""

    id: str
    y_true: Any
    y_pred: Any
    confidence: float | None  # the predicted class's probability (classification)
    p_true: float | None  # the true class's probability
    residual: float | None  # prediction - truth (regression)
    traits: list[str]
    label_issue: bool
    suggested_label: Any
    features: dict[str, Any]


@dataclass
class LabelIssue:
    """A label the data argues against: cleanlab's suggestion and the label's quality."""

    id: str
    part: str  # train | val
    given: Any
    suggested: Any
    quality: float  # self-confidence: the probability of the given label


@dataclass
class ClassFlags:
    """How many examples of one class the judge flags.

    Label noise rarely hits one class much harder than the others; a class
    with a large share flagged is more often one the judge cannot separate,
    which ``warning`` then says.
    """

    label: Any
    n: int  # examples of the class checked
    n_flagged: int
    share: float  # n_flagged / n
    warning: str | None = None


@dataclass
class LabelCheck:
    """How label issues were looked for, by which judge and how good it is, or why not.

    The judge's out-of-fold scores sit next to the majority reference's (a
    model that learned only the class balance): a judge no better than that
    disagrees with labels at random, so its list is ``withheld`` and ``why``
    says so. ``why`` also says why nothing was checked (``checked`` False).
    """

    checked: bool
    why: str | None = None  # not checked, or the list withheld: the reason
    n_checked: int | None = None
    n_found: int | None = None  # flagged by the judge (listed unless withheld)
    folds: int | None = None
    model: str | None = None  # the judge's architecture
    method: str | None = None
    judge_run: str | None = None  # the run whose architecture and settings judge
    withheld: bool = False
    metric: str | None = None  # the scope metric the errors below are in
    judge_error: float | None = None  # out of fold, in ``metric``
    majority_error: float | None = None
    judge_balanced_accuracy: float | None = None  # out of fold
    chance_balanced_accuracy: float | None = None  # the majority reference's
    per_class: list[ClassFlags] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelCheck:
        data = dict(data)
        data["per_class"] = [ClassFlags(**c) for c in data.get("per_class", [])]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def warnings(self) -> list[str]:
        """The per-class warnings, worst share first."""
        flagged = sorted((c for c in self.per_class if c.warning), key=lambda c: -c.share)
        return [c.warning for c in flagged if c.warning]


@dataclass
class RunRate:
    """A group's errors on one run's val predictions."""

    run_id: str
    architecture: str
    created: str
    size: int
    n_errors: int
    rate: float | None  # mean loss inside; None (NaN) when the run has none of its rows


@dataclass
class GroupHistory:
    """A group re-scored on every run, oldest first: did the work on it pay off?"""

    key: str
    kind: GroupKind
    name: str
    runs: list[RunRate]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": str(self.kind), "name": self.name,
                "runs": [asdict(r) for r in self.runs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupHistory:
        return cls(data["key"], GroupKind(data["kind"]), data["name"],
                   [RunRate(**r) for r in data["runs"]])


# ---------------------------------------------------------------- the report


@dataclass
class ErrorReport:
    """Everything ``loopml errors`` found for one run, typed; JSON at save/load only."""

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
    errors: list[ErrorExample]  # the error examples, worst first
    traits: list[GroupStat]
    pairs: list[GroupStat]
    slices: list[GroupStat]
    clusters: list[GroupStat]
    label_issues: list[LabelIssue]  # "check these labels", worst first
    label_check: LabelCheck  # how label issues were looked for (or why not)
    history: list[GroupHistory] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thumbnails: dict[str, str] = field(default_factory=dict)  # id -> data: URI
    modality: str = "tabular"
    clusters_searched: bool = False  # embedding clusters were looked for (none: none found)

    @property
    def clean(self) -> bool:
        """No errors to analyse: every val example predicted right."""
        return self.n_errors == 0

    def groups(self) -> list[GroupStat]:
        """Every group measured: traits, pairs, slices, clusters."""
        return [*self.traits, *self.pairs, *self.slices, *self.clusters]

    def group(self, key: str) -> GroupStat:
        """The group ``key`` (KeyError if the report has none)."""
        for g in self.groups():
            if g.key == key:
                return g
        raise KeyError(key)

    def ranked(self) -> list[GroupStat]:
        """Every group with errors, biggest ceiling first: what to work on first."""
        groups = [g for g in self.groups() if g.n_errors > 0]
        return sorted(groups, key=lambda g: (-g.ceiling, -g.n_errors, g.key))

    def groups_to_keep(self) -> list[Group]:
        """The definitions a project stores for later runs and other stages.

        Slices, clusters and built-in traits (their fitted cut-offs): what
        cannot be rebuilt from the user's own files. Pairs are their key.
        """
        keep = [g.definition for g in (*self.slices, *self.clusters)]
        keep += [g.definition for g in self.traits if g.source is TraitSource.BUILTIN]
        return [d for d in keep if d is not None]

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for kind in ("traits", "pairs", "slices", "clusters"):
            out[kind] = [g.to_dict() for g in out[kind]]
        out["errors"] = [asdict(e) for e in self.errors]
        out["label_issues"] = [asdict(i) for i in self.label_issues]
        out["label_check"] = self.label_check.to_dict()
        out["history"] = [h.to_dict() for h in self.history]
        out["ranked"] = [g.key for g in self.ranked()]
        return json_ready(out)

    def save(self, directory: Path) -> Path:
        return write_text_atomic(Path(directory) / ERRORS_FILE,
                                 json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorReport:
        """Read :meth:`to_dict` (or ``loopml errors --json``), old reports included."""
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for kind in ("traits", "pairs", "slices", "clusters"):
            data[kind] = [GroupStat.from_dict(g) for g in data[kind]]
        data["errors"] = [ErrorExample(**e) for e in data["errors"]]
        data["label_issues"] = [LabelIssue(**i) for i in data["label_issues"]]
        data["label_check"] = LabelCheck.from_dict(data["label_check"])
        data["history"] = [GroupHistory.from_dict(h) for h in data.get("history", [])]
        return cls(**data)

    @classmethod
    def load(cls, directory: Path) -> ErrorReport | None:
        path = Path(directory) / ERRORS_FILE
        if not path.exists():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError,
                DataError) as exc:
            raise DataError(f"{path} is not a readable error report: {type(exc).__name__}: "
                            f"{exc}", hint="run 'loopml errors' again for that run") from None
