"""Built-in traits per modality, with cut-offs fitted once on the train part.

What a reviewer checks first: images that are low in contrast, blurry, thin
or thick in stroke, off centre; texts that are short, long, hold a web
address or digits, or shout; table rows with a missing value or a value
outside what training saw.

"Low contrast" means "among the lowest tenth of contrast *in the train
part*": the cut-off is measured on train once (:func:`fit_builtin_traits`)
and stored, so it means the same thing on 8x8 digits and on photos, and a
val row is low-contrast or not whether it is scored alone, among train rows,
or in a pool of new images next month. The cut-off is stated in each trait's
description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.exceptions import DataError
from loopml.groups.group import Group, TraitGroup, TraitSource

if TYPE_CHECKING:
    from pathlib import Path

    from loopml.groups.rows import Rows

TAIL = 0.10  # the share of train examples a relative trait marks
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


class Measure(StrEnum):
    """A number measured per row, that a threshold trait cuts."""

    CONTRAST = "contrast"  # pixel std
    SHARPNESS = "sharpness"  # variance of the Laplacian
    INK = "ink"  # share of pixels that differ from the background
    OFFSET = "offset"  # distance of the ink's centre from the image centre
    LENGTH = "length"  # characters of text

    @property
    def what(self) -> str:
        return {"contrast": "pixel std", "sharpness": "Laplacian variance",
                "ink": "ink share of the image",
                "offset": "distance of the ink's centre from the image centre",
                "length": "length in characters"}[self.value]


class Side(StrEnum):
    LOW = "low"  # at or below the cut: the train part's lowest TAIL
    HIGH = "high"  # at or above the cut: the train part's highest TAIL


def image_measures(images: np.ndarray) -> pd.DataFrame:
    """Per-image contrast, sharpness, ink share and ink centroid offset.

    Ink is what differs from the background (the median of the border pixels)
    by more than half the image's largest difference, so the measures work for
    dark-on-light and light-on-dark images alike.
    """
    gray = images.mean(axis=1)  # (n, H, W)
    n, h, w = gray.shape
    border = np.concatenate([gray[:, 0, :], gray[:, -1, :], gray[:, :, 0], gray[:, :, -1]],
                            axis=1)
    background = np.median(border, axis=1)[:, None, None]
    diff = np.abs(gray - background)
    peak = diff.reshape(n, -1).max(axis=1)
    ink = diff > 0.5 * np.maximum(peak, 1e-6)[:, None, None]
    weight = diff / np.maximum(diff.reshape(n, -1).sum(axis=1), 1e-9)[:, None, None]
    rows, cols = np.mgrid[0:h, 0:w]
    cy = (weight * rows).sum(axis=(1, 2))
    cx = (weight * cols).sum(axis=(1, 2))
    offset = np.hypot((cy - (h - 1) / 2) / h, (cx - (w - 1) / 2) / w)
    lap = (-4 * gray[:, 1:-1, 1:-1] + gray[:, :-2, 1:-1] + gray[:, 2:, 1:-1]
           + gray[:, 1:-1, :-2] + gray[:, 1:-1, 2:]) if h > 2 and w > 2 else gray
    return pd.DataFrame({
        "contrast": gray.reshape(n, -1).std(axis=1),
        "sharpness": lap.reshape(n, -1).var(axis=1),
        "ink": np.where(peak > 1e-6, ink.reshape(n, -1).mean(axis=1), 0.0),
        "offset": np.where(peak > 1e-6, offset, 0.0),
    })


def measure(rows: Rows, what: Measure) -> np.ndarray:
    """``what`` for every row (image measures are computed once per rows view)."""
    if what is Measure.LENGTH:
        return rows.texts().fillna("").astype(str).str.len().to_numpy()
    frame = rows.cached("image_measures", lambda: image_measures(rows.images()))
    return frame[str(what)].to_numpy()


@dataclass(frozen=True)
class ThresholdTrait(TraitGroup):
    """A measure at or beyond a cut-off fitted on train: ``low_contrast``, ``long_text``."""

    trait_name: str
    measure: Measure
    side: Side
    cut: float
    n_fitted: int  # train rows the cut-off was measured on

    type_name = "threshold"
    source = TraitSource.BUILTIN

    @property
    def name(self) -> str:
        return self.trait_name

    @property
    def modality(self) -> str:
        return "text" if self.measure is Measure.LENGTH else "image"

    @property
    def description(self) -> str:
        where, sign = ("lowest", "<=") if self.side is Side.LOW else ("highest", ">=")
        return (f"{self.name}: {self.measure.what} in the {where} {TAIL:.0%} of train "
                f"({sign} {self.cut:.3g})")

    def _members(self, rows: Rows) -> np.ndarray:
        values = measure(rows, self.measure)
        return values <= self.cut if self.side is Side.LOW else values >= self.cut

    def _fields(self) -> dict[str, Any]:
        return {"measure": str(self.measure), "side": str(self.side), "cut": self.cut,
                "n_fitted": self.n_fitted}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> ThresholdTrait:
        return cls(data["name"], Measure(data["measure"]), Side(data["side"]),
                   float(data["cut"]), int(data["n_fitted"]))


class TextRule(StrEnum):
    URL = "has_url"
    DIGITS = "has_digits"
    ALL_CAPS = "all_caps"


_RULE_TEXT = {TextRule.URL: "contains a web address", TextRule.DIGITS: "contains a digit",
              TextRule.ALL_CAPS: "at least 80% of its letters are upper case"}


@dataclass(frozen=True)
class TextRuleTrait(TraitGroup):
    """A fixed rule on a text (nothing to fit): has_url, has_digits, all_caps."""

    rule: TextRule

    type_name = "text_rule"
    source = TraitSource.BUILTIN
    modality = "text"

    @property
    def name(self) -> str:
        return str(self.rule)

    @property
    def description(self) -> str:
        return f"{self.name}: {_RULE_TEXT[self.rule]}"

    def _members(self, rows: Rows) -> np.ndarray:
        texts = rows.texts().fillna("").astype(str)
        if self.rule is TextRule.URL:
            return texts.str.contains(URL).to_numpy(dtype=bool)
        if self.rule is TextRule.DIGITS:
            return texts.str.contains(r"\d").to_numpy(dtype=bool)
        letters = texts.str.count(r"[A-Za-z]").to_numpy()
        upper = texts.str.count(r"[A-Z]").to_numpy()
        return (letters >= 5) & (upper >= 0.8 * np.maximum(letters, 1))

    def _fields(self) -> dict[str, Any]:
        return {"rule": str(self.rule)}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> TextRuleTrait:
        return cls(TextRule(data["rule"]))


@dataclass(frozen=True)
class MissingTrait(TraitGroup):
    """has_missing: one of the feature columns (as fitted) is missing."""

    columns: tuple[str, ...]

    type_name = "missing"
    source = TraitSource.BUILTIN
    modality = "tabular"

    @property
    def name(self) -> str:
        return "has_missing"

    @property
    def description(self) -> str:
        return "has_missing: a feature value is missing"

    def _members(self, rows: Rows) -> np.ndarray:
        if not self.columns:
            return np.zeros(len(rows), bool)
        return rows.frame[_present(rows, self.columns, self.name)].isna().any(axis=1) \
            .to_numpy()

    def _fields(self) -> dict[str, Any]:
        return {"columns": list(self.columns)}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> MissingTrait:
        return cls(tuple(data["columns"]))


@dataclass(frozen=True)
class RangeTrait(TraitGroup):
    """outside_training_range: a number beyond train's [min, max], or a level train never had."""

    ranges: dict[str, tuple[float, float]]
    levels: dict[str, tuple[str, ...]]
    n_fitted: int

    type_name = "range"
    source = TraitSource.BUILTIN
    modality = "tabular"

    @property
    def name(self) -> str:
        return "outside_training_range"

    @property
    def description(self) -> str:
        return ("outside_training_range: a number outside the range seen in training, or a "
                "category never seen there")

    def _members(self, rows: Rows) -> np.ndarray:
        frame = rows.frame
        _present(rows, [*self.ranges, *self.levels], self.name)
        outside = np.zeros(len(rows), bool)
        for column, (lo, hi) in self.ranges.items():
            values = pd.to_numeric(frame[column], errors="coerce")
            outside |= ((values < lo) | (values > hi)).fillna(False).to_numpy(dtype=bool)
        for column, seen in self.levels.items():
            values = frame[column]
            outside |= (values.notna() & ~values.astype(str).isin(seen)).to_numpy(dtype=bool)
        return outside

    def _fields(self) -> dict[str, Any]:
        return {"ranges": {c: list(r) for c, r in self.ranges.items()},
                "levels": {c: list(v) for c, v in self.levels.items()},
                "n_fitted": self.n_fitted}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> RangeTrait:
        return cls({c: (float(lo), float(hi)) for c, (lo, hi) in data["ranges"].items()},
                   {c: tuple(map(str, v)) for c, v in data["levels"].items()},
                   int(data["n_fitted"]))


def _present(rows: Rows, columns: list[str] | tuple[str, ...], trait: str) -> list[str]:
    missing = [c for c in columns if c not in rows.frame.columns]
    if missing:
        raise DataError(f"built-in trait '{trait}' reads column '{missing[0]}', which these "
                        "rows do not have", hint="give the rows every feature column")
    return list(columns)


# ---------------------------------------------------------------- fitting on train


IMAGE_TRAITS = (("low_contrast", Measure.CONTRAST, Side.LOW),
                ("blurry", Measure.SHARPNESS, Side.LOW),
                ("thin_strokes", Measure.INK, Side.LOW),
                ("thick_strokes", Measure.INK, Side.HIGH),
                ("off_centre", Measure.OFFSET, Side.HIGH))
TEXT_TRAITS = (("short_text", Measure.LENGTH, Side.LOW), ("long_text", Measure.LENGTH, Side.HIGH))


def builtin_names(modality: str) -> tuple[str, ...]:
    """The names of the built-in traits of a modality, in the order they are reported."""
    if modality == "image":
        return tuple(name for name, _, _ in IMAGE_TRAITS)
    if modality == "text":
        return (*(name for name, _, _ in TEXT_TRAITS), *(str(r) for r in TextRule))
    return ("has_missing", "outside_training_range")


def fit_builtin_traits(train: Rows) -> list[Group]:
    """The modality's built-in traits, with their cut-offs measured on ``train``.

    ``train`` should be rows of the train part (a seeded sample of it for a
    large image set); the quantile cut-offs are its lowest / highest
    :data:`TAIL`, the ranges and levels its extremes.
    """
    kind = train.modality
    if kind in ("image", "text"):
        specs = IMAGE_TRAITS if kind == "image" else TEXT_TRAITS
        out: list[Group] = []
        for name, what, side in specs:
            values = measure(train, what)
            cut = float(np.quantile(values, TAIL if side is Side.LOW else 1 - TAIL))
            out.append(ThresholdTrait(name, what, side, cut, len(train)))
        return out + ([TextRuleTrait(rule) for rule in TextRule] if kind == "text" else [])
    like, frame = train.like, train.frame
    columns = [c for c, k in like.features.items() if k in ("numeric", "categorical")]
    ranges, levels = {}, {}
    for column in columns:
        if like.features[column] == "numeric":
            lo, hi = pd.to_numeric(frame[column], errors="coerce").agg(["min", "max"])
            if np.isfinite(lo) and np.isfinite(hi):
                ranges[column] = (float(lo), float(hi))
        else:
            levels[column] = tuple(sorted(set(frame[column].dropna().astype(str))))
    return [MissingTrait(tuple(columns)), RangeTrait(ranges, levels, len(train))]
