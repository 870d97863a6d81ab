"""Label preservation is judged by the project's best model, so a weak model's loss shows.

Issue 11: "the ledger shows the logistic regression's loss from shift
augmentation as a negative lift, not hidden". When the reference run itself
judged label preservation, a logistic regression (which misreads shifted
digits) refused shift for most classes, and the loss never reached the ledger.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopml import Project
from loopml.cli import app

runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False,
                         env={"COLUMNS": "200"})


@pytest.mark.slow
def test_the_ledger_shows_the_linear_models_loss_from_shift_judged_by_the_cnn(
        tmp_path: Path) -> None:
    folder = tmp_path / "digits"
    project = Project.init(folder, data="digits")
    cnn = project.train("cnn", report=False)
    linear = project.train("linear", report=False)
    assert cnn.error("val") < linear.error("val")  # the judge: the best model on val
    n_train = len(project.split.ids("train"))

    result = _cli("augment", "-p", folder, "--policy", "shift", "--run", linear.run_id[:8],
                  "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["preservation"]["run_id"] == cnn.run_id
    kept = {str(c["class"]) for c in doc["preservation"]["checks"] if not c["refused"]}
    print("shift kept by the cnn for classes", sorted(kept), "added", doc["added"])
    assert len(kept) == 10  # a shifted digit is the same digit: refused for none
    assert doc["added"] == n_train  # one child per train example: none refused
    overall = doc["lift"]["overall"]
    print("linear + shift:", doc["lift"]["describe"])
    assert doc["lift"]["reference_run"] == linear.run_id
    assert overall["verdict"] == "loss" and overall["delta"] < -0.02, overall

    ledger = _cli("ledger", "-p", folder, "--json")
    entry = json.loads(ledger.stdout)["entries"][-1]
    assert entry["action_id"] == doc["action"]["action_id"]
    assert entry["architecture"] == "linear"
    assert entry["lift"]["overall"]["verdict"] == "loss"
    assert entry["lift"]["overall"]["delta"] == pytest.approx(overall["delta"])
    table = _cli("ledger", "-p", folder)
    assert f"loss ({overall['delta']:+.4f})" in table.output


def test_the_judge_can_be_named_and_it_refuses_rotate180_for_6_and_9(tmp_path: Path) -> None:
    folder = tmp_path / "digits"
    project = Project.init(folder, data="digits")
    linear = project.train("linear", report=False)
    result = _cli("augment", "-p", folder, "--policy", "rotate180", "--judge",
                  linear.run_id[:8], "--no-lift", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["preservation"]["run_id"] == linear.run_id
    refused = {str(r["class"]) for r in doc["preservation"]["refusals"]}
    assert {"6", "9"} <= refused
    unknown = _cli("augment", "-p", folder, "--policy", "shift", "--judge", "ffffffff",
                   "--no-lift")
    assert unknown.exit_code == 2 and "ffffffff" in unknown.output
