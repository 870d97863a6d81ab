"""The Architecture contract every model family follows.

An architecture is a scikit-learn estimator (so ``clone``, ``get_params`` and
``set_params`` work and one sweep engine serves every family) with two knobs
that mean the same thing everywhere:

- ``size``: capacity; larger fits more complex functions.
- ``reg``: regularization strength; larger constrains more, 0 means none.

It takes a raw table (a DataFrame of typed feature columns) and owns its
preprocessing, fitted on training rows only. Subclasses implement
``_fit_model``, ``_predict_proba_model`` / ``_predict_model`` and, for image
models, ``_make_preprocessor``.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import ClassifierTags, RegressorTags

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
    features: dict | None
    image_shape: tuple | None
    image_size: int
    random_state: int

    # ------------------------------------------------------------ sklearn API

    def fit(self, X, y, *, eval_set=None):
        """Fit preprocessing and model on (X, y).

        ``eval_set=(X_val, y_val)`` is used for early stopping by the families
        that stop early; without it they hold out part of the training rows.
        """
        self._check_params()
        X = self._as_frame(X)
        y_enc = self._encode_target(np.asarray(y), fitting=True)
        self.feature_types_ = self._feature_types(X)
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
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self._fit_model(Xt, y_enc, eval_t)
        return self

    def predict(self, X) -> np.ndarray:
        if self.task == "classification":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return np.asarray(self._predict_model(self._transform(self._as_frame(X))), dtype=float)

    def predict_proba(self, X) -> np.ndarray:
        if self.task != "classification":
            raise AttributeError("predict_proba is only available for classification")
        return np.asarray(self._predict_proba_model(self._transform(self._as_frame(X))))

    def score(self, X, y) -> float:
        """Accuracy for classification, R² for regression (sklearn's convention)."""
        from sklearn.metrics import accuracy_score, r2_score

        pred = self.predict(X)
        return float(accuracy_score(y, pred) if self.task == "classification"
                     else r2_score(y, pred))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
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

    def _as_frame(self, X) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            return X
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(f"X must be 2-dimensional, got shape {arr.shape}")
        names = getattr(self, "feature_names_in_", None)
        if names is not None and len(names) != arr.shape[1]:
            raise ValueError(f"X has {arr.shape[1]} columns, but the model was fitted on "
                             f"{len(names)}: {list(names)[:10]}")
        columns = list(names) if names is not None else [f"x{i}" for i in range(arr.shape[1])]
        return pd.DataFrame(arr, columns=columns)

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
                raise ValueError("classification needs at least two classes in y")
            return encoded
        index = {cls: i for i, cls in enumerate(self.classes_.tolist())}
        return np.array([index.get(v, -1) for v in y.tolist()], dtype=np.int64)

    def _transform(self, X: pd.DataFrame):
        return self.preprocessor_.transform(X[list(self.feature_types_)])
