"""Build a run's ErrorReport: errors, traits, pairs, slices, clusters, label issues.

The order follows the manual recipe and then goes further: list the
misclassified val examples, count them by trait and by confused pair, find
slices nobody named (SliceLine-style search over columns and traits, kept
only when significant after correcting for every slice tried), cluster the
errors of images and text in a pretrained encoder's space, and flag labels
that look wrong, so a slice of bad labels is not mistaken for a weak model.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import Dataset, plain_value
from loopml.data.images import images_of, modality, text_of
from loopml.data.split import Split
from loopml.errors import builtin
from loopml.errors.history import merge_definitions, rescore
from loopml.errors.report import (
    ErrorReport,
    GroupStat,
    Scorer,
    confused_pairs,
    trait_p_values,
)
from loopml.errors.traits import Trait, compute_traits
from loopml.iteration import Iteration
from loopml.models.registry import EstimatorFactory
from loopml.progress import Progress, no_progress
from loopml.scope import TraitSpec

MAX_LISTED = 200  # error examples kept in the report
MAX_THUMBS = 48
#: the steps ``progress`` reports, in order
STEPS = ("traits", "label issues", "slices", "embedding clusters", "history")


@dataclass
class TraitSources:
    """The user's traits, gathered by the project: loopml.yaml, traits.py and tags."""

    specs: list[TraitSpec] = field(default_factory=list)
    functions: list[Callable] = field(default_factory=list)
    function_file: Path | None = None
    tags: dict[str, set[str]] = field(default_factory=dict)


def analyse_errors(iteration: Iteration, dataset: Dataset, split: Split, *,
                   factory: EstimatorFactory, traits: TraitSources | None = None,
                   known_slices: list[dict[str, Any]] | None = None,
                   runs: list[Iteration] | None = None, seed: int = 0,
                   label_issues: bool = True, label_model: str | None = None, folds: int = 5,
                   cluster_errors: bool = True, max_depth: int = 3, n_jobs: int | None = None,
                   progress: Progress | None = None) -> ErrorReport:
    """The ErrorReport of ``iteration`` on its val predictions (see the module doc).

    ``known_slices`` are the slice definitions stored by earlier analyses;
    the report's history re-scores them (with this run's new slices) on
    ``runs``. Nothing is written: the caller stores the report and the new
    definitions.
    """
    report_step = progress or no_progress
    step = lambda name: report_step(name, STEPS.index(name), len(STEPS))  # noqa: E731
    traits = traits or TraitSources()
    classes = list(dataset.classes)
    preds = iteration.predictions()
    val = preds[(preds["part"] == "val") & preds["id"].isin(dataset.ids.astype(str))]
    scorer = Scorer.from_predictions(val, dataset.task, iteration.metric, classes)
    ids = pd.Index(scorer.ids, name=dataset.ids.name)
    kind = modality(dataset)
    frame = dataset.frame.loc[ids]
    notes: list[str] = []
    lazy = _LazyInputs(dataset, ids, kind)

    step("traits")
    found = _traits(dataset, split, traits, frame, lazy, kind)
    step("label issues")
    issues, check = _label_issues(dataset, split, iteration, scorer, classes, factory=factory,
                                  seed=seed, enabled=label_issues, label_model=label_model,
                                  folds=folds, n_jobs=n_jobs)
    flagged = scorer.ids.isin(issues.loc[issues["part"] == "val", "id"]) \
        if len(issues) else np.zeros(len(ids), bool)
    p_values = trait_p_values(scorer, [t.mask.to_numpy(dtype=bool) for t in found])
    trait_stats = [scorer.group("trait", f"trait:{t.name}", t.name, t.description,
                                t.mask.to_numpy(), label_issue=flagged, source=t.source,
                                p_value=p)
                   for t, p in zip(found, p_values, strict=True)]
    pairs = confused_pairs(scorer, label_issue=flagged) if dataset.task == "classification" \
        else []
    step("slices")
    slice_frame = _slice_frame(dataset, frame, found, kind)
    slices = _slices(scorer, slice_frame, flagged, max_depth=max_depth) if scorer.is_error.any() \
        else []
    clusters: list[GroupStat] = []
    if cluster_errors and kind in ("image", "text") and scorer.is_error.any():
        step("embedding clusters")
        clusters = _clusters(scorer, lazy, found, flagged, iteration.run_id, notes)
    report = ErrorReport(
        run_id=iteration.run_id, architecture=iteration.architecture, task=dataset.task,
        metric=iteration.metric, data_version=dataset.version,
        split_version=split.version,
        created=datetime.now(UTC).isoformat(timespec="seconds"), n_val=len(ids),
        n_errors=int(scorer.is_error.sum()), error=scorer.base_error,
        errors=_error_rows(scorer, frame, dataset, found, issues),
        traits=sorted(trait_stats, key=lambda g: (-g.ceiling, g.name)), pairs=pairs,
        slices=slices, clusters=clusters, label_issues=issues.to_dict("records"),
        label_check=check, notes=notes, modality=kind)
    if kind == "image" and report.errors:
        wanted = [e["id"] for e in report.errors[:MAX_THUMBS]]
        wanted += [i for c in clusters for i in c.extra.get("examples", [])]
        report.thumbnails = _thumbnails(dataset, list(dict.fromkeys(wanted)))
    step("history")
    stored = merge_definitions(known_slices or [], slices, iteration.run_id)
    report.history = _history(runs or [iteration], report, stored, slice_frame, found, scorer,
                              notes, classes)
    report_step("history", len(STEPS), len(STEPS))
    return report


class _LazyInputs:
    """Images, texts and their embeddings, computed at most once and only if asked."""

    def __init__(self, dataset, ids: pd.Index, kind: str) -> None:
        self.dataset, self.ids, self.kind = dataset, ids, kind
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = getattr(self, f"_{name}")()
        return self._cache[name]

    def _images(self) -> np.ndarray:
        return images_of(self.dataset, self.ids)

    def _texts(self) -> pd.Series:
        return text_of(self.dataset, self.ids)

    def _embeddings(self) -> np.ndarray:
        from loopml.models.backbones import embed_images, embed_text

        if self.kind == "image":
            return embed_images(self.get("images"))
        return embed_text(self.get("texts").tolist())

    def inputs(self) -> dict[str, Callable[[], Any]]:
        out: dict[str, Callable[[], Any]] = {}
        if self.kind == "image":
            out["images"] = lambda: self.get("images")
        if self.kind == "text":
            out["texts"] = lambda: self.get("texts")
        return out


def _traits(dataset: Dataset, split: Split, sources: TraitSources, frame: pd.DataFrame,
            lazy: _LazyInputs, kind: str) -> list[Trait]:
    if kind == "image":
        found = builtin.image_traits(lazy.get("images"))
    elif kind == "text":
        found = builtin.text_traits(lazy.get("texts"))
    else:
        train = dataset.frame.loc[dataset.ids.intersection(split.ids("train"))]
        found = builtin.tabular_traits(frame, train, dataset.features)
    return compute_traits(frame, specs=sources.specs, functions=sources.functions,
                          function_file=sources.function_file if sources.functions else None,
                          tags=sources.tags, builtin=found, inputs=lazy.inputs())


def _label_issues(dataset: Dataset, split: Split, iteration: Iteration, scorer: Scorer,
                  classes: list, *, factory: EstimatorFactory, seed: int, enabled: bool,
                  label_model: str | None, folds: int, n_jobs: int | None
                  ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Label issues from the run's own architecture, or from ``label_model``.

    A model that cannot represent a slice disagrees with its labels as firmly
    as it would with wrong labels; judging labels with a more flexible
    architecture (``--label-model gbt``) tells the two apart.
    """
    empty = pd.DataFrame(columns=["id", "part", "given", "suggested", "quality"])
    if not enabled:
        return empty, {"checked": False, "why": "turned off (--no-label-issues)"}
    if dataset.task != "classification" or scorer.proba is None:
        return empty, {"checked": False, "why": "label issues need class probabilities "
                       "(classification)"}
    from loopml.errors.labels import find_label_issues, out_of_fold_proba

    train = dataset.ids.intersection(split.ids("train"))
    if label_model is None:  # val probabilities are already out-of-sample for the run's model
        oof = out_of_fold_proba(iteration.model(), dataset, train, classes, folds=folds,
                                seed=seed, n_jobs=n_jobs)
        ids = train.append(pd.Index(scorer.ids))
        labels = np.concatenate([dataset.y(train), scorer.y_true])
        proba = np.vstack([oof, scorer.proba])
    else:
        estimator = factory.make(label_model, quiet=True)
        ids = train.append(pd.Index(scorer.ids, name=train.name))
        labels = dataset.y(ids)
        proba = out_of_fold_proba(estimator, dataset, ids, classes, folds=folds, seed=seed,
                                  n_jobs=n_jobs)
    found = find_label_issues(ids, labels, proba, classes)
    val_ids = set(scorer.ids)
    found.insert(1, "part", ["val" if i in val_ids else "train" for i in found["id"]])
    check = {"checked": True, "n_checked": len(ids), "n_found": len(found), "folds": folds,
             "model": label_model or iteration.architecture,
             "method": "cleanlab confident learning (prune_by_noise_rate) on out-of-fold "
                       "probabilities" + ("" if label_model else " for train and the run's "
                                          "own val probabilities")}
    return found, check


def _slice_frame(dataset, frame: pd.DataFrame, traits: list[Trait], kind: str
                 ) -> pd.DataFrame:
    """Columns slices may name: features a person can read, metadata, the label, traits."""
    keep = [c for c, k in dataset.features.items()
            if k in ("numeric", "categorical") and kind != "image"]
    keep += [m for m in dataset.metadata if m not in keep]
    out = frame[keep].copy()
    target = frame[dataset.target]  # class labels are levels, never quantile bins
    out[dataset.target] = target.astype(str) if dataset.task == "classification" else target
    for t in traits:
        name = t.name if t.name not in out.columns else f"trait:{t.name}"
        out[name] = t.mask.to_numpy(dtype=bool)
    if kind == "text":
        for word, present in _frequent_words(text_of(dataset, frame.index)).items():
            out[f"word:{word}"] = present
    return out


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


def _slices(scorer: Scorer, frame: pd.DataFrame, flagged: np.ndarray, *, max_depth: int
            ) -> list[GroupStat]:
    from loopml.errors.slices import find_slices

    support = max(10, math.ceil(0.01 * len(frame)))
    if len(frame) < 2 * support:
        return []
    search = find_slices(frame, scorer.loss, max_depth=max_depth, min_support=support, k=10)
    out = []
    for s in search.slices:
        mask = s.slice.mask(frame)
        text = s.slice.describe()
        out.append(scorer.group("slice", f"slice:{s.slice.key}", text, text, mask,
                                label_issue=flagged, p_value=s.p_value,
                                extra={"slice": s.slice.to_dict(), "score": s.score,
                                       "n_tried": search.n_tried}))
    return out


def _clusters(scorer: Scorer, lazy: _LazyInputs, traits: list[Trait], flagged: np.ndarray,
              run_id: str, notes: list[str]) -> list[GroupStat]:
    from loopml.errors.clusters import find_clusters
    from loopml.exceptions import LoopmlError

    try:
        vectors = lazy.get("embeddings")
    except (LoopmlError, ImportError, OSError) as exc:
        notes.append(f"embedding clusters skipped: {exc}")
        return []
    describe = pd.DataFrame({"label": scorer.y_true.astype(str),
                             "predicted": scorer.y_pred.astype(str)})
    for t in traits:
        describe[t.name] = t.mask.to_numpy(dtype=bool)
    texts = lazy.get("texts").tolist() if lazy.kind == "text" else None
    found = find_clusters(vectors, scorer.loss, texts=texts, describe=describe)
    out = []
    for c in found:
        mask = np.zeros(len(scorer.ids), bool)
        mask[c.members] = True
        out.append(scorer.group(
            "cluster", f"cluster:{run_id[:8]}:{c.label}", f"cluster {c.label}",
            "; ".join(c.description), mask, label_issue=flagged, p_value=c.p_value,
            extra={"examples": [str(scorer.ids[i]) for i in c.examples]}))
    return out


def _error_rows(scorer: Scorer, frame: pd.DataFrame, dataset, traits: list[Trait],
                issues: pd.DataFrame) -> list[dict[str, Any]]:
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
    rows = []
    for j in order[:MAX_LISTED]:
        i = where[j]
        id_ = str(scorer.ids[i])
        values = frame.iloc[i]
        rows.append({
            "id": id_, "y_true": plain_value(scorer.y_true[i]),
            "y_pred": plain_value(scorer.y_pred[i]),
            "confidence": _num(conf[j]), "p_true": _num(p_true[j]),
            "residual": None if scorer.proba is not None or dataset.task != "regression"
            else float(scorer.y_pred[i] - scorer.y_true[i]),
            "traits": [t.name for t in traits if bool(t.mask.iloc[i])],
            "label_issue": id_ in suggested, "suggested_label": plain_value(suggested.get(id_)),
            "features": {c: _short(values[c]) for c in shown if c in values.index}})
    return rows


def _history(runs: list[Iteration], report: ErrorReport, stored: list[dict], slice_frame,
             traits: list[Trait], scorer: Scorer, notes: list[str], classes: list
             ) -> list[dict[str, Any]]:
    from loopml.errors.slices import Slice

    masks: dict[str, tuple[str, str, pd.Series]] = {}
    for definition in stored:
        try:
            mask = Slice.from_dict(definition["slice"]).mask(slice_frame)
        except Exception as exc:  # a column that is gone; keep going with the others
            notes.append(f"stored slice '{definition['description']}' not re-scored: {exc}")
            continue
        masks[definition["key"]] = ("slice", definition["description"],
                                    pd.Series(mask, index=scorer.ids))
    for t in traits:
        masks[f"trait:{t.name}"] = ("trait", t.name, pd.Series(t.mask.to_numpy(),
                                                                  index=scorer.ids))
    upto = next((i for i, r in enumerate(runs) if r.run_id == report.run_id), len(runs) - 1)
    return rescore(runs[: upto + 1], masks, task=report.task, metric=report.metric,
                   classes=classes)


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
