"""Examples as pixel arrays, whatever way the source stores them.

Error analysis looks at images (built-in traits, thumbnails, embeddings)
without a model's preprocessing: a pixel table (``digits``) is reshaped by the
dataset's ``image_shape`` and scaled by the table's maximum; an image column
is read from its files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from loopml.data.dataset import Dataset


def modality(dataset: Dataset) -> str:
    """'image', 'text' or 'tabular': which built-in traits and encoders apply."""
    kinds = set(dataset.features.values())
    if dataset.image_shape is not None or "image" in kinds:
        return "image"
    if "text" in kinds:
        return "text"
    return "tabular"


def image_column(dataset: Dataset) -> str | None:
    return next((n for n, kind in dataset.features.items() if kind == "image"), None)


def text_of(dataset: Dataset, ids: pd.Index) -> pd.Series:
    """The example's text: its text columns joined with spaces."""
    columns = [n for n, kind in dataset.features.items() if kind == "text"]
    frame = dataset.frame.loc[ids, columns].fillna("").astype(str)
    return frame.agg(" ".join, axis=1) if len(columns) > 1 else frame[columns[0]]


def images_of(dataset: Dataset, ids: pd.Index, *, size: int | None = None) -> np.ndarray:
    """(n, C, H, W) float32 in [0, 1].

    ``size`` resizes file images to ``size`` x ``size`` (default: 64, enough to
    see and to measure strokes); pixel tables keep their own shape.
    """
    column = image_column(dataset)
    if column is None:
        if dataset.image_shape is None:
            raise ValueError(f"dataset '{dataset.name}' holds no images")
        pixels = dataset.frame.loc[ids, list(dataset.features)].to_numpy(dtype=np.float32)
        pixels = np.nan_to_num(pixels)
        scale = float(np.abs(dataset.frame[list(dataset.features)].to_numpy()).max()) or 1.0
        return (pixels / scale).reshape(len(ids), *dataset.image_shape)
    side = size or 64
    paths = dataset.frame.loc[ids, column].astype(str).tolist()
    rgb = _any_colour(paths)
    out = np.empty((len(paths), 3 if rgb else 1, side, side), dtype=np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB" if rgb else "L").resize((side, side)),
                             dtype=np.float32) / 255.0
        out[i] = arr.transpose(2, 0, 1) if rgb else arr[None]
    return out


def _any_colour(paths: list[str]) -> bool:
    for path in paths[:: max(1, len(paths) // 50)]:
        with Image.open(path) as img:
            if img.mode not in ("L", "1", "I;16", "I;16B", "I;16L", "I", "F"):
                return True
    return False
