"""Architectures built on scikit-learn and LightGBM."""

from __future__ import annotations

import os
import warnings
from math import comb

import numpy as np
from sklearn.kernel_approximation import PolynomialCountSketch
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from loopml.data.sampling import EARLY_STOPPING_FRACTION, holdout
from loopml.models.base import Architecture, balanced_class_weights
from loopml.models.features import table_preprocessor


class LinearModel(Architecture):
    """Logistic regression (classification) or ridge regression (regression).

    ``size`` is the polynomial degree of the features (1: plain linear, 2: all
    pairwise products, ...), the linear family's one honest capacity knob.
    The expansion is exact while it stays under ``MAX_POLY_COLUMNS`` columns;
    beyond that (degree 3 on 64 pixels is ~48,000 columns) a fixed-width
    sketch of the same polynomial kernel stands in, so capacity still grows
    with the degree while memory does not.
    ``reg`` is the L2 strength: 1/C for logistic regression, alpha for ridge.
    ``balance=True`` fits logistic regression with ``class_weight="balanced"``
    (weights from the training rows); ridge regression ignores it.
    """

    MAX_POLY_COLUMNS = 5000
    SKETCH_COMPONENTS = 2048

    name = "linear"
    summary = "logistic / ridge regression"
    knobs = "size = polynomial degree of the features; reg = L2 strength (1/C, alpha)"
    size_grid = (1, 2, 3, 4)

    def __init__(self, *, task: str = "classification", size: int = 1, reg: float = 1.0,
                 balance: bool = False, features: dict | None = None,
                 image_shape: tuple | None = None, image_size: int = 32,
                 random_state: int = 0, max_iter: int = 2000) -> None:
        self.task = task
        self.size = size
        self.reg = reg
        self.balance = balance
        self.features = features
        self.image_shape = image_shape
        self.image_size = image_size
        self.random_state = random_state
        self.max_iter = max_iter

    def _make_preprocessor(self):
        # TF-IDF rows scaled so the L2 penalty does not mute the text (see TextScaler)
        return table_preprocessor(self.feature_types_, image_size=self.image_size,
                                  scale_text=True)

    def _fit_model(self, Xt, y, eval_set) -> None:
        if self.task == "classification":
            C = np.inf if self.reg == 0 else 1.0 / self.reg
            head = LogisticRegression(C=C, max_iter=self.max_iter,
                                      class_weight="balanced" if self.balance else None,
                                      random_state=self.random_state)
        else:
            head = LinearRegression() if self.reg == 0 else Ridge(alpha=self.reg)
        self.model_ = make_pipeline(*self._expansion(Xt.shape[1]), head)
        with warnings.catch_warnings():
            # A strongly regularized or tiny problem may stop before converging;
            # the metrics say what that cost, a warning per fit says nothing more.
            warnings.filterwarnings("ignore", message=".*(converge|ConvergenceWarning).*")
            self.model_.fit(Xt, y)
        self.n_iter_ = int(np.max(getattr(head, "n_iter_", None) or 1))

    def _expansion(self, n_columns: int) -> list:
        degree = int(self.size)
        if degree <= 1:
            return []
        if comb(n_columns + degree, degree) - 1 <= self.MAX_POLY_COLUMNS:
            return [PolynomialFeatures(degree, include_bias=False)]
        return [PolynomialCountSketch(degree=degree, n_components=self.SKETCH_COMPONENTS,
                                      random_state=self.random_state), StandardScaler()]

    def _predict_proba_model(self, Xt) -> np.ndarray:
        return self.model_.predict_proba(Xt)

    def _predict_model(self, Xt) -> np.ndarray:
        return self.model_.predict(Xt)


class GradientBoosting(Architecture):
    """Gradient-boosted trees (LightGBM) with early stopping.

    ``size`` is the number of leaves per tree; ``reg`` is the L2 penalty on
    leaf values. Boosting stops when the validation metric has not improved
    for 50 rounds on ``eval_set``, or else on a seeded, stratified 10% of the
    training rows (loopml never passes its val part: val only compares candidates).
    ``balance=True`` weights every row by ``n / (k * count of its class)``, the
    counts taken from the boosting rows; the early-stopping rows are weighted
    the same way, so boosting stops on the loss it optimizes. Regression
    ignores it.
    """

    name = "gbt"
    summary = "gradient-boosted trees (LightGBM)"
    knobs = "size = leaves per tree; reg = L2 penalty on leaf values"
    size_grid = (4, 8, 16, 31, 63, 127)
    reg_grid = tuple(np.logspace(-3, 3, 7))

    def __init__(self, *, task: str = "classification", size: int = 31, reg: float = 0.0,
                 balance: bool = False, features: dict | None = None,
                 image_shape: tuple | None = None, image_size: int = 32,
                 random_state: int = 0, n_estimators: int = 1000, learning_rate: float = 0.1,
                 n_jobs: int | None = None) -> None:
        self.task = task
        self.size = size
        self.reg = reg
        self.balance = balance
        self.features = features
        self.image_shape = image_shape
        self.image_size = image_size
        self.random_state = random_state
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.n_jobs = n_jobs

    def _fit_model(self, Xt, y, eval_set) -> None:
        import lightgbm

        cls = lightgbm.LGBMClassifier if self.task == "classification" else lightgbm.LGBMRegressor
        self.model_ = cls(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                          num_leaves=max(2, int(self.size)), reg_lambda=float(self.reg),
                          random_state=self.random_state, n_jobs=self._threads(),
                          verbose=-1)
        Xt = Xt.astype(np.float32) if hasattr(Xt, "astype") else Xt
        if eval_set is None:
            rows, held = holdout(np.arange(len(y)), y if self.task == "classification" else None,
                                 EARLY_STOPPING_FRACTION, seed=self.random_state)
            eval_set = (Xt[held], y[held])
            Xt, y = Xt[rows], y[rows]
        X_val, y_val = eval_set
        weights = {}
        if self.balance and self.task == "classification":
            per_class = balanced_class_weights(y, self.n_classes_)
            weights = {"sample_weight": per_class[y],
                       "eval_sample_weight": [per_class[np.asarray(y_val, dtype=np.int64)]]}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*feature names.*")
            self.model_.fit(Xt, y, eval_X=X_val.astype(np.float32), eval_y=y_val,
                            callbacks=[lightgbm.early_stopping(50, verbose=False)],
                            **weights)
        self.best_iteration_ = int(self.model_.best_iteration_ or self.n_estimators)

    def _threads(self) -> int:
        """``n_jobs``, or the thread budget this process was given.

        LightGBM's own default takes every core and ignores OMP_NUM_THREADS,
        which joblib and Ray workers set to share the cores; two workers each
        spinning two threads on two cores ran 5-40x slower (measured).
        """
        if self.n_jobs:
            return self.n_jobs
        budget = os.environ.get("OMP_NUM_THREADS", "")
        return int(budget) if budget.isdigit() and int(budget) > 0 else -1

    def _predict_proba_model(self, Xt) -> np.ndarray:
        proba = self.model_.predict_proba(Xt)
        if proba.shape[1] == self.n_classes_:
            return proba
        # a class absent from the boosting rows: give it probability 0
        full = np.zeros((proba.shape[0], self.n_classes_))
        full[:, self.model_.classes_] = proba
        return full

    def _predict_model(self, Xt) -> np.ndarray:
        return self.model_.predict(Xt)
