"""Turn a table of typed columns into model input.

Each architecture fits one of these on its training rows only, so cross-
validation and curves never leak statistics from held-out rows. Numeric:
median imputation (with a missing-indicator) and scaling; categorical:
one-hot with rare levels pooled; text: TF-IDF of word uni- and bigrams
(for linear models scaled so a word weighs like a category, see
:class:`TextScaler`); image paths: pixels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from PIL import Image
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

MAX_CATEGORIES = 30
#: the text vocabulary: word uni- and bigrams seen in at least 2 training rows,
#: the most frequent ones first. On the reviews table (modeldata's
#: training_data, ~26,000 such terms) a cap of 20,000 cost no accuracy.
MAX_TEXT_TERMS = 20_000
_WIDE_GRAY = {"I;16", "I;16B", "I;16L", "I", "F"}


def _as_text(frame: pd.DataFrame) -> np.ndarray:
    return frame.astype("string").fillna("__missing__").to_numpy(dtype=object)


def _join_text(frame: pd.DataFrame) -> np.ndarray:
    return frame.fillna("").astype(str).agg(" ".join, axis=1).to_numpy()


class ImageLoader(TransformerMixin, BaseEstimator):
    """Read image files, resize to ``size`` x ``size``, scale to [0, 1], flatten.

    The channel count is fixed at fit time: grayscale when every sampled
    training image is grayscale, RGB otherwise. ``image_shape_`` is (C, H, W).
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size

    def fit(self, X, y=None):
        paths = self._paths(X)
        modes = set()
        for path in paths[:: max(1, len(paths) // 50)]:
            with Image.open(path) as img:
                modes.add(img.mode)
        self.mode_ = "L" if modes <= {"L", "1", *_WIDE_GRAY} else "RGB"
        channels = 1 if self.mode_ == "L" else 3
        self.image_shape_ = (channels, self.size, self.size)
        return self

    def transform(self, X) -> np.ndarray:
        paths = self._paths(X)
        out = np.empty((len(paths), int(np.prod(self.image_shape_))), dtype=np.float32)
        for i, path in enumerate(paths):
            with Image.open(path) as img:
                arr = self._pixels(img)
            out[i] = (arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)).ravel()
        return out

    def _pixels(self, img: Image.Image) -> np.ndarray:
        """[0, 1] floats; 16-bit grayscale is scaled by its own range, not clipped to 8 bits."""
        if self.mode_ == "L" and img.mode in _WIDE_GRAY:
            wide = img.convert("F").resize((self.size, self.size))
            return np.asarray(wide, dtype=np.float32) / 65535.0
        img = img.convert(self.mode_).resize((self.size, self.size))
        return np.asarray(img, dtype=np.float32) / 255.0

    @staticmethod
    def _paths(X) -> list[str]:
        values = X.iloc[:, 0] if isinstance(X, pd.DataFrame) else np.asarray(X).ravel()
        return [str(v) for v in values]


class TextScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Scale TF-IDF rows so that a word present weighs about as much as a category present.

    TF-IDF rows have unit length, spread over every term of the row: with ~85
    terms a review's words are worth ~0.1 each, while a one-hot category or a
    standardized number is worth ~1. The linear family's L2 penalty (``reg``)
    then needs ten times larger word weights, at a hundred times the cost, and
    at its default (reg=1, C=1) it mutes the text: on the reviews table
    (modeldata's training_data, 3 splits) logistic regression scored 0.793 val
    accuracy at C=1 against 0.816 with C tuned by cross-validation, and C from
    3 to 100 all came within 0.01 of that. Multiplying every row by
    sqrt(mean number of terms per training row), ~9 there, puts a typical term
    at ~1 like the other columns, and the default reg at an effective C of ~85.
    """

    def fit(self, X, y=None):
        terms = X.getnnz(axis=1) if sp.issparse(X) else np.count_nonzero(X, axis=1)
        mean_terms = float(np.mean(terms)) if len(terms) else 0.0
        self.scale_ = float(np.sqrt(mean_terms)) if mean_terms > 1 else 1.0
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        check_is_fitted(self, "scale_")
        return X * self.scale_


class PixelScaler(TransformerMixin, BaseEstimator):
    """Scale a table of pixel intensities to [0, 1] by the training maximum."""

    def fit(self, X, y=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
            scale = float(np.nanmax(np.abs(np.asarray(X, dtype=np.float32))))
        self.scale_ = scale if np.isfinite(scale) and scale > 0 else 1.0
        return self

    def transform(self, X) -> np.ndarray:
        return np.nan_to_num(np.asarray(X, dtype=np.float32) / self.scale_)


def table_preprocessor(feature_types: dict[str, str], *, image_size: int = 32,
                       scale_text: bool = False) -> ColumnTransformer:
    """One ColumnTransformer for a mixed table (the input of every table model).

    ``scale_text=True`` adds :class:`TextScaler` after the TF-IDF, for the
    families whose L2 penalty would otherwise mute the text (linear). The MLP
    keeps unit-length rows: scaled, it did no better and less steadily on the
    reviews table (val accuracy 0.795 +- 0.026 over 6 splits, 0.784 +- 0.037
    scaled, one split falling from 0.80 to 0.72); trees split on order, so
    gbt does not care either way (0.773 against 0.771 over 3 splits).
    """
    by_type: dict[str, list[str]] = {}
    for name, kind in feature_types.items():
        by_type.setdefault(kind, []).append(name)
    steps = []
    if by_type.get("numeric"):
        steps.append(("numeric", make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler()), by_type["numeric"]))
    if by_type.get("categorical"):
        steps.append(("categorical", make_pipeline(
            FunctionTransformer(_as_text, feature_names_out="one-to-one"),
            OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES,
                          sparse_output=False)), by_type["categorical"]))
    if by_type.get("text"):
        steps.append(("text", make_pipeline(
            FunctionTransformer(_join_text),
            TfidfVectorizer(max_features=MAX_TEXT_TERMS, ngram_range=(1, 2), sublinear_tf=True,
                            min_df=2),
            *([TextScaler()] if scale_text else [])), by_type["text"]))
    for name in by_type.get("image", []):
        steps.append((f"image:{name}", ImageLoader(image_size), [name]))
    return ColumnTransformer(steps, sparse_threshold=0.3)


def image_preprocessor(feature_types: dict[str, str], *, image_size: int = 32):
    """Input for image models: the one image column, or a table of pixels."""
    images = [n for n, kind in feature_types.items() if kind == "image"]
    if images:
        if len(feature_types) > 1:
            warnings.warn(f"an image model reads only the image column '{images[0]}'; "
                          f"ignoring {[n for n in feature_types if n != images[0]]}",
                          stacklevel=2)
        return ColumnTransformer([("image", ImageLoader(image_size), images[:1])])
    not_numeric = [n for n, kind in feature_types.items() if kind != "numeric"]
    if not_numeric:
        raise ValueError(f"a pixel table must be all numeric, but {not_numeric} are not")
    return ColumnTransformer([("pixels", PixelScaler(), list(feature_types))])


def image_shape_of(preprocessor: ColumnTransformer, fallback) -> tuple[int, int, int]:
    """(C, H, W) of what ``image_preprocessor`` produces once fitted."""
    loader = preprocessor.named_transformers_.get("image")
    if loader is not None:
        return loader.image_shape_
    if fallback is None:
        raise ValueError("a pixel table needs image_shape=(C, H, W) to be read as images")
    return tuple(fallback)
