"""The torch families (MLP, CNN) and their training loop, on real data."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split

from loopml.models.torch_families import CNN, MLP
from loopml.models.trainer import predict_module, train_module

DIGIT_SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits():
    """scikit-learn digits split 70/15/15, stratified: (train, val, test) pairs."""
    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.3, stratify=y,
                                                        random_state=0)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5,
                                                    stratify=y_rest, random_state=0)
    return (X_train, y_train), (X_val, y_val), (X_test, y_test)


def quick(family, **params):
    """A small, fast, silent model of a family: for tests that assert no accuracy."""
    extra = {"image_shape": DIGIT_SHAPE, "size": 8} if family is CNN else {"size": 32}
    return family(**{"max_epochs": 3, "verbose": False, **extra, **params})


@pytest.mark.parametrize(("family", "params"), [(MLP, {}), (CNN, {"image_shape": DIGIT_SHAPE})])
def test_default_model_reaches_accuracy_on_digits(digits, family, params):
    (X_train, y_train), (X_val, y_val), (X_test, y_test) = digits
    model = family(verbose=False, **params).fit(X_train, y_train, eval_set=(X_val, y_val))
    assert model.score(X_val, y_val) >= 0.95
    assert model.score(X_test, y_test) >= 0.95
    assert 1 <= model.best_epoch_ <= model.n_epochs_ <= model.max_epochs


@pytest.mark.parametrize("family", [MLP, CNN])
def test_same_seed_gives_identical_predictions(digits, family):
    (X_train, y_train), _, (X_test, _) = digits
    first = quick(family, random_state=3).fit(X_train, y_train).predict_proba(X_test)
    second = quick(family, random_state=3).fit(X_train, y_train).predict_proba(X_test)
    other = quick(family, random_state=4).fit(X_train, y_train).predict_proba(X_test)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_fit_leaves_global_torch_state_alone(digits):
    (X_train, y_train), _, _ = digits
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    quick(MLP).fit(X_train, y_train)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("family", [MLP, CNN])
def test_clone_keeps_params(family):
    model = family(size=12, reg=0.5, lr=0.01, max_epochs=7, patience=3, image_shape=DIGIT_SHAPE,
                   verbose=False)
    params = clone(model).get_params()
    assert params == model.get_params()
    assert {"size", "reg", "lr", "max_epochs", "batch_size", "patience", "device",
            "verbose", "image_shape", "image_size", "random_state"} <= set(params)


@pytest.mark.parametrize("family", [MLP, CNN])
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_pickle_round_trip_predicts_identically(digits, family, dumps, monkeypatch):
    (X_train, y_train), _, (X_test, _) = digits
    model = quick(family).fit(X_train, y_train)
    before = model.predict_proba(X_test)
    blob = dumps(model)
    assert isinstance(model.module_, torch.nn.Module)  # pickling left the model as it was
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = pickle.loads(blob)
    assert np.array_equal(loaded.predict_proba(X_test), before)
    assert loaded.history_ == model.history_


def test_regression_mlp_beats_the_mean():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=1)
    model = MLP(task="regression", verbose=False).fit(X_train, y_train)
    assert model.score(X_test, y_test) > 0.3
    assert model.predict(X_test).shape == (len(y_test),)
    with pytest.raises(AttributeError):
        model.predict_proba(X_test)


def test_regression_ignores_balance():
    X, y = load_diabetes(return_X_y=True)
    plain = quick(MLP, task="regression").fit(X, y).predict(X[:20])
    balanced = quick(MLP, task="regression", balance=True).fit(X, y).predict(X[:20])
    assert np.array_equal(plain, balanced)


def test_balance_pulls_up_the_rare_class(digits):
    (X_train, y_train), _, _ = digits
    y = (y_train == 0).astype(int)  # ~10% zeros: their weight is ~9x the others'
    plain = quick(MLP).fit(X_train, y)
    balanced = quick(MLP, balance=True).fit(X_train, y)
    assert balanced.predict_proba(X_train)[y == 1, 1].mean() > \
        plain.predict_proba(X_train)[y == 1, 1].mean()  # the rare class is pulled up


def write_digit_pngs(folder, n_per_class: int = 8) -> pd.DataFrame:
    """Digits 0-2 as 16x16 RGB PNG files in one sub-folder per class."""
    X, y = load_digits(n_class=3, return_X_y=True)
    names = np.array(["zero", "one", "two"])
    rows = []
    for label in range(3):
        (folder / names[label]).mkdir()
        for i, pixels in enumerate(X[y == label][:n_per_class]):
            gray = Image.fromarray((pixels.reshape(8, 8) * 255 / 16).astype(np.uint8))
            path = folder / names[label] / f"{i}.png"
            gray.resize((16, 16)).convert("RGB").save(path)
            rows.append({"image": str(path.resolve()), "label": names[label]})
    return pd.DataFrame(rows)


def test_cnn_trains_on_an_image_folder(tmp_path):
    frame = write_digit_pngs(tmp_path)
    model = CNN(features={"image": "image"}, image_size=16, size=8, max_epochs=3, verbose=False)
    model.fit(frame[["image"]], frame["label"])
    proba = model.predict_proba(frame[["image"]])
    assert model.image_shape_ == (3, 16, 16)
    assert proba.shape == (len(frame), 3)
    assert np.allclose(proba.sum(axis=1), 1)
    assert set(model.predict(frame[["image"]])) <= {"zero", "one", "two"}


def test_cnn_rejects_an_image_shape_that_does_not_fit(digits):
    (X_train, y_train), _, _ = digits
    with pytest.raises(ValueError, match=r"\(1, 4, 4\).*64 columns"):
        quick(CNN, image_shape=(1, 4, 4)).fit(X_train, y_train)


def test_early_stopping_stops_and_records_history(digits):
    (X_train, y_train), _, _ = digits
    model = MLP(size=32, patience=2, max_epochs=200, verbose=True).fit(X_train, y_train)
    assert model.n_epochs_ < 200
    assert model.best_epoch_ <= model.n_epochs_
    assert model.n_epochs_ - model.best_epoch_ == 2
    assert len(model.history_["train_loss"]) == len(model.history_["val_loss"]) == model.n_epochs_
    best = model.history_["val_loss"][model.best_epoch_ - 1]
    assert best == min(model.history_["val_loss"])


def test_strong_weight_decay_underfits(digits):
    (X_train, y_train), _, _ = digits
    free = MLP(reg=0, max_epochs=30, verbose=False).fit(X_train, y_train)
    held = MLP(reg=100, max_epochs=30, verbose=False).fit(X_train, y_train)
    assert held.score(X_train, y_train) < free.score(X_train, y_train) - 0.3


def test_sparse_rows_train_like_dense_rows(digits):
    (X_train, y_train), _, (X_test, _) = digits
    X_train, X_test = X_train / 16, X_test / 16
    options = {"task": "classification", "n_classes": 10, "max_epochs": 3, "verbose": False}

    def build():
        return torch.nn.Linear(64, 10)

    dense = train_module(build, X_train, y_train, **options)
    sparse = train_module(build, sp.csr_matrix(X_train), y_train, **options)
    assert dense.n_epochs == sparse.n_epochs == 3
    assert np.allclose(predict_module(dense.module, X_test),
                       predict_module(sparse.module, sp.csr_matrix(X_test)), atol=1e-5)


def test_an_empty_eval_set_falls_back_to_a_holdout_with_a_warning(digits):
    (X_train, y_train), _, _ = digits
    with pytest.warns(UserWarning, match="eval_set has no rows"):
        result = train_module(lambda: torch.nn.Linear(64, 10), X_train, y_train,
                              task="classification", n_classes=10, max_epochs=2,
                              eval_set=(X_train[:0], y_train[:0]), verbose=False)
    assert result.n_epochs == 2
