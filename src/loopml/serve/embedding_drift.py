"""Drift of text and image inputs, tested in a pretrained backbone's embedding space.

A text column or a set of images has no quantiles or levels to compare, but
the backbones of :mod:`loopml.models.backbones` map each example to a vector
in which similar examples lie close (MiniLM for text, EfficientNet-Lite0 for
images). So ``loopml deploy`` embeds a seeded sample of the run's train rows
(at most :data:`REFERENCE_ROWS`) per text column and for the images (an
image column, or a pixel table such as digits through the scope's
``data.image_shape``) and stores the vectors (float16) in
``.loopml/deployments/<version>/reference_embeddings.npz``; ``reference.json``
says per input which backbone, input size and array made them.

The monitor embeds a seeded sample of each window's rows (at most
:data:`WINDOW_ROWS`, so a window costs seconds whatever its size) with the
same backbone and runs a **classifier two-sample test**: a logistic
regression (on features standardised by the reference) learns to tell the
reference vectors from the window's; its 5-fold cross-validated scores give
an AUC. If the window comes from the training distribution no classifier
can beat chance, so the effect is ``AUC - 0.5`` (0: indistinguishable, 0.5:
perfectly separated; floor ``monitor.embedding_floor``) and the p-value is
the one-sided Mann-Whitney test of the out-of-fold scores (window above
reference), whose null is exactly "AUC = 0.5". Out-of-fold scores under the
null sit slightly below 0.5 (a model fitted to noise mispredicts held-out
rows), so the test errs on the quiet side. Lopez-Paz and Oquab (2017),
"Revisiting classifier two-sample tests", use the same test with accuracy.

Embeddings are cached in memory by content (:class:`EmbeddingCache`, no
file), so a second deploy or monitor call in one process (a server, the
autopilot, a test session) only encodes rows it has not seen. On a 2-core
CPU: deploying digits embeds 1,000 train images in ~3-4 s (plus ~1.5 s to
load the network once per process); a window of 500 digits takes ~1.5 s
(embedding 64 px images) plus ~0.3 s for the test.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from loopml.atomic import write_bytes_atomic
from loopml.data.dataset import Dataset
from loopml.exceptions import LoopmlError
from loopml.serve.drift import Drift

EMBEDDINGS_FILE = "reference_embeddings.npz"
#: train rows embedded at deploy: the test's power is bound by the window's side (<= 500),
#: and 1,000 digits embed in ~3 s on 2 cores
REFERENCE_ROWS = 1000
WINDOW_ROWS = 500  # rows of one window embedded (a seeded sample when there are more)
MIN_ROWS = 10  # fewer present values in a window: nothing to test
FOLDS = 5
IMAGES = "images"  # the name of a pixel table's images (it has no column of its own)
FILE_IMAGE_SIZE = 96  # image files are embedded at 96 px: 15x faster than 224, enough for drift
REGULARISATION = 0.1  # C of the logistic regression on standardised embeddings


@dataclass(frozen=True)
class EmbeddedInput:
    """One input the monitor compares in a backbone's space: a text column or the images."""

    name: str  # the column, or IMAGES for a pixel table
    modality: str  # "text" | "image"
    columns: tuple[str, ...]  # what the logged rows hold: the column, or every pixel column
    backbone: str  # "minilm" | "efficientnet-lite0"
    input_size: int  # image side in pixels; text: the model's longest input in word pieces
    image_shape: tuple[int, int, int] | None = None  # pixel tables: (C, H, W)
    pixel_scale: float | None = None  # pixel tables: the train table's largest |value|

    @property
    def cache_key(self) -> str:
        """The key transfer learning caches these embeddings under (same model, same size)."""
        from loopml.models.transfer import embedding_cache_key

        return embedding_cache_key(self.modality, self.backbone, size=self.input_size)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["columns"] = list(self.columns)
        out["image_shape"] = list(self.image_shape) if self.image_shape else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EmbeddedInput:
        shape = data.get("image_shape")
        return cls(name=str(data["name"]), modality=str(data["modality"]),
                   columns=tuple(data["columns"]), backbone=str(data["backbone"]),
                   input_size=int(data["input_size"]),
                   image_shape=tuple(int(d) for d in shape) if shape else None,
                   pixel_scale=data.get("pixel_scale"))

    def encode(self, frame: pd.DataFrame, *, cache_dir: str | Path | None = None) -> np.ndarray:
        """Embeddings of ``frame``'s rows that hold this input (rows without it are left out).

        ``cache_dir`` None keeps the vectors in this process's memory only.
        """
        from loopml.models.transfer import EmbeddingCache, image_hashes, text_hashes

        cache = EmbeddingCache(self.cache_key, cache_dir)
        if self.modality == "text":
            from loopml.models.backbones import embed_text

            texts = [str(v) for v in frame[self.name] if v is not None and v == v]
            if not texts:
                return np.zeros((0, 0), dtype=np.float32)
            return cache.get(text_hashes(texts), lambda rows: embed_text(
                [texts[i] for i in rows]))[0]
        from loopml.models.backbones import embed_images

        images = self._images(frame)
        if not len(images):
            return np.zeros((0, 0), dtype=np.float32)
        return cache.get(image_hashes(images), lambda rows: embed_images(
            images[rows], size=self.input_size))[0]

    def _images(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, C, H, W) in [0, 1]: pixel rows scaled as at deploy, or the files read."""
        if self.image_shape is not None:
            pixels = frame.reindex(columns=list(self.columns)).apply(pd.to_numeric,
                                                                   errors="coerce")
            values = pixels.to_numpy(dtype=np.float32, na_value=np.nan)
            values = values[~np.isnan(values).all(axis=1)]  # a row with no pixel at all
            values = np.clip(np.nan_to_num(values) / float(self.pixel_scale or 1.0), 0.0, 1.0)
            return values.reshape(len(values), *self.image_shape)
        return _read_images([v for v in frame[self.name] if isinstance(v, str) and v],
                            side=self.input_size)


@dataclass(frozen=True)
class EmbeddingReference:
    """An input's reference vectors (float32), as the monitor tests against them."""

    input: EmbeddedInput
    vectors: np.ndarray


def embedded_inputs(dataset: Dataset) -> list[EmbeddedInput]:
    """The inputs of ``dataset`` that are tested by embedding: text columns, then the images."""
    from loopml.models.backbones import default_image_size, load_text_backbone

    out = []
    texts = [n for n, kind in dataset.features.items() if kind == "text"]
    if texts:
        length = int(load_text_backbone().max_seq_length)
        out += [EmbeddedInput(n, "text", (n,), "minilm", length) for n in texts]
    files = [n for n, kind in dataset.features.items() if kind == "image"]
    out += [EmbeddedInput(n, "image", (n,), "efficientnet-lite0", FILE_IMAGE_SIZE)
            for n in files]
    if not files and dataset.image_shape is not None:
        columns = list(dataset.features)
        shape = tuple(int(d) for d in dataset.image_shape)
        scale = float(np.nanmax(np.abs(dataset.frame[columns].to_numpy(dtype="float64"))))
        name = IMAGES if IMAGES not in dataset.features else f"{IMAGES} (pixels)"
        out.append(EmbeddedInput(name, "image", tuple(columns), "efficientnet-lite0",
                                 default_image_size(max(shape[1:])), image_shape=shape,
                                 pixel_scale=scale if np.isfinite(scale) and scale > 0 else 1.0))
    return out


def reference_embeddings(dataset: Dataset, ids: pd.Index, *, seed: int,
                         rows: int = REFERENCE_ROWS, cache_dir: str | Path | None = None
                         ) -> list[EmbeddingReference]:
    """Embeddings of a seeded sample of ``ids`` (at most ``rows``) for every embedded input."""
    chosen = ids
    if len(ids) > rows:
        picked = np.random.default_rng(seed).choice(len(ids), rows, replace=False)
        chosen = ids[np.sort(picked)]
    frame = dataset.frame.loc[chosen]
    return [EmbeddingReference(found, found.encode(frame, cache_dir=cache_dir))
            for found in embedded_inputs(dataset)]


def embedding_entries(references: Sequence[EmbeddingReference]) -> dict[str, dict[str, Any]]:
    """reference.json's ``embeddings``: per input, how its vectors were made and where they are.

    Arrays are named ``e0``, ``e1``, ... (column names may hold anything a
    file name in a zip cannot); each entry says which array is its.
    """
    return {found.input.name: {**found.input.to_dict(), "file": EMBEDDINGS_FILE,
                               "array": f"e{i}", "rows": len(found.vectors),
                               "dim": int(found.vectors.shape[1]) if found.vectors.ndim == 2
                               else 0, "dtype": "float16"}
            for i, found in enumerate(references)}


def write_reference_embeddings(folder: Path, references: Sequence[EmbeddingReference]) -> Path:
    """Write the vectors (float16) to ``folder/EMBEDDINGS_FILE``, as :func:`embedding_entries`."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"e{i}": found.vectors.astype(np.float16)
                                   for i, found in enumerate(references)})
    return write_bytes_atomic(folder / EMBEDDINGS_FILE, buffer.getvalue())


def load_reference_embeddings(folder: Path, reference: Mapping[str, Any]
                              ) -> list[EmbeddingReference]:
    """The vectors ``reference["embeddings"]`` names, read from ``folder``."""
    entries = reference.get("embeddings") or {}
    if not entries:
        return []
    path = folder / EMBEDDINGS_FILE
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return [EmbeddingReference(EmbeddedInput.from_dict(entry),
                                       arrays[entry["array"]].astype(np.float32))
                    for entry in entries.values()]
    except (OSError, KeyError, ValueError) as exc:
        raise LoopmlError(f"the reference embeddings {path} cannot be read ({exc})",
                          hint="deploy the run again: 'loopml rollback', then 'loopml deploy "
                               "RUN'") from exc


def embedding_drift(reference: EmbeddingReference, frame: pd.DataFrame, *, seed: int,
                    max_rows: int = WINDOW_ROWS) -> Drift:
    """Drift of one embedded input over one window's rows (``frame``: one column per input)."""
    found = reference.input
    statistic = f"classifier AUC - 0.5 on {found.backbone} embeddings (p: Mann-Whitney)"
    if not set(found.columns) & set(frame.columns):
        return Drift(statistic, float("nan"), 1.0, 0)
    if len(frame) > max_rows:
        picked = np.random.default_rng(seed).choice(len(frame), max_rows, replace=False)
        frame = frame.iloc[np.sort(picked)]
    current = found.encode(frame)
    if len(current) < MIN_ROWS or len(reference.vectors) < MIN_ROWS:
        return Drift(statistic, float("nan"), 1.0, len(current))
    auc, p = classifier_two_sample(reference.vectors, current, seed=seed)
    return Drift(statistic, auc - 0.5, p, len(current))


def classifier_two_sample(reference: np.ndarray, current: np.ndarray, *, seed: int = 0,
                          folds: int = FOLDS) -> tuple[float, float]:
    """(cross-validated AUC of telling ``current`` from ``reference``, one-sided p-value).

    Rows are vectors of one space; the classifier is a class-balanced
    logistic regression on features standardised by the reference. The
    p-value is the Mann-Whitney test of the out-of-fold scores: "current
    rows score higher than reference rows" against "AUC = 0.5".
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    centre, spread = reference.mean(axis=0), reference.std(axis=0) + 1e-6
    X = (np.vstack([reference, current]) - centre) / spread
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    model = LogisticRegression(C=REGULARISATION, max_iter=300, class_weight="balanced")
    scores = cross_val_predict(model, X, y, method="decision_function",
                               cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    test = stats.mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    return float(test.statistic) / (len(current) * len(reference)), float(test.pvalue)


def _read_images(paths: list[str], *, side: int) -> np.ndarray:
    """RGB images from files, ``side`` x ``side``, in [0, 1]; unreadable files are left out."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for path in paths:
        try:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB").resize((side, side)), dtype=np.float32)
        except (OSError, UnidentifiedImageError, ValueError):
            continue
        out.append(rgb.transpose(2, 0, 1) / 255.0)
    return np.stack(out) if out else np.zeros((0, 3, side, side), dtype=np.float32)
