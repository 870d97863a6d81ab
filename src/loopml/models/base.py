"""The Architecture contract every model family follows.

An architecture is a scikit-learn estimator (so ``clone``, ``get_params`` and
``set_params`` work and one sweep engine serves every family) with two knobs
that mean the same thing everywhere:

- ``size``: capacity; larger fits more complex functions.
- ``reg``: regularization strength; larger constrains more, 0 means none.

and one switch: ``balance`` weights each class inversely to its frequency in
the training rows, so a rare class counts as much as a common one in the loss
(classification only; regression ignores it).

It takes a raw table (a DataFrame of typed feature columns) and owns its
preprocessing, fitted on training rows only. Subclasses implement
``_fit_model``, ``_predict_proba_model`` / ``_predict_model`` and, for image
models, ``_make_preprocessor``.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from loopml.data.infer import infer_feature_type
from loopml.models.features import table_preprocessor

TASKS = ("classification", "regression")


class Architecture(BaseEstimator):
    """Base class; see the module docstring for the contract."""

    #: registry name
    name: ClassVar[str] = ""
    #: one line a user reads in ``loopml architectures``
    summary: ClassVar[str] = ""
    #: what ``size`` and ``reg`` mean for this family
    knobs: ClassVar[str] = ""
    #: the tasks the family supports
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: "table" (any typed columns) or "image" (needs images or a pixel table)
    input_kind: ClassVar[str] = "table"
    #: capacities a validation curve sweeps, smallest first
    size_grid: ClassVar[tuple[float, ...]] = ()
    #: regularization strengths a validation curve sweeps (log-spaced)
    reg_grid: ClassVar[tuple[float, ...]] = tuple(np.logspace(-4, 2, 7))

    # Subclasses list every parameter in their own __init__ (sklearn's rule);
    # these are the ones all of them share.
    task: str
    size: float
    reg: float
    balance: bool
    features: dict | None
    image_shape: tuple | None
    image_size: int
    random_state: int

    # ------------------------------------------------------------ sklearn API

    def fit(self, X, y, *, eval_set=None):
        """Fit preprocessing and model on (X, y).

        ``eval_set=(X_val, y_val)`` is used for early stopping by the families
        that stop early; without it they hold out a seeded share of the
        training rows (loopml itself never passes its val part).
        """
        self._check_params()
        X = self._as_frame(X, fitting=True)
        y = self._check_target(y, n_rows=len(X))
        y_enc = self._encode_target(y, fitting=True)
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.feature_types_ = self._feature_types(X)
        _refuse_infinity(X, self.feature_types_)
        self.preprocessor_ = self._make_preprocessor()
        Xt = self.preprocessor_.fit_transform(X[list(self.feature_types_)], y_enc)
        eval_t = None
        if eval_set is not None:
            X_val, y_val = eval_set
            y_val_enc = self._encode_target(np.asarray(y_val), fitting=False)
            keep = y_val_enc >= 0 if self.task == "classification" else slice(None)
            if self.task == "classification" and not keep.all():
                warnings.warn(f"{int((~keep).sum())} eval_set rows have classes unseen in "
                              "training; they are left out of early stopping", stacklevel=2)
            eval_t = (self._transform(self._as_frame(X_val))[keep], y_val_enc[keep])
        self._fit_model(Xt, y_enc, eval_t)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "preprocessor_")
        if self.task == "classification":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return np.asarray(self._predict_model(self._transform(self._as_frame(X))), dtype=float)

    @available_if(lambda self: self.task == "classification")
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_`` (classification only)."""
        check_is_fitted(self, "preprocessor_")
        return np.asarray(self._predict_proba_model(self._transform(self._as_frame(X))))

    def score(self, X, y) -> float:
        """Accuracy for classification, R² for regression (sklearn's convention)."""
        from sklearn.metrics import accuracy_score, r2_score

        pred = self.predict(X)
        return float(accuracy_score(y, pred) if self.task == "classification"
                     else r2_score(y, pred))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # numeric columns are imputed, with an indicator
        if self.task == "classification":
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags()
        else:
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
        return tags

    # ------------------------------------------------------------ for subclasses

    def _make_preprocessor(self):
        return table_preprocessor(self.feature_types_, image_size=self.image_size)

    def _fit_model(self, Xt, y, eval_set) -> None:
        raise NotImplementedError

    def _predict_proba_model(self, Xt) -> np.ndarray:
        raise NotImplementedError

    def _predict_model(self, Xt) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------ helpers

    @property
    def n_classes_(self) -> int:
        return len(self.classes_)

    def _check_params(self) -> None:
        if self.task not in self.tasks:
            raise ValueError(f"architecture '{self.name}' does not support task "
                             f"'{self.task}'; it supports {', '.join(self.tasks)}")
        if self.size is None or self.size <= 0:
            raise ValueError(f"size must be > 0, got {self.size!r}")
        if self.reg is None or self.reg < 0:
            raise ValueError(f"reg must be >= 0, got {self.reg!r}")
        if not isinstance(self.balance, bool | np.bool_):
            raise ValueError(f"balance must be True or False, got {self.balance!r}")

    def _as_frame(self, X, *, fitting: bool = False) -> pd.DataFrame:
        """X as a DataFrame with string column names, after the checks sklearn expects."""
        if sp.issparse(X):
            raise TypeError("Sparse data was passed for X, but dense data is required: "
                            "loopml models take a table of typed columns (they build their "
                            "own sparse TF-IDF features from text columns)")
        if isinstance(X, pd.DataFrame):
            frame = X if all(isinstance(c, str) for c in X.columns) else \
                X.set_axis([str(c) for c in X.columns], axis=1)
            return self._check_width(frame, fitting=fitting, by_name=True)
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"Expected a 2-dimensional table, got an array of shape "
                             f"{arr.shape}. Reshape your data either using "
                             "array.reshape(-1, 1) if it has a single feature or "
                             "array.reshape(1, -1) if it contains a single sample.")
        names = None if fitting else getattr(self, "feature_names_in_", None)
        columns = list(names) if names is not None and len(names) == arr.shape[1] else \
            [f"x{i}" for i in range(arr.shape[1])]
        if arr.dtype == object:
            _refuse_odd_objects(arr, columns)
        frame = pd.DataFrame(arr, columns=columns)
        return self._check_width(frame.infer_objects() if arr.dtype == object else frame,
                                 fitting=fitting, by_name=False)

    def _check_width(self, frame: pd.DataFrame, *, fitting: bool, by_name: bool
                     ) -> pd.DataFrame:
        """Refuse empty tables, and arrays whose width differs from the fitted one.

        A DataFrame is read by column name (extra columns are fine, missing
        ones are named by ``_transform``); a plain array only by position.
        """
        if frame.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={frame.shape}) while a "
                             "minimum of 1 is required.")
        expected = getattr(self, "n_features_in_", None)
        if not fitting and not by_name and expected is not None and \
                frame.shape[1] != expected:
            raise ValueError(f"X has {frame.shape[1]} features, but {type(self).__name__} "
                             f"is expecting {expected} features as input.")
        if fitting and len(frame) < 2:
            raise ValueError(f"Found {len(frame)} sample(s) (n_samples = {len(frame)}); "
                             "fitting needs at least 2.")
        return frame

    def _check_target(self, y, *, n_rows: int) -> np.ndarray:
        y = column_or_1d(np.asarray(y), warn=True)
        if len(y) != n_rows:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"X has {n_rows} rows and y has {len(y)}")
        if self.task == "classification":
            check_classification_targets(y)
            return y
        try:
            values = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("a regression target must be numeric") from None
        if not np.isfinite(values).all():
            raise ValueError("Input y contains NaN or infinity; drop those rows first.")
        return values

    def _feature_types(self, X: pd.DataFrame) -> dict[str, str]:
        if self.features:
            missing = [c for c in self.features if c not in X.columns]
            if missing:
                raise ValueError(f"X lacks feature columns {missing}")
            return dict(self.features)
        return {str(c): infer_feature_type(X[c]) for c in X.columns}

    def _encode_target(self, y: np.ndarray, *, fitting: bool) -> np.ndarray:
        if self.task == "regression":
            return y.astype(np.float64)
        if fitting:
            self.classes_, encoded = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError(f"y holds one class ({self.classes_[0]!r}); classification "
                                 "needs at least two classes")
            return encoded
        index = {cls: i for i, cls in enumerate(self.classes_.tolist())}
        return np.array([index.get(v, -1) for v in y.tolist()], dtype=np.int64)

    def feature_space(self, X: Any) -> Any:
        """``X`` as the fitted model sees it, after its own preprocessing.

        The space the model separates classes in: ``loopml collect`` measures
        which pool rows are near the failing val examples there.
        """
        return self._transform(self._as_frame(X))

    def _transform(self, X: pd.DataFrame):
        missing = [c for c in self.feature_types_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the feature column(s) {missing} the model was fitted "
                             f"on; it has {list(X.columns)[:20]}")
        return self.preprocessor_.transform(X[list(self.feature_types_)])


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Weight of each class code 0..n_classes-1: ``n / (k * count)``, scikit-learn's "balanced".

    Computed from the rows the model trains on (never from early-stopping or
    val rows), so every class carries the same total weight there. A class
    absent from those rows gets weight 1.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.ones(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _refuse_odd_objects(arr: np.ndarray, columns: list[str]) -> None:
    """An object array may hold strings, numbers and missing values, nothing else."""
    for j, name in enumerate(columns):
        for value in arr[:, j]:
            if value is not None and not isinstance(value, str | int | float | bool | np.generic):
                raise TypeError(f"argument must be a string or a number, not "
                                f"'{type(value).__name__}' (column {name})")


def _refuse_infinity(X: pd.DataFrame, feature_types: dict[str, str]) -> None:
    """Missing values are imputed; an infinite one is a mistake to name, not to fit on."""
    for name, kind in feature_types.items():
        if kind == "numeric" and pd.api.types.is_numeric_dtype(X[name]):
            values = X[name].to_numpy(dtype=float, na_value=np.nan)
            if np.isinf(values).any():
                raise ValueError(f"Input X contains infinity in column '{name}' "
                                 f"({int(np.isinf(values).sum())} value(s)); replace them "
                                 "with a number or leave them missing")
