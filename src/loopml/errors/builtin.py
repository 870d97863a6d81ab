"""Built-in traits per modality: what a reviewer would check first.

Image and text traits are relative: "low contrast" means among the lowest
tenth of contrast in the examples analysed, so they mean the same thing on 8x8
digits and on photos. The threshold is stated in each trait's description,
so a reader knows what "thin strokes" meant for this data.

Each function returns ``{name: (mask, description)}`` for the rows given.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

TAIL = 0.10  # the share of examples a relative trait marks
URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)

BuiltinTraits = dict[str, tuple[np.ndarray, str]]


def _low(values: np.ndarray, name: str, what: str) -> tuple[np.ndarray, str]:
    cut = float(np.quantile(values, TAIL))
    return values <= cut, f"{name}: {what} in the lowest {TAIL:.0%} (<= {cut:.3g})"


def _high(values: np.ndarray, name: str, what: str) -> tuple[np.ndarray, str]:
    cut = float(np.quantile(values, 1 - TAIL))
    return values >= cut, f"{name}: {what} in the highest {TAIL:.0%} (>= {cut:.3g})"


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


def image_traits(images: np.ndarray) -> BuiltinTraits:
    """low_contrast, blurry, thin_strokes, thick_strokes, off_centre."""
    m = image_measures(images)
    return {
        "low_contrast": _low(m["contrast"].to_numpy(), "low_contrast", "pixel std"),
        "blurry": _low(m["sharpness"].to_numpy(), "blurry", "Laplacian variance"),
        "thin_strokes": _low(m["ink"].to_numpy(), "thin_strokes", "ink share of the image"),
        "thick_strokes": _high(m["ink"].to_numpy(), "thick_strokes", "ink share of the image"),
        "off_centre": _high(m["offset"].to_numpy(), "off_centre",
                            "distance of the ink's centre from the image centre"),
    }


def text_traits(texts: pd.Series) -> BuiltinTraits:
    """short_text, long_text, has_url, has_digits, all_caps."""
    texts = texts.fillna("").astype(str)
    lengths = texts.str.len().to_numpy()
    letters = texts.str.count(r"[A-Za-z]").to_numpy()
    upper = texts.str.count(r"[A-Z]").to_numpy()
    return {
        "short_text": _low(lengths, "short_text", "length in characters"),
        "long_text": _high(lengths, "long_text", "length in characters"),
        "has_url": (texts.str.contains(URL).to_numpy(), "has_url: contains a web address"),
        "has_digits": (texts.str.contains(r"\d").to_numpy(), "has_digits: contains a digit"),
        "all_caps": ((letters >= 5) & (upper >= 0.8 * np.maximum(letters, 1)),
                     "all_caps: at least 80% of its letters are upper case"),
    }


def tabular_traits(frame: pd.DataFrame, train: pd.DataFrame, features: dict[str, str]
                   ) -> BuiltinTraits:
    """has_missing, outside_training_range (a number beyond train's range, or a new level)."""
    columns = [c for c, kind in features.items() if kind in ("numeric", "categorical")]
    missing = frame[columns].isna().any(axis=1).to_numpy() if columns else \
        np.zeros(len(frame), bool)
    outside = np.zeros(len(frame), bool)
    for column in columns:
        values = frame[column]
        if features[column] == "numeric":
            lo, hi = train[column].min(), train[column].max()
            outside |= ((values < lo) | (values > hi)).fillna(False).to_numpy()
        else:
            seen = set(train[column].dropna().astype(str))
            outside |= (values.notna() & ~values.astype(str).isin(seen)).to_numpy()
    return {
        "has_missing": (missing, "has_missing: a feature value is missing"),
        "outside_training_range": (outside, "outside_training_range: a number outside the "
                                   "range seen in training, or a category never seen there"),
    }
