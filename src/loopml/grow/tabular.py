"""Augmentation of tables and text: SMOTE-style interpolation, numeric jitter, text noise.

The image path (:mod:`loopml.grow.augment`) distorts pixels; rows of a table
or a text column get their own transforms, with the same three steps and the
same result (:class:`~loopml.grow.augment.AugmentResult`):

1. :func:`plan_row_policy`: ``smote`` (interpolation between a train example
   and one of its ``k`` nearest train neighbours of the same class, of the
   group's members when a group is given) and ``jitter`` (Gaussian noise on
   numeric columns, scaled by each column's train std) for tables; ``typo``,
   ``word_drop``, ``word_swap`` and ``case`` (:mod:`loopml.grow.textaug`) for
   text. ``auto`` on a classification table is ``smote`` for the classes the
   reference run fails on in val; on a regression table ``jitter`` (SMOTE
   needs classes); on text a mild mix of typos, dropped and swapped words.
2. :func:`check_row_preservation`: the same rule as for images
   (:class:`~loopml.grow.augment.ClassCheck`): a transform whose copies of a
   class's train examples the reference model misclassifies far more often
   than the clean ones is refused for that class.
3. :func:`augment_rows`: ``factor`` new rows per parent, each with the
   policy's transforms not refused for its class; every row names its parent.

Missing values stay missing: a numeric or categorical cell missing in the
parent is missing in the child, and a neighbour's missing value is never
copied over the parent's. Interpolated and jittered numbers stay inside the
train range; columns holding whole numbers stay whole.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from loopml.data.images import modality
from loopml.exceptions import LoopmlError
from loopml.groups import Rows, membership
from loopml.grow.augment import (
    CHECK_COPIES,
    CHECK_PER_CLASS,
    AugmentResult,
    ClassCheck,
    Policy,
    PolicyStep,
    Preservation,
    checked_factor,
    class_value,
    drop_refused,
    policy_magnitude,
    train_parents,
)
from loopml.grow.textaug import AUTO_TEXT, TEXT_TRANSFORMS, apply_text_transform
from loopml.grow.transforms import TransformSpec
from loopml.progress import Progress, no_progress

if TYPE_CHECKING:
    from loopml.data.dataset import Dataset
    from loopml.data.split import Split
    from loopml.groups import Group, Groups
    from loopml.iteration import Iteration

NEIGHBOURS = 5  # k of SMOTE: a parent's partner is one of its k nearest same-class neighbours

TABLE_TRANSFORMS: dict[str, TransformSpec] = {s.name: s for s in (
    TransformSpec("smote", 1.0, "largest step toward the neighbour", "unseen examples between "
                  "known ones of a class", 0.0, 1.0),
    TransformSpec("jitter", 0.1, "noise std as a share of the column's train std",
                  "measurement noise", 0.0, 2.0),
)}


def row_transforms(dataset: Dataset) -> dict[str, TransformSpec]:
    """The transforms for this dataset's rows: text ones for text, table ones otherwise."""
    if modality(dataset) == "text":
        return TEXT_TRANSFORMS
    if dataset.task != "classification":
        return {"jitter": TABLE_TRANSFORMS["jitter"]}
    return TABLE_TRANSFORMS


def parse_row_policy(dataset: Dataset, policy: str) -> list[tuple[str, float | None]]:
    """``auto`` -> []; ``smote,jitter=0.2`` -> [("smote", None), ("jitter", 0.2)], checked."""
    text = str(policy).strip()
    if text == "auto":
        return []
    specs = row_transforms(dataset)
    kind = modality(dataset)
    what = "text" if kind == "text" else f"a {dataset.task} table"
    out: list[tuple[str, float | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = (s.strip() for s in part.partition("="))
        if name not in specs:
            why = (" (SMOTE interpolates between examples of one class; a regression "
                   "table has no classes)" if name == "smote" and kind == "tabular" else "")
            raise LoopmlError(f"transform '{name}' in --policy does not apply to {what}{why}",
                              hint=f"the transforms for {what} are: auto, {', '.join(specs)}")
        out.append((name, policy_magnitude(name, value, specs[name])))
    if not out:
        raise LoopmlError(f"--policy '{policy}' names no transform",
                          hint=f"give 'auto' or names from: {', '.join(specs)}")
    return out


# ---------------------------------------------------------------- the policy


def _step(specs: dict[str, TransformSpec], name: str, magnitude: float | None,
          reasons: list[str]) -> PolicyStep:
    spec = specs[name]
    return PolicyStep(name, round(spec.default if magnitude is None else magnitude, 4),
                      reasons, unit=spec.unit)


def _failing_classes(dataset: Dataset, iteration: Iteration, group: Group | None
                     ) -> dict[str, int]:
    """Val errors of the reference run per true class (of ``group``'s members when given)."""
    predictions = iteration.predictions()
    val = predictions[predictions["part"] == "val"]
    val = val[val["id"].astype(str).isin(dataset.ids)]
    if group is not None and len(val):
        ids = pd.Index(val["id"].astype(str))
        val = val[membership(group, Rows.of(dataset, ids))]
    wrong = val[val["y_true"].astype(str) != val["y_pred"].astype(str)]
    counts = wrong["y_true"].astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def plan_row_policy(dataset: Dataset, iteration: Iteration, groups: Groups | None = None, *,
                    policy: str = "auto", group: str | None = None) -> Policy:
    """The transforms and magnitudes for a table or text, each with why it was picked.

    For ``auto`` on a classification table, ``measured["failing_val"]`` holds
    the val errors per class the policy targets (:func:`augment_rows` makes
    children of those classes only).
    """
    specs = row_transforms(dataset)
    named = parse_row_policy(dataset, policy)
    if named:
        steps = [_step(specs, n, m, ["named in --policy"]) for n, m in named]
        return Policy(",".join(n for n, _ in named), steps)
    if modality(dataset) == "text":
        why = "auto for text: a mild mix of typos, dropped and swapped words"
        return Policy("auto", [_step(specs, n, m, [why]) for n, m in AUTO_TEXT])
    if dataset.task != "classification":
        why = "auto for regression: numeric jitter (SMOTE interpolates within classes)"
        return Policy("auto", [_step(specs, "jitter", None, [why])])
    definition = groups.find(group) if groups is not None and group else None
    failing = _failing_classes(dataset, iteration, definition)
    where = f" of group '{group}'" if group else ""
    if failing:
        shown = ", ".join(f"{c}: {n}" for c, n in failing.items())
        why = (f"auto for a table: SMOTE for the classes the model fails on in val{where} "
               f"(val errors {shown})")
    else:
        why = f"auto for a table: SMOTE; no failing val examples{where}, so every class"
    return Policy("auto", [_step(specs, "smote", None, [why])],
                  {"failing_val": {c: float(n) for c, n in failing.items()}})


# ---------------------------------------------------------------- the transforms


@dataclass
class RowContext:
    """What the transforms need to know about train: ranges, spreads, neighbours."""

    dataset: Dataset
    pool: pd.Index  # the train examples SMOTE picks neighbours from
    numeric: list[str]
    categorical: list[str]
    text: list[str]
    low: pd.Series
    high: pd.Series
    std: pd.Series
    whole: set[str]  # numeric columns holding whole numbers only

    @classmethod
    def of(cls, dataset: Dataset, train: pd.Index, pool: pd.Index) -> RowContext:
        kinds = dataset.features
        numeric = [c for c, k in kinds.items() if k == "numeric"]
        frame = dataset.frame.loc[train, numeric].apply(pd.to_numeric, errors="coerce")
        whole = {c for c in numeric if np.allclose(frame[c].dropna() % 1, 0)}
        return cls(dataset, pool, numeric, [c for c, k in kinds.items() if k == "categorical"],
                   [c for c, k in kinds.items() if k == "text"], frame.min(), frame.max(),
                   frame.std().fillna(0.0), whole)

    def finish(self, values: pd.DataFrame) -> pd.DataFrame:
        """Numbers clipped to the train range; whole-number columns rounded."""
        for c in self.numeric:
            column = values[c].astype(float).clip(self.low[c], self.high[c])
            values[c] = column.round() if c in self.whole else column
        return values

    def neighbours(self, parents: pd.Index, rng: np.random.Generator) -> pd.Index:
        """For each parent, one of its NEIGHBOURS nearest pool examples of the same class."""
        from sklearn.neighbors import NearestNeighbors

        pool = self.pool
        encoded = self._encode(pool)
        labels = pd.Series(self.dataset.y(pool), index=pool).astype(str)
        parent_labels = pd.Series(self.dataset.y(parents), index=parents).astype(str)
        partner = np.empty(len(parents), dtype=object)
        for label, members in labels.groupby(labels):
            at = np.flatnonzero(parent_labels.to_numpy() == label)
            if not len(at):
                continue
            k = min(NEIGHBOURS + 1, len(members))
            index = NearestNeighbors(n_neighbors=k).fit(encoded.loc[members.index].to_numpy())
            _, near = index.kneighbors(self._encode(parents[at]).to_numpy())
            choice = near[:, 1:] if k > 1 else near  # the nearest is the parent itself
            picked = choice[np.arange(len(at)), rng.integers(choice.shape[1], size=len(at))]
            partner[at] = members.index[picked]
        missing = pd.isna(partner)
        partner[missing] = parents[missing]  # a class with no pool member: itself
        return pd.Index(partner.astype(str))

    def _encode(self, ids: pd.Index) -> pd.DataFrame:
        frame = self.dataset.frame.loc[ids]
        numbers = frame[self.numeric].apply(pd.to_numeric, errors="coerce")
        scale = self.std.replace(0.0, 1.0)
        numbers = ((numbers - (self.low + self.high) / 2) / scale).fillna(0.0)
        parts = [numbers]
        for c in self.categorical:
            levels = sorted(map(str, self.dataset.frame.loc[self.pool, c].dropna().unique()))
            text = frame[c].astype(object).where(frame[c].notna(), None)
            parts.append(pd.DataFrame({f"{c}={v}": (text.astype(str) == v).astype(float)
                                       for v in levels}, index=frame.index))
        return pd.concat(parts, axis=1).reset_index(drop=True).set_axis(ids)


def _smote(ctx: RowContext, rows: pd.DataFrame, parents: pd.Index, magnitude: float,
           rng: np.random.Generator) -> pd.DataFrame:
    partners = ctx.neighbours(parents, rng)
    other = ctx.dataset.frame.loc[partners].reset_index(drop=True)
    step = rng.uniform(0.0, magnitude, size=len(rows))
    for c in ctx.numeric:
        mine = rows[c].astype(float).to_numpy()
        theirs = other[c].astype(float).to_numpy()
        moved = mine + step * (theirs - mine)
        rows[c] = np.where(np.isnan(theirs), mine, moved)  # NaN in the parent stays NaN
    for c in ctx.categorical:
        take = (rng.random(len(rows)) < 0.5) & rows[c].notna().to_numpy() & other[c].notna()
        rows[c] = rows[c].astype(object).where(~take.to_numpy(), other[c].astype(object))
    return ctx.finish(rows)


def _jitter(ctx: RowContext, rows: pd.DataFrame, parents: pd.Index, magnitude: float,
            rng: np.random.Generator) -> pd.DataFrame:
    for c in ctx.numeric:
        values = rows[c].astype(float).to_numpy()
        rows[c] = values + rng.normal(0.0, magnitude * ctx.std[c], size=len(values))
    return ctx.finish(rows)


def apply_row_transform(ctx: RowContext, step: PolicyStep, rows: pd.DataFrame,
                        parents: pd.Index, rng: np.random.Generator) -> pd.DataFrame:
    """``rows`` (feature columns, positions matching ``parents``) with one step applied."""
    rows = rows.copy()
    if step.transform == "smote":
        return _smote(ctx, rows, parents, step.magnitude, rng)
    if step.transform == "jitter":
        return _jitter(ctx, rows, parents, step.magnitude, rng)
    for c in ctx.text:
        rows[c] = apply_text_transform(step.transform, rows[c], step.magnitude, rng=rng)
    return rows


def _restore_dtypes(rows: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    for c in rows.columns:
        if c in like and rows[c].dtype != like[c].dtype and not rows[c].isna().any():
            with contextlib.suppress(TypeError, ValueError):  # keep the values as they are
                rows[c] = rows[c].astype(like[c].dtype)
    return rows


# ---------------------------------------------------------------- label preservation


def check_row_preservation(dataset: Dataset, split: Split, iteration: Iteration,
                           policy: Policy, ctx: RowContext, *, seed: int = 0,
                           per_class: int = CHECK_PER_CLASS,
                           progress: Progress | None = None) -> Preservation:
    """Each transform on a seeded share of each class's train examples, vs clean copies.

    Regression has no classes to flip: the check is empty there.
    """
    if dataset.task != "classification":
        return Preservation(iteration.run_id, [])
    report = progress or no_progress
    rng = np.random.default_rng(seed)
    train = ctx.pool
    labels = pd.Series(dataset.y(train), index=train).astype(str)
    chosen = [g.index[rng.permutation(len(g))[:per_class]] for _, g in labels.groupby(labels)]
    ids = pd.Index(np.concatenate([c.to_numpy() for c in chosen]))
    model = iteration.model()
    truth = labels.loc[ids].to_numpy()
    clean = dataset.X(ids).reset_index(drop=True)
    clean_wrong = np.asarray(model.predict(clean)).astype(str) != truth
    parents = ids.append([ids] * (CHECK_COPIES - 1))
    copies = dataset.X(parents).reset_index(drop=True)
    truth_copies = np.tile(truth, CHECK_COPIES)
    checks = []
    for i, step in enumerate(policy.steps):
        report(f"checking {step.transform} on {len(ids)} train examples", i, len(policy.steps))
        moved = apply_row_transform(ctx, step, copies, parents, np.random.default_rng(seed + i))
        moved = _restore_dtypes(moved, dataset.frame)
        wrong = np.asarray(model.predict(moved)).astype(str) != truth_copies
        for label in sorted(set(truth)):
            mine = truth_copies == label
            checks.append(ClassCheck(class_value(dataset, label), step.transform, int(mine.sum()),
                                     float(clean_wrong[truth == label].mean()),
                                     float(wrong[mine].mean())))
    report("checked", len(policy.steps), len(policy.steps))
    return Preservation(iteration.run_id, checks)


# ---------------------------------------------------------------- augmenting


def augment_rows(dataset: Dataset, split: Split, iteration: Iteration, policy: Policy, *,
                 group: Group | None = None, group_key: str | None = None, factor: int = 1,
                 seed: int = 0, judge: Iteration | None = None,
                 progress: Progress | None = None) -> AugmentResult:
    """``factor`` new train rows per parent, each with the policy's allowed transforms.

    Parents are the source's train examples (of ``group`` when given; of the
    classes in ``policy.measured["failing_val"]`` when ``auto`` found any).
    SMOTE's neighbours come from the same train examples as the parents.
    Label preservation is judged by ``judge``'s model (default: ``iteration``).
    """
    factor = checked_factor(factor)
    report = progress or no_progress
    all_train = train_parents(dataset, split, None, None)
    train = train_parents(dataset, split, group, group_key)
    ctx = RowContext.of(dataset, all_train, train)
    preservation = check_row_preservation(dataset, split, judge or iteration, policy, ctx,
                                          seed=seed, progress=progress)
    if dataset.task == "classification":
        labels = pd.Series(dataset.y(train), index=train).astype(str)
        failing = policy.measured.get("failing_val") or {}
        if failing:
            train = train[labels.isin(list(failing)).to_numpy()]
        train, refused, skipped = drop_refused(labels.loc[train], policy, preservation)
        classes = labels.loc[train.repeat(factor)].to_numpy()
    else:
        refused, skipped = {s.transform: set() for s in policy.steps}, []
        classes = np.full(len(train) * factor, "", dtype=object)
    parents = train.repeat(factor)
    report(f"augmenting {len(parents)} examples", 0, len(policy.steps))
    rows = dataset.frame.loc[parents].reset_index(drop=True)
    features = list(dataset.features)
    rows[features] = rows[features].astype(object)  # steps may turn whole numbers to floats
    applied = dict.fromkeys(policy.transforms, 0)
    rng = np.random.default_rng(seed)
    for i, step in enumerate(policy.steps):
        allowed = ~np.isin(classes, list(refused[step.transform]))
        if allowed.any():
            moved = apply_row_transform(ctx, step, rows.loc[allowed, features].reset_index(
                drop=True), parents[allowed], rng)
            rows.loc[allowed, features] = moved.set_axis(rows.index[allowed]).to_numpy()
            applied[step.transform] += int(allowed.sum())
        report(f"augmenting {len(parents)} examples", i + 1, len(policy.steps))
    rows = _restore_dtypes(rows.infer_objects(), dataset.frame)
    return AugmentResult(policy, preservation, rows, [str(p) for p in parents], int(factor),
                         seed, group_key, applied, [class_value(dataset, c) for c in skipped])


def transforms_for(dataset: Dataset) -> list[str]:
    """The names ``--policy`` accepts for this dataset (for messages and help)."""
    return ["auto", *row_transforms(dataset)]


__all__ = ["TABLE_TRANSFORMS", "RowContext", "apply_row_transform", "augment_rows",
           "check_row_preservation", "parse_row_policy", "plan_row_policy", "row_transforms",
           "transforms_for"]
