"""Build a run's ErrorReport: errors, traits, pairs, slices, clusters, label issues.

The order follows the manual recipe and then goes further: list the
misclassified val examples, count them by trait and by confused pair, find
slices nobody named (SliceLine-style search over columns and traits, kept
only when significant after correcting for every slice tried), cluster the
errors of images and text in a pretrained encoder's space, and flag labels
that look wrong, so a slice of bad labels is not mistaken for a weak model.

Slices and traits are defined on inputs only (features, metadata, origin,
words, traits that read those): a group named by the label, such as
``churn = yes``, says only that the model errs on one class, which no model
can use at prediction time. The label's part is the confused pairs'. Label
issues are judged by the best run's architecture (or ``label_model``), and
withheld when that judge is no better than the majority reference.

Every group comes out as a definition (:mod:`loopml.groups`) that applies to
any rows: built-in traits use cut-offs fitted on the train part once per
project (kept in the group store and reused), clusters keep their encoder and
centres, slices the traits their columns stand for.
"""

from __future__ import annotations

import base64
import io
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import Dataset, plain_value
from loopml.data.images import images_of, modality
from loopml.data.sampling import subsample
from loopml.data.split import Split
from loopml.errors.history import rescore
from loopml.errors.report import (
    ErrorExample,
    ErrorReport,
    GroupHistory,
    GroupStat,
    LabelCheck,
    LabelIssue,
    Scorer,
    confused_pairs,
    trait_p_values,
)
from loopml.errors.traits import Trait, compute_traits
from loopml.exceptions import LoopmlError
from loopml.groups import (
    ClusterGroup,
    Encoder,
    Group,
    GroupKind,
    Groups,
    MissingTrait,
    PythonTrait,
    RangeTrait,
    Rows,
    ScopeTrait,
    SliceGroup,
    TraitSources,
    fit_builtin_traits,
    membership,
)
from loopml.groups.builtin import builtin_names
from loopml.groups.rows import origin_column
from loopml.groups.slice import WORD_PREFIX
from loopml.groups.traits import TraitStopped
from loopml.iteration import Iteration, best_iteration
from loopml.models.registry import EstimatorFactory
from loopml.progress import Progress, no_progress

__all__ = ["STEPS", "TraitSources", "analyse_errors"]

MAX_LISTED = 200  # error examples kept in the report
MAX_THUMBS = 48
#: most train images the built-in image traits' cut-offs are measured on (a seeded sample)
MAX_FIT_IMAGES = 5000
#: train grown by more than this factor since the cut-offs were fitted: say so
GROWTH_NOTE = 1.25
#: the steps ``progress`` reports, in order
STEPS = ("traits", "label issues", "slices", "embedding clusters", "history")


def analyse_errors(iteration: Iteration, dataset: Dataset, split: Split, *,
                   factory: EstimatorFactory, traits: TraitSources | None = None,
                   groups: Groups | None = None, runs: list[Iteration] | None = None,
                   seed: int = 0, label_issues: bool = True, label_model: str | None = None,
                   folds: int = 5, cluster_errors: bool = True, max_depth: int = 3,
                   n_jobs: int | None = None, progress: Progress | None = None) -> ErrorReport:
    """The ErrorReport of ``iteration`` on its val predictions (see the module doc).

    ``groups`` are the project's stored groups: built-in traits use the
    cut-offs stored there (fitted on train now when there are none), and the
    report's history re-scores the stored slices (with this run's new ones)
    on ``runs``. The best of ``runs`` on this data and split judges the labels
    (its architecture and settings), unless ``label_model`` names a judge.
    Nothing is written: the caller stores the report and
    :meth:`ErrorReport.groups_to_keep`.
    """
    report_step = progress or no_progress
    step = lambda name: report_step(name, STEPS.index(name), len(STEPS))  # noqa: E731
    traits, groups = traits or TraitSources(), groups if groups is not None else Groups()
    classes = list(dataset.classes)
    preds = iteration.predictions()
    val = preds[(preds["part"] == "val") & preds["id"].isin(dataset.ids.astype(str))]
    if val.empty:
        raise LoopmlError(
            f"none of run {iteration.run_id[:8]}'s val examples are in the current data (the "
            f"run was trained on data {iteration.data_version}, the data is now "
            f"{dataset.version}): there is nothing of it to analyse",
            hint="train a run on the current data ('loopml train'), or bring the data back")
    scorer = Scorer.from_predictions(val, dataset.task, iteration.metric, classes)
    ids = pd.Index(scorer.ids, name=dataset.ids.name)
    kind = modality(dataset)
    rows = Rows.of(dataset, ids, predictions=scorer.y_pred)
    notes: list[str] = []

    step("traits")
    builtin = _builtin_traits(dataset, split, groups, kind, seed=seed, notes=notes)
    found = _inputs_only(compute_traits(rows, [*traits.definitions(), *builtin]), rows, notes)
    step("label issues")
    issues, check = _label_issues(dataset, split, iteration, scorer, classes, factory=factory,
                                  runs=runs or [iteration], seed=seed, enabled=label_issues,
                                  label_model=label_model, folds=folds, n_jobs=n_jobs)
    flagged = scorer.ids.isin(issues.loc[issues["part"] == "val", "id"]) \
        if len(issues) else np.zeros(len(ids), bool)
    p_values = trait_p_values(scorer, [t.mask.to_numpy(dtype=bool) for t in found])
    trait_stats = [scorer.group(t.definition, t.mask.to_numpy(), label_issue=flagged, p_value=p)
                   for t, p in zip(found, p_values, strict=True)]
    pairs = confused_pairs(scorer, label_issue=flagged) if dataset.task == "classification" \
        else []
    step("slices")
    slice_frame, trait_columns = _slice_frame(rows, found, kind)
    slices = _slices(scorer, slice_frame, trait_columns, flagged, max_depth=max_depth) \
        if scorer.is_error.any() else []
    clusters: list[GroupStat] | None = None
    if cluster_errors and kind in ("image", "text") and scorer.is_error.any():
        step("embedding clusters")
        clusters = _clusters(scorer, rows, found, flagged, notes)
    report = ErrorReport(
        run_id=iteration.run_id, architecture=iteration.architecture, task=dataset.task,
        metric=iteration.metric, data_version=dataset.version,
        split_version=split.version,
        created=datetime.now(UTC).isoformat(timespec="seconds"), n_val=len(ids),
        n_errors=int(scorer.is_error.sum()), error=scorer.base_error,
        errors=_error_rows(scorer, rows.frame, dataset, found, issues),
        traits=sorted(trait_stats, key=lambda g: (-g.ceiling, g.name)), pairs=pairs,
        slices=slices, clusters=clusters or [],
        label_issues=[LabelIssue(**r) for r in issues.to_dict("records")],
        label_check=check, notes=notes, modality=kind, clusters_searched=clusters is not None)
    if kind == "image" and report.errors:
        wanted = [e.id for e in report.errors[:MAX_THUMBS]]
        wanted += [i for c in report.clusters for i in c.examples]
        report.thumbnails = _thumbnails(dataset, list(dict.fromkeys(wanted)))
    step("history")
    report.history = _history(runs or [iteration], report, groups, rows, found, notes, classes)
    report_step("history", len(STEPS), len(STEPS))
    return report


def _builtin_traits(dataset: Dataset, split: Split, groups: Groups, kind: str, *, seed: int,
                    notes: list[str]) -> list[Group]:
    """The modality's built-in traits: as stored, or fitted on (a sample of) train now.

    Stored cut-offs are kept even when train has grown since, so a trait
    means the same rows in every run and its history compares like with like;
    the report says when train has grown by a quarter or more.
    """
    stored = {g.name: g for g in groups.builtin_traits(kind)}
    train = dataset.ids.intersection(split.ids("train"))
    would_fit = min(len(train), MAX_FIT_IMAGES) if kind == "image" else len(train)
    if set(builtin_names(kind)) <= set(stored):
        fitted_on = max((getattr(g, "n_fitted", 0) for g in stored.values()), default=0)
        if fitted_on and would_fit > GROWTH_NOTE * fitted_on:
            notes.append(f"built-in trait cut-offs were fitted on {fitted_on} train examples "
                         f"and are kept (train has {len(train)} now), so each trait means "
                         "the same rows in every run")
        return [stored[name] for name in builtin_names(kind)]
    if kind == "image" and len(train) > MAX_FIT_IMAGES:
        labels = dataset.y(train) if dataset.task == "classification" else None
        train = pd.Index(subsample(train, labels, MAX_FIT_IMAGES, seed=seed))
    return [stored.get(g.name, g) for g in fit_builtin_traits(Rows.of(dataset, train))]


def _label_issues(dataset: Dataset, split: Split, iteration: Iteration, scorer: Scorer,
                  classes: list, *, factory: EstimatorFactory, runs: list[Iteration],
                  seed: int, enabled: bool, label_model: str | None, folds: int,
                  n_jobs: int | None) -> tuple[pd.DataFrame, LabelCheck]:
    """Label issues from a competent judge: the best run's architecture, or ``label_model``.

    A model that cannot represent a slice disagrees with its labels as firmly
    as it would with wrong labels, so the judge is the best model the project
    has (or the one the user names, e.g. ``--label-model gbt``), not the run
    under analysis. Its out-of-fold scores are measured against the majority
    reference; a judge no better than that gets its list withheld, with the
    reason in the check.
    """
    empty = pd.DataFrame(columns=["id", "part", "given", "suggested", "quality"])
    if not enabled:
        return empty, LabelCheck(checked=False, why="turned off (--no-label-issues)")
    if dataset.task != "classification" or scorer.proba is None:
        return empty, LabelCheck(checked=False, why="label issues need class probabilities "
                                 "(classification)")
    from loopml.errors.labels import class_flags, find_label_issues, judge_scores, weak_judge

    judge, judge_name, judge_run, val_proba = _judge(dataset, split, iteration, scorer, classes,
                                                     factory=factory, runs=runs,
                                                     label_model=label_model)
    if val_proba is not None:  # a judge at chance on val is not worth fitting on folds
        on_val = judge_scores(scorer.y_true, val_proba, classes, metric=iteration.metric)
        if why := weak_judge(on_val, judge_name, on="on val"):
            return empty, LabelCheck(
                checked=True, n_checked=len(scorer.ids), model=judge_name, judge_run=judge_run,
                method="the judge's val probabilities only: a judge no better than the "
                       "majority reference on val is not refitted on folds of train",
                withheld=True, why=why, metric=on_val.metric, judge_error=on_val.judge_error,
                majority_error=on_val.majority_error,
                judge_balanced_accuracy=on_val.judge_balanced_accuracy,
                chance_balanced_accuracy=on_val.chance_balanced_accuracy)
    ids, labels, proba = _judged_proba(judge, dataset, split, scorer, classes, val_proba,
                                       folds=folds, seed=seed, n_jobs=n_jobs)
    found = find_label_issues(ids, labels, _without_class_weights(judge, proba, labels, classes),
                              classes)
    val_ids = set(scorer.ids)
    found.insert(1, "part", ["val" if i in val_ids else "train" for i in found["id"]])
    scores = judge_scores(labels, proba, classes, metric=iteration.metric)
    withheld = weak_judge(scores, judge_name)
    own = "" if val_proba is None else (
        " for train and the run's own val probabilities" if judge_run == iteration.run_id
        else f" for train and run {judge_run[:8]}'s val probabilities")
    check = LabelCheck(
        checked=True, n_checked=len(ids), n_found=len(found), folds=folds, model=judge_name,
        method="cleanlab confident learning (prune_by_noise_rate) on out-of-fold "
               "probabilities" + own,
        judge_run=judge_run, withheld=withheld is not None, why=withheld, metric=scores.metric,
        judge_error=scores.judge_error, majority_error=scores.majority_error,
        judge_balanced_accuracy=scores.judge_balanced_accuracy,
        chance_balanced_accuracy=scores.chance_balanced_accuracy,
        per_class=class_flags(labels, found["given"].to_numpy(), classes))
    return (empty if withheld else found), check


def _without_class_weights(judge: Any, proba: np.ndarray, labels: np.ndarray, classes: list
                           ) -> np.ndarray:
    """A class-weighted judge's probabilities with the class frequencies put back.

    ``balance`` weights class c by n / (k n_c), so the judge learns
    p(c | x) x w_c: a rare class's probability is inflated, and confident
    learning would flag hundreds of majority examples the judge only leans
    against because of the weights (509 of 8,500 on ISLR Default, measured).
    Multiplying by n_c and renormalising undoes that prior shift.
    """
    if not judge.get_params().get("balance", False):
        return proba
    counts = np.array([(labels == c).sum() for c in classes], dtype=float)
    shifted = proba * np.clip(counts, 1.0, None)
    return shifted / np.clip(shifted.sum(axis=1, keepdims=True), 1e-12, None)


def _judge(dataset: Dataset, split: Split, iteration: Iteration, scorer: Scorer, classes: list,
           *, factory: EstimatorFactory, runs: list[Iteration], label_model: str | None
           ) -> tuple[Any, str, str | None, np.ndarray | None]:
    """The judge: (unfitted estimator, name, its run id, its val probabilities or None).

    The best run on this data and split (or the analysed run when none
    qualifies) was fitted on train only, so its val probabilities are already
    out-of-sample and are reused; only train needs out-of-fold fits.
    """
    if label_model is not None:
        return factory.make(label_model, quiet=True), label_model, None, None
    best = best_iteration(runs, data_version=dataset.version,
                          split_version=split.version) or iteration
    proba = scorer.proba if best.run_id == iteration.run_id else _val_proba(best, scorer,
                                                                            classes)
    return best.model(), best.architecture, best.run_id, proba


def _val_proba(run: Iteration, scorer: Scorer, classes: list) -> np.ndarray | None:
    """``run``'s val probabilities in ``scorer``'s row order; None if it lacks some."""
    preds = run.predictions()
    val = preds[preds["part"] == "val"]
    val = val.set_index(val["id"].astype(str))
    columns = [f"proba:{c}" for c in classes]
    if not all(c in val.columns for c in columns) or not scorer.ids.isin(val.index).all():
        return None
    return val.loc[scorer.ids, columns].to_numpy(dtype=float)


def _judged_proba(judge: Any, dataset: Dataset, split: Split, scorer: Scorer, classes: list,
                  val_proba: np.ndarray | None, *, folds: int, seed: int, n_jobs: int | None
                  ) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Ids, labels and the judge's out-of-sample probabilities for train and val."""
    from loopml.errors.labels import out_of_fold_proba

    train = dataset.ids.intersection(split.ids("train"))
    ids = train.append(pd.Index(scorer.ids, name=train.name))
    if val_proba is None:
        proba = out_of_fold_proba(judge, dataset, ids, classes, folds=folds, seed=seed,
                                  n_jobs=n_jobs)
        return ids, dataset.y(ids), proba
    oof = out_of_fold_proba(judge, dataset, train, classes, folds=folds, seed=seed,
                            n_jobs=n_jobs)
    return ids, np.concatenate([dataset.y(train), scorer.y_true]), np.vstack([oof, val_proba])


def _inputs_only(traits: list[Trait], rows: Rows, notes: list[str]) -> list[Trait]:
    """The traits defined on inputs: one that reads the label is left out, with a note.

    A trait over the target (``churn == 'yes'``) marks one class; its error
    rate is a confused pair's, and no model can use it at prediction time.
    """
    kept, dropped = [], []
    for t in traits:
        (dropped if _reads_label(t.definition, rows) else kept).append(t)
    if dropped:
        names = ", ".join(f"'{t.name}'" for t in dropped)
        notes.append(f"trait(s) {names} read the target '{rows.target}' and are left out of "
                     "traits and slices: no model can use them; the confused pairs show how "
                     "the model errs per class")
    return kept


def _reads_label(definition: Group, rows: Rows) -> bool:
    """Whether a trait's membership needs the label column.

    Tags hold ids, and image and text traits read pixels and words; a
    built-in table trait names its columns. A trait from loopml.yaml or
    traits.py is applied to the rows without the label: if it then fails, it
    read the label.
    """
    target = rows.target
    if isinstance(definition, MissingTrait):
        return target in definition.columns
    if isinstance(definition, RangeTrait):
        return target in definition.ranges or target in definition.levels
    if not isinstance(definition, ScopeTrait | PythonTrait) or target not in rows.frame:
        return False
    unlabelled = Rows.from_frame(rows.frame.drop(columns=[target]), like=rows.like)
    try:
        membership(definition, unlabelled)
    except TraitStopped:  # out of time or exited: a fault of the trait, not a sign
        raise
    except (LoopmlError, KeyError, ValueError, TypeError):
        return True
    return False


def _slice_frame(rows: Rows, traits: list[Trait], kind: str
                 ) -> tuple[pd.DataFrame, dict[str, Group]]:
    """Columns slices may name (readable features, metadata, origin, traits, words),
    and the trait each trait column stands for.

    Inputs only: never the label, the prediction or a trait that reads them
    (``traits`` are already :func:`_inputs_only`).
    """
    dataset = rows.like
    keep = [c for c, k in dataset.features.items()
            if k in ("numeric", "categorical") and kind != "image"]
    keep += [m for m in dataset.metadata if m not in keep and m != dataset.target]
    out = rows.frame[keep].copy()
    origin = origin_column(dataset)
    if origin in rows.frame.columns and rows.frame[origin].nunique() > 1:
        out[origin] = rows.frame[origin]  # e.g. collected examples erring more than the rest
    columns: dict[str, Group] = {}
    for t in traits:
        name = t.name if t.name not in out.columns else f"trait:{t.name}"
        out[name] = t.mask.to_numpy(dtype=bool)
        columns[name] = t.definition
    if kind == "text":
        for word, present in _frequent_words(rows.texts()).items():
            out[f"{WORD_PREFIX}{word}"] = present
    return out, columns


def _frequent_words(texts: pd.Series, *, top: int = 50) -> dict[str, np.ndarray]:
    """Whether each text holds one of the most frequent words: slices can name words."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(binary=True, stop_words="english", max_features=top,
                                 min_df=max(2, len(texts) // 100))
    try:
        counts = vectorizer.fit_transform(texts.fillna("").astype(str))
    except ValueError:  # nothing but stop words, or too few texts
        return {}
    dense = counts.toarray().astype(bool)
    return {w: dense[:, i] for i, w in enumerate(vectorizer.get_feature_names_out())}


def _slices(scorer: Scorer, frame: pd.DataFrame, trait_columns: dict[str, Group],
            flagged: np.ndarray, *, max_depth: int) -> list[GroupStat]:
    from loopml.errors.slices import find_slices

    support = max(10, math.ceil(0.01 * len(frame)))
    if len(frame) < 2 * support:
        return []
    search = find_slices(frame, scorer.loss, max_depth=max_depth, min_support=support, k=10)
    out = []
    for s in search.slices:
        used = {p.column for p in s.slice.predicates}
        definition = SliceGroup(s.slice, {c: g for c, g in trait_columns.items() if c in used})
        out.append(scorer.group(definition, s.slice.mask(frame), label_issue=flagged,
                                p_value=s.p_value, score=s.score, n_tried=search.n_tried))
    return out


def _clusters(scorer: Scorer, rows: Rows, traits: list[Trait], flagged: np.ndarray,
              notes: list[str]) -> list[GroupStat] | None:
    """The significant error clusters (maybe none); None when the encoder is unavailable."""
    from loopml.errors.clusters import find_clusters

    image = rows.modality == "image"
    encoder = Encoder.EFFICIENTNET if image else Encoder.MINILM
    try:
        from loopml.models.backbones import default_image_size

        size = default_image_size(max(rows.images().shape[2:])) if image else None
        vectors = rows.embeddings(str(encoder), size)
    except (LoopmlError, ImportError, OSError) as exc:
        notes.append(f"embedding clusters skipped: {exc}")
        return None
    describe = pd.DataFrame({"label": scorer.y_true.astype(str),
                             "predicted": scorer.y_pred.astype(str)})
    for t in traits:
        describe[t.name] = t.mask.to_numpy(dtype=bool)
    texts = None if image else rows.texts().tolist()
    out = []
    for c in find_clusters(vectors, scorer.loss, texts=texts, describe=describe):
        mask = np.zeros(len(scorer.ids), bool)
        mask[c.members] = True
        definition = ClusterGroup.of(c.centres, c.label, encoder, size, "; ".join(c.description))
        out.append(scorer.group(definition, mask, label_issue=flagged, p_value=c.p_value,
                                examples=[str(scorer.ids[i]) for i in c.examples]))
    return out


def _error_rows(scorer: Scorer, frame: pd.DataFrame, dataset: Dataset, traits: list[Trait],
                issues: pd.DataFrame) -> list[ErrorExample]:
    where = np.flatnonzero(scorer.is_error)
    if scorer.proba is not None:
        cls_index = {c: i for i, c in enumerate(scorer.classes)}
        conf = scorer.proba[where].max(axis=1)
        p_true = np.array([scorer.proba[i, cls_index[scorer.y_true[i]]]
                           if scorer.y_true[i] in cls_index else np.nan for i in where])
        order = np.argsort(-conf, kind="stable")
    else:
        conf = p_true = np.full(len(where), np.nan)
        order = np.argsort(-scorer.loss[where], kind="stable")
    shown = [c for c, k in dataset.features.items() if k != "numeric" or
             dataset.image_shape is None][:20] + list(dataset.metadata)
    suggested = dict(zip(issues["id"], issues["suggested"], strict=True)) if len(issues) else {}
    out = []
    for j in order[:MAX_LISTED]:
        i = where[j]
        id_ = str(scorer.ids[i])
        values = frame.iloc[i]
        out.append(ErrorExample(
            id=id_, y_true=plain_value(scorer.y_true[i]), y_pred=plain_value(scorer.y_pred[i]),
            confidence=_num(conf[j]), p_true=_num(p_true[j]),
            residual=None if scorer.proba is not None or dataset.task != "regression"
            else float(scorer.y_pred[i] - scorer.y_true[i]),
            traits=[t.name for t in traits if bool(t.mask.iloc[i])],
            label_issue=id_ in suggested, suggested_label=plain_value(suggested.get(id_)),
            features={c: _short(values[c]) for c in shown if c in values.index}))
    return out


def _history(runs: list[Iteration], report: ErrorReport, groups: Groups, rows: Rows,
             traits: list[Trait], notes: list[str], classes: list) -> list[GroupHistory]:
    """Stored and new slices, and every trait, re-scored on each run's val predictions."""
    by_name = {t.name: t.definition for t in traits}
    stored = [g.with_traits(by_name) for g in groups.of_kind(GroupKind.SLICE)
              if isinstance(g, SliceGroup)]
    slices = [g for g in stored if not _names_label(g, rows)]
    if len(slices) < len(stored):
        notes.append(f"{len(stored) - len(slices)} stored slice(s) defined on the target "
                     f"'{rows.target}' are no longer tracked: no model can use them")
    slices += [g.definition for g in report.slices if g.key not in groups]
    masks: list[tuple[Group, pd.Series]] = []
    for group in slices:
        try:
            mask = membership(group, rows)
        except (LoopmlError, ValueError, TypeError) as exc:  # a column that is gone
            notes.append(f"stored slice '{group.name}' not re-scored: {exc}")
            continue
        masks.append((group, pd.Series(mask, index=rows.ids)))
    masks += [(t.definition, t.mask) for t in traits]
    upto = next((i for i, r in enumerate(runs) if r.run_id == report.run_id), len(runs) - 1)
    return rescore(runs[: upto + 1], masks, task=report.task, metric=report.metric,
                   classes=classes)


def _names_label(group: SliceGroup, rows: Rows) -> bool:
    """Whether a (stored) slice reads the label: by its column, or by a trait that does."""
    for p in group.slice.predicates:
        if p.column == rows.target and p.column not in group.columns:
            return True
        if p.column in group.columns and _reads_label(group.columns[p.column], rows):
            return True
    return False


def _thumbnails(dataset, ids: list[str]) -> dict[str, str]:
    from PIL import Image

    images = images_of(dataset, pd.Index(ids))
    out = {}
    for id_, img in zip(ids, images, strict=True):
        arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        pil = Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
        side = max(64, pil.width)
        pil = pil.resize((side, side), Image.NEAREST if pil.width < 32 else Image.BILINEAR)
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        out[id_] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return out


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 300:
        return value[:297] + "..."
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return plain_value(value)
