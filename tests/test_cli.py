"""The CLI end to end, against real temporary projects and a real MLflow SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def test_init_train_runs_show_on_penguins(cli, penguins_csv: Path) -> None:
    result = cli("init", "peng", "--data", penguins_csv, "--target", "species")
    _ok(result)
    assert "categorical" in result.output and "wrote" in result.output

    result = cli("train", "-p", "peng", "--arch", "gbt", "--json")
    _ok(result)
    trained = json.loads(result.stdout)
    assert trained["architecture"] == "gbt"
    assert trained["metrics"]["val_accuracy"] > 0.9  # penguins species are easy to tell apart
    assert Path(trained["report"]).is_file()

    _ok(cli("train", "-p", "peng", "--arch", "linear", "--reg", "0.5"))
    result = cli("runs", "-p", "peng", "--json")
    _ok(result)
    runs = json.loads(result.stdout)
    assert [r["architecture"] for r in runs] == ["gbt", "linear"]
    for row in runs:
        assert {"run_id", "architecture", "params", "metrics"} <= set(row)
        assert {"train_accuracy", "val_accuracy"} <= set(row["metrics"])
        assert not any(k.startswith("test_") for k in row["metrics"])  # test is never peeked at
    assert runs[1]["params"]["reg"] == 0.5

    result = cli("show", "-p", "peng", runs[0]["run_id"][:6])
    _ok(result)
    assert runs[0]["run_id"] in result.output

    # the same runs are in the MLflow store, with params, metrics and the model artifact
    client = MlflowClient(tracking_uri=f"sqlite:///{Path('peng/.loopml/mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name("peng")
    tracked = client.search_runs([experiment.experiment_id])
    assert {r.info.run_id for r in tracked} == {r["run_id"] for r in runs}
    for r in tracked:
        assert r.info.status == "FINISHED"
        assert "val_accuracy" in r.data.metrics and "size" in r.data.params
        assert r.data.tags["loopml.data_version"] == runs[0]["data_version"]
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"model", "iteration.json", "predictions.parquet", "report.html"} <= names


def test_regression_table_trains_and_lists_rmse(cli, boston_parquet: Path) -> None:
    result = cli("init", "boston", "--data", boston_parquet, "--target", "medv", "--json")
    _ok(result)
    assert json.loads(result.stdout)["scope"]["task"] == "regression"
    _ok(cli("train", "-p", "boston", "--arch", "linear"))
    runs = json.loads(cli("runs", "-p", "boston", "--json").stdout)
    metrics = runs[0]["metrics"]
    assert {"train_rmse", "val_rmse", "val_r2"} <= set(metrics)
    assert metrics["val_r2"] > 0.5


def test_saved_model_predicts_from_the_schema_it_carries(cli, penguins_csv: Path) -> None:
    from loopml import Project

    _ok(cli("init", "peng", "--data", penguins_csv, "--target", "species"))
    _ok(cli("train", "-p", "peng", "--arch", "linear"))
    project = Project.load("peng")
    iteration = project.runs()[0]
    schema = json.loads((iteration.path / "model" / "schema.json").read_text())
    assert [f["name"] for f in schema["features"]] == list(project.scope.data.features)
    assert schema["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert schema["data_version"] == project.dataset.version
    model = iteration.model()
    val = project.split.ids("val")
    expected = iteration.predictions().set_index("id").loc[val.astype(str), "y_pred"]
    assert (model.predict(project.dataset.X(val)) == expected.to_numpy()).all()


def test_architectures_lists_the_knobs(cli) -> None:
    result = cli("architectures", "--json")
    _ok(result)
    names = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"linear", "gbt", "mlp", "cnn"} <= set(names)
    assert "size" in names["gbt"]["knobs"] and "reg" in names["gbt"]["knobs"]


@pytest.mark.slow
def test_run_without_argument_builds_digits_and_reports(cli) -> None:
    result = cli("run", "--json")
    _ok(result)
    document = json.loads(result.stdout)
    assert len(document["candidates"]) >= 3
    best = next(c for c in document["candidates"] if c["run_id"] == document["best"])
    assert best["metrics"]["val_accuracy"] >= 0.97
    assert "test_accuracy" in document["test_metrics"]
    report = Path(document["report"])
    assert report.is_file() and "candidates" in report.read_text().lower()
    assert Path("loopml-digits/loopml.yaml").is_file()
    # a second run reuses the project and its split
    again = json.loads(cli("run", "--arch", "linear", "--json").stdout)
    assert len(again["candidates"]) == 1


def test_diagnose_prints_verdict_and_json(cli, penguins_csv: Path) -> None:
    _ok(cli("init", "peng", "--data", penguins_csv, "--target", "species"))
    _ok(cli("train", "-p", "peng", "--arch", "linear"))
    result = cli("diagnose", "-p", "peng", "--folds", "3", "--no-curves")
    _ok(result)
    assert "diagnosis of linear" in result.output and "what to try next" in result.output
    result = cli("diagnose", "-p", "peng", "--folds", "3", "--json")
    _ok(result)
    document = json.loads(result.stdout)
    assert document["verdict"] in {"high_bias", "high_variance", "both", "at_target"}
    assert {"baseline_error", "j_train", "j_cv", "avoidable_bias", "variance",
            "learning_curve", "validation_curves", "advice"} <= set(document)
    assert len(document["learning_curve"]["points"]) >= 4  # the budget's doubling sizes
    assert document["planning"]["mode"] == "budget" and document["folds"] == 3
    assert "Diagnosis" in Path(document["report"]).read_text()
