"""Diagnose: verdicts on real models that are known to underfit or overfit, curves, advice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from loopml import LoopmlError, Project
from loopml.diagnose import Diagnosis, advise
from loopml.diagnose.curves import Folds

BIAS_REMEDIES = {"bigger_model", "less_regularization", "more_features"}
VARIANCE_REMEDIES = {"more_data", "more_regularization"}


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Project:
    return Project.init(tmp_path_factory.mktemp("diag") / "digits", data="digits",
                        target="label")


@pytest.mark.slow
def test_strongly_regularized_logistic_regression_has_high_bias(digits: Project) -> None:
    iteration = digits.train("linear", reg=1e4, report=False)
    d = digits.diagnose(iteration.run_id, folds=5, n_jobs=2)
    assert d.verdict == "high_bias", d.verdict_text
    assert d.avoidable_bias > d.tolerance > 0
    assert d.baseline_estimated and "estimated" in d.baseline_note
    assert d.advice[0]["action"] in BIAS_REMEDIES
    assert {a["action"] for a in d.advice[:3]} == BIAS_REMEDIES
    assert d.validation_curves["reg"]["setting"] == "over-regularized"
    assert len(d.validation_curves["reg"]["points"]) >= 7
    assert len(d.validation_curves["size"]["points"]) >= 4
    assert len(d.learning_curve["points"]) >= 5
    assert all(p["folds"] == 5 for p in d.learning_curve["points"])


@pytest.mark.slow
def test_unregularized_mlp_on_a_tenth_of_the_data_has_high_variance(digits: Project) -> None:
    iteration = digits.train("mlp", reg=0.0, train_fraction=0.1, params={"verbose": False},
                             report=False)
    assert iteration.n_train == round(0.1 * len(digits.split.ids("train")))
    d = digits.diagnose(iteration.run_id, folds=5, n_jobs=2)
    assert d.verdict == "high_variance", d.verdict_text
    assert d.variance > d.tolerance
    assert d.advice[0]["action"] in VARIANCE_REMEDIES
    assert {a["action"] for a in d.advice[:2]} == VARIANCE_REMEDIES
    assert d.gain_from_doubling > d.tolerance  # the learning curve says more data helps


def test_diagnosis_is_stored_on_disk_on_the_mlflow_run_and_in_the_report(digits: Project
                                                                          ) -> None:
    iteration = digits.train("linear", report=True)
    d = digits.diagnose(iteration.run_id, folds=3, curves=False)
    stored = json.loads((iteration.path / "diagnosis.json").read_text())
    assert stored["verdict"] == d.verdict and stored["run_id"] == iteration.run_id
    assert Diagnosis.load(iteration.path).j_cv == pytest.approx(d.j_cv)
    client = MlflowClient(tracking_uri=digits.tracker.tracking_uri)
    run = client.get_run(iteration.run_id)
    assert run.data.tags["loopml.verdict"] == d.verdict
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
    d = project.diagnose(iteration.run_id, folds=3)
    assert d.metric == "rmse"
    assert d.verdict in {"high_bias", "high_variance", "both", "at_target"}
    assert 1 < d.j_train < d.j_cv < 10  # RMSE in thousands of dollars
    assert len(d.validation_curves["reg"]["points"]) >= 7
    assert np.isfinite(d.learning_curve["points"][-1]["val"])
    assert d.advice


def test_too_small_for_the_folds_is_refused(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    iteration = project.train("linear", report=False)
    with pytest.raises(LoopmlError, match=r"train \+ val hold 292 examples, too few for 200"):
        project.diagnose(iteration.run_id, folds=200)
    with pytest.raises(LoopmlError, match=r"rarest class has \d+ examples .* than the 100 folds"):
        project.diagnose(iteration.run_id, folds=100)
    assert not (iteration.path / "diagnosis.json").exists()


def _diagnosis(**overrides) -> Diagnosis:
    base = dict(run_id="r", architecture="linear", metric="accuracy", modality="tabular",
                folds=5, n_train=100, baseline_error=0.02, baseline_source="human-level",
                baseline_estimated=False, baseline_note="", target_error=None, j_train=0.1,
                j_train_band=0.01, j_cv=0.11, j_cv_band=0.01, avoidable_bias=0.08,
                bias_band=0.01, variance=0.01, variance_band=0.01, tolerance=0.02,
                verdict="high_bias")
    return Diagnosis(**{**base, **overrides})


def test_advice_follows_the_validation_curve_evidence() -> None:
    size_says_bigger = {"size": {"setting": "too small", "best": 8, "best_error": 0.05,
                                 "current": 1, "current_error": 0.11}}
    d = _diagnosis(validation_curves=size_says_bigger)
    assert [a.action for a in advise(d)][:3] == ["bigger_model", "less_regularization",
                                                 "more_features"]
    reg_says_less = {"reg": {"setting": "over-regularized", "best": 0.1, "best_error": 0.04,
                             "current": 100, "current_error": 0.11}}
    assert advise(_diagnosis(validation_curves=reg_says_less))[0].action == "less_regularization"
    at_target = _diagnosis(verdict="at_target", j_cv=0.021)
    assert advise(at_target)[0].action == "error_analysis"
