"""Augmentation matched to the errors, with label preservation checked per class.

Three steps, each a function of concept objects (no Project):

1. :func:`plan_policy` picks the transforms and their magnitudes. ``auto``
   compares the failing val examples with train (centre-of-mass spread, ink
   orientation, Laplacian sharpness, contrast, ink share) and reads the error
   report's built-in traits (``blurry`` -> blur, ``low_contrast`` ->
   contrast, ``off_centre`` -> shift, ``thin_strokes`` -> erode,
   ``thick_strokes`` -> dilate), so the distortions added are those of the
   data the model meets. A named policy (``shift,blur`` or ``shift=0.2``)
   uses those transforms, at the measured magnitude when there is one.
2. :func:`check_preservation` applies every transform to a seeded share of
   train examples of each class and predicts them with the reference model.
   A transform is refused for a class when its copies are misclassified far
   more often than the clean ones: ``flip_rate - clean_rate > 0.3`` and
   ``flip_rate >= 2 * clean_rate`` (:data:`REFUSE_MARGIN`, :data:`REFUSE_RATIO`),
   and far more often than the transform's copies of the other classes:
   ``flip_rate - typical_rate > 0.25``, the median flip rate over classes
   (:data:`REFUSE_OVER_TYPICAL`). A 180-degree rotation turns a 6 into a 9,
   so it is refused for both; a blur that a model trained on sharp images
   misreads for every class alike is the distortion to add, not a change of
   label, so it is not refused.
3. :func:`augment` makes ``factor`` new train examples per parent (every
   train example, or those of a group), each with every transform of the
   policy not refused for its class, in the dataset's own format (pixel
   columns for a pixel table such as ``digits``; pixel arrays, stored as
   PNGs, for an image column).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from loopml.data.images import image_column, modality
from loopml.exceptions import LoopmlError
from loopml.groups import Rows, membership
from loopml.groups.builtin import image_measures
from loopml.grow.transforms import (
    TRANSFORMS,
    apply_transform,
    augment_device,
    checked_magnitude,
    transform_spec,
)
from loopml.jsonable import json_ready
from loopml.progress import Progress, no_progress

if TYPE_CHECKING:
    from loopml.data.dataset import Dataset
    from loopml.data.split import Split
    from loopml.errors.report import ErrorReport
    from loopml.groups import Group, Groups
    from loopml.iteration import Iteration

REFUSE_MARGIN = 0.3  # a transform's flip rate minus the clean error rate, per class
REFUSE_RATIO = 2.0  # ... and at least this many times the clean error rate
REFUSE_OVER_TYPICAL = 0.25  # ... and the flip rate minus the transform's median over classes
CHECK_PER_CLASS = 40  # train examples per class the preservation check uses
CHECK_COPIES = 2  # transformed copies of each
SAMPLE = 600  # train examples whose statistics the auto policy measures
BATCH = 2048  # images transformed at once
SIMULATE = 300  # train examples the auto policy's magnitudes are simulated on
BLUR_SIGMAS = (0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)  # candidates, largest sigma
SHIFT_SHARES = (0.03, 0.06, 0.09, 0.125, 0.16, 0.19, 0.25, 0.3)  # largest move / side
ROTATION_DEGREES = (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 45.0)  # largest angle
CONTRAST_SHARES = (0.2, 0.4, 0.6, 0.8)  # largest share of contrast removed
TRAIT_TRANSFORMS = {"blurry": "blur", "low_contrast": "contrast", "off_centre": "shift",
                    "thin_strokes": "erode", "thick_strokes": "dilate"}


@dataclass
class PolicyStep:
    """One transform of a policy, at one magnitude, and why it was picked."""

    transform: str
    magnitude: float
    reasons: list[str] = field(default_factory=list)
    unit: str = ""  # a table or text transform's unit (image ones: TRANSFORMS)

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.transform, "magnitude": self.magnitude,
                "unit": self.unit or TRANSFORMS[self.transform].unit,
                "reasons": list(self.reasons)}


@dataclass
class Policy:
    """The transforms to apply (in order), with the statistics they were matched to."""

    name: str  # "auto", or the names given
    steps: list[PolicyStep]
    measured: dict[str, dict[str, float]] = field(default_factory=dict)  # train / failing val

    @property
    def transforms(self) -> list[str]:
        return [s.transform for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return json_ready({"name": self.name, "steps": [s.to_dict() for s in self.steps],
                           "measured": self.measured})


@dataclass
class ClassCheck:
    """One transform on one class's held-out train examples, against their clean copies."""

    label: Any
    transform: str
    n: int  # transformed copies predicted
    clean_rate: float  # share of clean copies the model misclassifies
    flip_rate: float  # share of transformed copies it misclassifies
    typical_rate: float = 0.0  # the transform's median flip rate over the classes

    @property
    def refused(self) -> bool:
        """A label change: this class flips, far beyond its clean copies and the other classes.

        A transform every class flips under alike is one the model has not
        learned to read (what augmentation is for), not one that changes labels.
        """
        return (self.flip_rate - self.clean_rate > REFUSE_MARGIN
                and self.flip_rate >= REFUSE_RATIO * self.clean_rate
                and self.flip_rate - self.typical_rate > REFUSE_OVER_TYPICAL)

    def to_dict(self) -> dict[str, Any]:
        return json_ready({"class": self.label, "transform": self.transform, "n": self.n,
                           "clean_rate": self.clean_rate, "flip_rate": self.flip_rate,
                           "typical_rate": self.typical_rate, "refused": self.refused})


@dataclass
class Preservation:
    """Which transforms keep which classes' labels, for the reference model."""

    run_id: str
    checks: list[ClassCheck]

    @property
    def refusals(self) -> list[ClassCheck]:
        return [c for c in self.checks if c.refused]

    def refused_classes(self, transform: str) -> set[str]:
        """The classes (as text) ``transform`` is refused for."""
        return {str(c.label) for c in self.refusals if c.transform == transform}

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id,
                "rule": f"refused for a class when flip_rate - clean_rate > {REFUSE_MARGIN} "
                        f"and flip_rate >= {REFUSE_RATIO:g} x clean_rate and flip_rate - "
                        f"typical_rate (the transform's median over classes) > "
                        f"{REFUSE_OVER_TYPICAL}",
                "refusals": [c.to_dict() for c in self.refusals],
                "checks": [c.to_dict() for c in self.checks]}


@dataclass
class AugmentResult:
    """New train examples (``rows``, one ``parent_ids`` entry each) and how they were made."""

    policy: Policy
    preservation: Preservation
    rows: pd.DataFrame
    parent_ids: list[str]
    factor: int
    seed: int
    group: str | None = None
    applied: dict[str, int] = field(default_factory=dict)  # transform -> examples given it
    skipped_classes: list[Any] = field(default_factory=list)  # every transform refused
    lift: Any = None  # the Lift, when measured

    @property
    def n_added(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        out = {"policy": self.policy.to_dict(), "preservation": self.preservation.to_dict(),
               "added": self.n_added, "parents": len(set(self.parent_ids)),
               "factor": self.factor, "seed": self.seed, "group": self.group,
               "applied": dict(self.applied), "skipped_classes": list(self.skipped_classes),
               "lift": self.lift.to_dict() if self.lift is not None else None}
        return json_ready(out)


# ---------------------------------------------------------------- reading and writing images


class ImageFormat:
    """How a dataset stores its images: read them as tensors, write tensors back as rows."""

    def __init__(self, dataset: Dataset) -> None:
        require_images(dataset)
        self.dataset = dataset
        self.column = image_column(dataset)
        if self.column is None:  # a pixel table (digits): scaled by the table's maximum
            values = dataset.frame[list(dataset.features)].to_numpy(dtype=np.float64)
            self.scale = float(np.nanmax(np.abs(values))) or 1.0
        else:
            from PIL import Image

            with Image.open(str(dataset.frame[self.column].iloc[0])) as first:
                self.size = first.size
                self.mode = "L" if first.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"

    def load(self, ids: pd.Index) -> torch.Tensor:
        """(n, C, H, W) float32 in [0, 1]."""
        if self.column is None:
            pixels = self.dataset.X(ids).to_numpy(dtype=np.float32)
            pixels = np.nan_to_num(pixels) / self.scale
            return torch.from_numpy(pixels.reshape(len(ids), *self.dataset.image_shape))
        from PIL import Image

        out = []
        for path in self.dataset.frame.loc[ids, self.column].astype(str):
            with Image.open(path) as img:
                arr = np.asarray(img.convert(self.mode).resize(self.size), dtype=np.float32)
            out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        return torch.from_numpy(np.stack(out) / 255.0)

    def rows(self, images: torch.Tensor, parents: pd.Index) -> pd.DataFrame:
        """The new examples as rows of the dataset: the parents' columns, new pixels."""
        frame = self.dataset.frame.loc[parents].reset_index(drop=True)
        arr = images.detach().cpu().numpy()
        if self.column is None:
            pixels = np.clip(arr, 0, 1).reshape(len(arr), -1) * self.scale
            frame[list(self.dataset.features)] = pixels.astype(np.float32)
            return frame
        uint8 = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
        frame[self.column] = [a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0) for a in uint8]
        return frame

    def features(self, images: torch.Tensor, parents: pd.Index, folder: Path) -> pd.DataFrame:
        """What the model reads for these images (PNG files in ``folder`` for an image column)."""
        frame = self.rows(images, parents)
        if self.column is not None:
            from PIL import Image

            paths = []
            for i, pixels in enumerate(frame[self.column]):
                path = folder / f"{i:06d}.png"
                Image.fromarray(pixels).save(path)
                paths.append(str(path))
            frame[self.column] = paths
        return frame[list(self.dataset.features)]


def require_images(dataset: Dataset) -> None:
    """Augmentation works on images; tables and text get a clear error, for now."""
    kind = modality(dataset)
    if kind != "image" or dataset.task != "classification":
        what = "regression" if dataset.task != "classification" else f"{kind} data"
        raise LoopmlError(f"augmentation for {what} is not there yet: 'loopml augment' "
                          "works on image classification projects",
                          hint="add data with 'loopml collect' or 'loopml synthesize', or "
                               "add rows yourself with Project.add_examples")


# ---------------------------------------------------------------- the policy


def parse_policy(policy: str) -> list[tuple[str, float | None]]:
    """``auto`` -> []; ``shift,blur=1.5`` -> [("shift", None), ("blur", 1.5)], checked."""
    text = str(policy).strip()
    if text == "auto":
        return []
    out: list[tuple[str, float | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        spec = transform_spec(name.strip())
        out.append((spec.name, policy_magnitude(name.strip(), value.strip(), spec)))
    if not out:
        raise LoopmlError(f"--policy '{policy}' names no transform",
                          hint=f"give 'auto' or names from: {', '.join(TRANSFORMS)}")
    return out


def policy_magnitude(name: str, value: str, spec: Any) -> float | None:
    """The magnitude of ``NAME=VALUE`` in ``--policy`` (None when not given), within the spec."""
    if not value:
        return None
    try:
        magnitude = float(value)
    except ValueError:
        raise LoopmlError(f"magnitude '{value}' of '{name}' in --policy is not a number",
                          hint=f"write NAME=NUMBER, e.g. {name}={spec.default:g}") from None
    return checked_magnitude(name, magnitude, spec)


def _moments(images: np.ndarray) -> pd.DataFrame:
    """Centre of mass (share of the side) and ink orientation (degrees) per image."""
    gray = images.mean(axis=1)
    n, h, w = gray.shape
    border = np.concatenate([gray[:, 0, :], gray[:, -1, :], gray[:, :, 0], gray[:, :, -1]],
                            axis=1)
    diff = np.abs(gray - np.median(border, axis=1)[:, None, None])
    weight = diff / np.maximum(diff.reshape(n, -1).sum(axis=1), 1e-9)[:, None, None]
    rows, cols = np.mgrid[0:h, 0:w]
    cy, cx = (weight * rows).sum(axis=(1, 2)), (weight * cols).sum(axis=(1, 2))
    dy, dx = rows[None] - cy[:, None, None], cols[None] - cx[:, None, None]
    myy, mxx = (weight * dy * dy).sum(axis=(1, 2)), (weight * dx * dx).sum(axis=(1, 2))
    mxy = (weight * dx * dy).sum(axis=(1, 2))
    angle = np.degrees(0.5 * np.arctan2(2 * mxy, mxx - myy))
    return pd.DataFrame({"cy": cy / h, "cx": cx / w, "angle": angle})


def _statistics(images: np.ndarray) -> pd.DataFrame:
    return pd.concat([image_measures(images), _moments(images)], axis=1)


def _angle_spread(angles: np.ndarray) -> float:
    """Circular std (degrees) of axis orientations, which wrap at 180 degrees."""
    doubled = np.radians(2 * angles)
    length = float(np.hypot(np.cos(doubled).mean(), np.sin(doubled).mean()))
    return float(np.degrees(np.sqrt(-2 * np.log(max(length, 1e-9)))) / 2)


def _summary(stats: pd.DataFrame) -> dict[str, float]:
    return {"centre_spread": float(np.sqrt(stats["cy"].var() + stats["cx"].var())),
            "angle_std": _angle_spread(stats["angle"].to_numpy()),
            "sharpness": float(stats["sharpness"].median()),
            "contrast": float(stats["contrast"].median()),
            "ink": float(stats["ink"].median()),
            "offset": float(stats["offset"].median())}


def _failing_val(dataset: Dataset, split: Split, iteration: Iteration,
                 group: Group | None) -> tuple[pd.Index, str]:
    """The val examples the reference run gets wrong (of ``group`` when given)."""
    predictions = iteration.predictions()
    val = predictions[predictions["part"] == "val"]
    ids = pd.Index(val["id"].astype(str)).intersection(dataset.ids)
    wrong = pd.Index(val.loc[val["y_true"].astype(str) != val["y_pred"].astype(str), "id"]
                     .astype(str)).intersection(dataset.ids)
    if group is not None and len(ids):
        inside = membership(group, Rows.of(dataset, ids))
        ids = ids[inside]
        wrong = wrong.intersection(ids)
    if len(wrong) >= 5:
        return wrong, f"the {len(wrong)} failing val examples"
    return ids, f"the {len(ids)} val examples (too few failing ones to measure)"


def plan_policy(dataset: Dataset, split: Split, iteration: Iteration,
                error_report: ErrorReport | None, groups: Groups | None = None, *,
                policy: str = "auto", group: str | None = None, seed: int = 0) -> Policy:
    """The transforms and magnitudes to apply, each with the reasons it was picked.

    Measures a seeded sample of train and the failing val examples (of
    ``group``, a key of ``groups``, when given) and compares them; reads the
    error report's built-in traits that hold more than their share of errors.
    ``policy`` "auto" keeps what the comparison and the traits found (a mild
    shift and rotation when they found nothing, and says so); names keep
    those transforms, at the measured magnitude when there is one.
    """
    fmt = ImageFormat(dataset)
    named = parse_policy(policy)
    definition = groups.find(group) if groups is not None and group else None
    rng = np.random.default_rng(seed)
    train = split.ids("train")
    train = train[rng.permutation(len(train))[:SAMPLE]]
    val, val_what = _failing_val(dataset, split, iteration, definition)
    train_stats = _summary(_statistics(fmt.load(train).numpy()))
    measured = {"train": train_stats}
    found: dict[str, PolicyStep] = {}
    if len(val) >= 2:
        val_stats = _summary(_statistics(fmt.load(val).numpy()))
        measured["val"] = val_stats
        compared = _match_statistics(found, train_stats, val_stats, val_what, fmt, train,
                                     seed=seed)
    else:
        compared = set()
    _match_traits(found, error_report, compared)
    if named:
        steps = []
        for name, magnitude in named:
            step = found.get(name)
            chosen = magnitude if magnitude is not None else (
                step.magnitude if step else TRANSFORMS[name].default)
            reasons = ["named in --policy"] + (step.reasons if step else [])
            steps.append(PolicyStep(name, round(chosen, 4), reasons))
        return Policy(",".join(n for n, _ in named), steps, measured)
    steps = list(found.values())
    if not steps:
        why = (f"no distortion of {val_what} was measured against train; a mild shift and "
               "rotation as a general default")
        steps = [PolicyStep("shift", TRANSFORMS["shift"].default, [why]),
                 PolicyStep("rotation", 10.0, [why])]
    return Policy("auto", steps, measured)


def _add(found: dict[str, PolicyStep], name: str, magnitude: float, reason: str) -> None:
    if name in found:
        found[name].reasons.append(reason)
    else:
        found[name] = PolicyStep(name, round(float(magnitude), 4), [reason])


def _match_statistics(found: dict[str, PolicyStep], train: dict[str, float],
                      val: dict[str, float], val_what: str, fmt: ImageFormat,
                      train_ids: pd.Index, *, seed: int) -> set[str]:
    """Transforms whose distortion the val statistics show, at the magnitude that matches.

    Each magnitude is found by simulation: the train sample is put through the
    transforms matched so far plus a candidate, and the candidate whose
    statistic comes nearest val's wins. Blur goes first because it also lowers
    contrast and ink and blurs the orientation of small images: contrast,
    centres and orientation are then compared with *blurred* train, so a blur
    is not mistaken for a contrast loss or a rotation. Returns the transforms
    whose statistic was compared (added or not), which the traits then defer to.
    """
    images = fmt.load(train_ids[:SIMULATE])
    side = max(images.shape[-2:])
    chosen: list[PolicyStep] = []
    current = train

    def simulate(step: PolicyStep) -> dict[str, float]:
        out, generator = images, torch.Generator().manual_seed(seed)
        for s in [*chosen, step]:
            out = apply_transform(s.transform, out, s.magnitude, generator=generator)
        return _summary(_statistics(out.numpy()))

    def match(name: str, candidates: Sequence[float], key: str, reason: str) -> None:
        nonlocal current
        tried = [(m, simulate(PolicyStep(name, m))) for m in candidates]
        magnitude, current = min(tried, key=lambda t: abs(t[1][key] - val[key]))
        step = PolicyStep(name, round(float(magnitude), 4))
        chosen.append(step)
        _add(found, name, step.magnitude, f"{reason} (a {name} of {magnitude:g} matches it)")

    if val["sharpness"] < 0.7 * current["sharpness"]:
        match("blur", BLUR_SIGMAS, "sharpness",
              f"{val_what} are less sharp: Laplacian variance {val['sharpness']:.4f}, train "
              f"{train['sharpness']:.4f}")
    after = " blurred" if chosen else ""
    extra = np.sqrt(max(val["centre_spread"] ** 2 - current["centre_spread"] ** 2, 0.0))
    if val["centre_spread"] > 1.25 * current["centre_spread"] and extra > 0.5 / side:
        match("shift", SHIFT_SHARES, "centre_spread",
              f"centres of mass of {val_what} spread {val['centre_spread']:.3f} of the side,"
              f"{after} train {current['centre_spread']:.3f}")
    if (val["angle_std"] > 1.3 * current["angle_std"]
            and val["angle_std"] - current["angle_std"] > 3):
        match("rotation", ROTATION_DEGREES, "angle_std",
              f"ink orientation of {val_what} varies {val['angle_std']:.1f} degrees (std),"
              f"{after} train {current['angle_std']:.1f}")
    if val["contrast"] < 0.8 * current["contrast"]:
        match("contrast", CONTRAST_SHARES, "contrast",
              f"{val_what} have less contrast: pixel std {val['contrast']:.3f},{after} train "
              f"{current['contrast']:.3f}")
    ink = val["ink"] / max(current["ink"], 1e-9)
    if ink < 0.8 or ink > 1.25:
        name = "erode" if ink < 1 else "dilate"
        _add(found, name, float(np.clip(2 * abs(1 - ink), 0.2, 1.0)),
             f"{val_what} have {'thinner' if ink < 1 else 'thicker'} strokes: ink share "
             f"{val['ink']:.3f},{after} train {current['ink']:.3f}")
    return {"blur", "shift", "rotation", "contrast", "erode", "dilate"}


def _match_traits(found: dict[str, PolicyStep], report: ErrorReport | None,
                  compared: set[str] = frozenset()) -> None:
    """Built-in traits holding more than their share of the val errors.

    A transform in ``compared`` was weighed on measured statistics: its trait
    adds a reason when it was picked, never the transform itself (a blur makes
    small images 'low_contrast' too; the blurred-train comparison knows that).
    """
    if report is None:
        return
    for stat in report.traits:
        name = TRAIT_TRANSFORMS.get(stat.name)
        if name is None or stat.n_errors == 0 or stat.rate_inside < 1.5 * stat.rate_outside:
            continue
        if name in compared and name not in found:
            continue
        _add(found, name, TRANSFORMS[name].default,
             f"trait '{stat.name}' holds {stat.n_errors} val error(s): error rate "
             f"{stat.rate_inside:.1%} inside, {stat.rate_outside:.1%} outside")


# ---------------------------------------------------------------- label preservation


def _predict(model: Any, fmt: ImageFormat, images: torch.Tensor, parents: pd.Index
             ) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="loopml-augment-") as folder:
        return np.asarray(model.predict(fmt.features(images, parents, Path(folder))))


def check_preservation(dataset: Dataset, split: Split, iteration: Iteration, policy: Policy,
                       *, seed: int = 0, per_class: int = CHECK_PER_CLASS,
                       progress: Progress | None = None) -> Preservation:
    """Each transform on a seeded share of each class's train examples, vs clean copies."""
    report = progress or no_progress
    fmt = ImageFormat(dataset)
    rng = np.random.default_rng(seed)
    train = split.ids("train")
    labels = pd.Series(dataset.y(train), index=train).astype(str)
    chosen = [g.index[rng.permutation(len(g))[:per_class]] for _, g in labels.groupby(labels)]
    ids = pd.Index(np.concatenate([c.to_numpy() for c in chosen]))
    model = iteration.model()
    device = augment_device()
    clean = fmt.load(ids)
    truth = labels.loc[ids].to_numpy()
    clean_wrong = _predict(model, fmt, clean, ids).astype(str) != truth
    copies = clean.repeat(CHECK_COPIES, 1, 1, 1).to(device)
    parents = ids.append([ids] * (CHECK_COPIES - 1))
    truth_copies = np.tile(truth, CHECK_COPIES)
    checks = []
    for i, step in enumerate(policy.steps):
        report(f"checking {step.transform} on {len(ids)} train examples", i, len(policy.steps))
        generator = torch.Generator().manual_seed(seed + i)
        moved = apply_transform(step.transform, copies, step.magnitude, generator=generator)
        wrong = _predict(model, fmt, moved.cpu(), parents).astype(str) != truth_copies
        classes = sorted(set(truth))
        rates = {c: float(wrong[truth_copies == c].mean()) for c in classes}
        typical = float(np.median(list(rates.values())))
        for label in classes:
            checks.append(ClassCheck(class_value(dataset, label), step.transform,
                                     int((truth_copies == label).sum()),
                                     float(clean_wrong[truth == label].mean()), rates[label],
                                     typical))
    report("checked", len(policy.steps), len(policy.steps))
    return Preservation(iteration.run_id, checks)


def class_value(dataset: Dataset, text: str) -> Any:
    """The class as the dataset holds it, from its text."""
    from loopml.data.dataset import plain_value

    return plain_value({str(c): c for c in dataset.classes}.get(text, text))


# ---------------------------------------------------------------- augmenting


def checked_factor(factor: float) -> int:
    """``--factor``: a whole number of new examples per parent, at least 1."""
    if int(factor) != factor or factor < 1:
        raise LoopmlError(f"--factor must be a whole number of at least 1, got {factor}",
                          hint="the number of new examples made from each train example")
    return int(factor)


def train_parents(dataset: Dataset, split: Split, group: Group | None,
                  group_key: str | None) -> pd.Index:
    """The train examples an action may derive from: the source's (of ``group``, if given).

    Examples augmented or synthesized before are never parents again.
    """
    train = split.ids("train")
    origin = dataset.origin.reindex(train).astype(str)
    train = train[~origin.isin(["augment", "synth"]).to_numpy()]
    if group is not None:
        train = train[membership(group, Rows.of(dataset, train))]
        if not len(train):
            raise LoopmlError(f"group '{group_key or group.key}' has no train examples to "
                              "augment", hint="pick a group with train members, or leave "
                                              "--group out to augment every class")
    return train


def drop_refused(labels: pd.Series, policy: Policy, preservation: Preservation
                 ) -> tuple[pd.Index, dict[str, set], list[str]]:
    """The parents left once classes refused for every transform are dropped.

    ``labels`` is each candidate parent's class (as text), by id. Returns the
    kept ids, the refused classes per transform and the skipped classes.
    """
    refused = {s.transform: preservation.refused_classes(s.transform) for s in policy.steps}
    skipped = sorted(c for c in set(labels) if all(c in r for r in refused.values()))
    kept = labels.index[~labels.isin(skipped).to_numpy()]
    if not len(kept):
        raise LoopmlError("every transform of the policy is refused for every class to augment",
                          hint="see the refusals; choose other transforms with --policy")
    return kept, refused, skipped


def apply_policy(images: torch.Tensor, classes: np.ndarray, steps: Sequence[PolicyStep],
                 refused: Mapping[str, Iterable], *, generator: torch.Generator,
                 applied: dict[str, int] | None = None) -> torch.Tensor:
    """One batch through the policy's steps, each on the rows whose class it may touch.

    ``refused[transform]`` holds the classes a transform is refused for; their
    rows skip that step. ``applied`` (when given) counts the rows each step
    touched. The benchmark times exactly this against a plain Kornia loop.
    """
    for step in steps:
        allowed = torch.from_numpy(~np.isin(classes, list(refused.get(step.transform, ()))))
        if allowed.all():  # the usual case: no copy out and back
            images = apply_transform(step.transform, images, step.magnitude,
                                     generator=generator)
        elif allowed.any():
            mask = allowed.to(images.device)
            images[mask] = apply_transform(step.transform, images[mask], step.magnitude,
                                           generator=generator)
        if applied is not None:
            applied[step.transform] = applied.get(step.transform, 0) + int(allowed.sum())
    return images


def augment(dataset: Dataset, split: Split, iteration: Iteration, policy: Policy, *,
            group: Group | None = None, group_key: str | None = None, factor: int = 1,
            seed: int = 0, preservation: Preservation | None = None,
            progress: Progress | None = None) -> AugmentResult:
    """``factor`` new train examples per parent, each with the policy's allowed transforms.

    Parents are the train examples of the source (not ones augmented or
    synthesized before), of ``group`` when given. Every transform of the
    policy not refused for the parent's class is applied, in order; a class
    refused for every transform gets no examples (``skipped_classes``).
    """
    factor = checked_factor(factor)
    report = progress or no_progress
    fmt = ImageFormat(dataset)
    preservation = preservation or check_preservation(dataset, split, iteration, policy,
                                                      seed=seed, progress=progress)
    train = train_parents(dataset, split, group, group_key)
    labels = pd.Series(dataset.y(train), index=train).astype(str)
    train, refused, skipped = drop_refused(labels, policy, preservation)
    parents = train.repeat(factor)
    classes = labels.loc[parents].to_numpy()
    generator = torch.Generator().manual_seed(seed)
    device = augment_device()
    applied = dict.fromkeys(policy.transforms, 0)
    frames = []
    for start in range(0, len(parents), BATCH):
        chunk = parents[start:start + BATCH]
        report(f"augmenting {len(parents)} examples", start, len(parents))
        images = fmt.load(chunk).to(device)
        images = apply_policy(images, classes[start:start + BATCH], policy.steps, refused,
                              generator=generator, applied=applied)
        frames.append(fmt.rows(images.cpu(), chunk))
    report("augmented", len(parents), len(parents))
    return AugmentResult(policy, preservation, pd.concat(frames, ignore_index=True),
                         [str(p) for p in parents], factor, seed, group_key, applied,
                         [class_value(dataset, c) for c in skipped])
