"""Rows to apply groups to: a frame read with a dataset's column roles.

Membership needs the rows' table (features, metadata, maybe the label and a
prediction) and, only when a group asks, their images, texts or encoder
embeddings. :class:`Rows` holds the table and computes the rest lazily, at
most once per view: the rows of a :class:`~loopml.data.dataset.Dataset`
(``Rows.of(dataset, ids)``) or a frame with the same columns, such as a pool
of unlabelled rows or logged production requests
(``Rows.from_frame(frame, like=dataset)``).

Images of a pixel table are scaled by the *dataset's* largest pixel value, so
a pool's images are measured on the same scale as the rows the built-in
traits were fitted on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import ID_NAME, Dataset
from loopml.data.images import image_column, images_of, modality, text_of
from loopml.exceptions import DataError


def origin_column(dataset: Dataset) -> str:
    """The column that holds each row's origin in a view of ``dataset``'s rows.

    "origin" (source / augment / synth / collect), or "loopml:origin" when the
    user's data already has a column of that name.
    """
    taken = set(map(str, dataset.frame.columns))
    return "origin" if "origin" not in taken else "loopml:origin"


class Rows:
    """A view of rows (indexed by id) that groups are applied to; see the module doc.

    Parameters
    ----------
    frame : DataFrame
        One row per example, indexed by id, with the columns of ``like``
        (the label may be missing: a pool has none).
    like : Dataset
        The dataset whose column roles (features, target, task, image shape)
        the rows follow.
    predictions : array-like, optional
        The model's prediction per row, for confused-pair groups.
    """

    def __init__(self, frame: pd.DataFrame, like: Dataset, *,
                 predictions: np.ndarray | None = None) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame must be a pandas DataFrame, but it is "
                            f"{type(frame).__name__}")
        if predictions is not None and len(predictions) != len(frame):
            raise ValueError(f"predictions must have one value per row, but there are "
                             f"{len(frame)} rows and {len(predictions)} predictions")
        self.frame, self.like = frame, like
        self._predictions = None if predictions is None else np.asarray(predictions)
        self._cache: dict[Any, Any] = {}
        self._of_like = False  # rows of ``like`` itself: its own readers apply

    @classmethod
    def of(cls, dataset: Dataset, ids: pd.Index | list[str], *,
           predictions: np.ndarray | None = None) -> Rows:
        """The rows ``ids`` of ``dataset`` (every id must be one of its ids)."""
        ids = pd.Index(ids)
        unknown = ids.difference(dataset.ids)
        if len(unknown):
            raise DataError(f"{len(unknown)} id(s) are not examples of dataset "
                            f"'{dataset.name}', e.g. '{unknown[0]}'")
        frame = dataset.frame.loc[ids]
        column = origin_column(dataset)
        if column not in frame.columns:  # where each row comes from: slices may name it
            frame = frame.assign(**{column: dataset.origin.loc[ids].astype(str).to_numpy()})
        rows = cls(frame, dataset, predictions=predictions)
        rows._of_like = True
        return rows

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, like: Dataset, id_column: str | None = None,
                   predictions: np.ndarray | None = None) -> Rows:
        """Rows of a frame with ``like``'s columns (a pool, logged requests).

        ``id_column`` (if the frame has it) becomes the index; otherwise the
        frame's own index is the rows' ids.
        """
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"frame must be a pandas DataFrame, but it is "
                            f"{type(frame).__name__}")
        if id_column is not None and id_column in frame.columns:
            frame = frame.set_index(frame[id_column].astype(str).rename(ID_NAME))
        if not frame.index.is_unique:
            repeated = frame.index[frame.index.duplicated()].unique()[:3].tolist()
            raise DataError(f"the rows' ids repeat: {repeated}",
                            hint="give each row its own id (or drop the repeats)")
        return cls(frame, like, predictions=predictions)

    # ------------------------------------------------------------ the table

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> pd.Index:
        return self.frame.index

    @property
    def target(self) -> str:
        return self.like.target

    @property
    def modality(self) -> str:
        return modality(self.like)

    @property
    def has_text(self) -> bool:
        return self.modality == "text"

    def readable(self, column: str) -> pd.Series:
        """A column as slices read it: class labels as text, anything else as it is."""
        values = self.frame[column]
        if column == self.like.target and self.like.task == "classification":
            return values.astype(str)
        return values

    def labels(self) -> np.ndarray:
        """The label of every row; a clear error when the rows carry none."""
        if self.like.target not in self.frame.columns:
            raise DataError(f"these rows have no label column '{self.like.target}'",
                            hint="groups of confused pairs need labelled rows")
        return self.frame[self.like.target].to_numpy()

    def predicted(self, *, why: str) -> np.ndarray:
        if self._predictions is None:
            raise DataError(f"{why} needs the model's prediction for every row, and these "
                            "rows carry none", hint="pass predictions= when building the Rows")
        return self._predictions

    def cached_mask(self, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The mask of group ``key`` on these rows, computed at most once."""
        return self.cached(("mask", key), compute)

    def cached(self, name: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, computed once per rows view and ``name``."""
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    # ------------------------------------------------------------ inputs

    def images(self) -> np.ndarray:
        """(n, C, H, W) float32 in [0, 1], as :func:`loopml.data.images.images_of` reads them."""
        return self.cached("images", self._read_images)

    def _read_images(self) -> np.ndarray:
        like = self.like
        if self._of_like:
            return images_of(like, self.ids)
        if image_column(like) is not None:
            return images_of(dataclasses.replace(like, frame=self.frame), self.ids)
        if like.image_shape is None:
            raise DataError(f"dataset '{like.name}' holds no images")
        columns = list(like.features)
        missing = [c for c in columns if c not in self.frame.columns]
        if missing:
            raise DataError(f"these rows lack {len(missing)} pixel column(s) of the images, "
                            f"e.g. '{missing[0]}'", hint="give every feature column")
        pixels = np.nan_to_num(self.frame[columns].to_numpy(dtype=np.float32))
        scale = float(np.abs(like.frame[columns].to_numpy()).max()) or 1.0
        return (pixels / scale).reshape(len(self), *like.image_shape)

    def texts(self) -> pd.Series:
        """Each row's text: its text columns joined with spaces."""
        return self.cached("texts", lambda: text_of(
            self.like if self._of_like else dataclasses.replace(self.like, frame=self.frame),
            self.ids))

    def holds_word(self, word: str) -> np.ndarray:
        """Whether each row's text holds ``word`` (tokenised as the slice search did)."""
        from sklearn.feature_extraction.text import CountVectorizer

        def compute() -> np.ndarray:
            texts = self.texts().fillna("").astype(str)
            counts = CountVectorizer(binary=True, vocabulary=[word]).transform(texts)
            return counts.toarray()[:, 0].astype(bool)

        return self.cached(("word", word), compute)

    def embeddings(self, encoder: str, image_size: int | None) -> np.ndarray:
        """The rows in a pretrained encoder's space: "minilm" (text), "efficientnet-lite0"."""
        from loopml.models.backbones import embed_images, embed_text

        def compute() -> np.ndarray:
            if encoder == "minilm":
                return embed_text(self.texts().fillna("").astype(str).tolist())
            if encoder == "efficientnet-lite0":
                return embed_images(self.images(), size=image_size)
            raise DataError(f"unknown encoder '{encoder}'",
                            hint="known: minilm, efficientnet-lite0")

        return self.cached(("embeddings", encoder, image_size), compute)

    def inputs(self) -> dict[str, Callable[[], Any]]:
        """What a user's trait function may ask for by naming a parameter."""
        out: dict[str, Callable[[], Any]] = {}
        if self.modality == "image":
            out["images"] = self.images
        if self.modality == "text":
            out["texts"] = self.texts
        return out
