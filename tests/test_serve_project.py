"""`loopml serve` on a project: the champion served by a real uvicorn, following deploys.

What a user does: train, `loopml deploy`, `loopml serve`, send rows, send
feedback with the key `deploy` made, deploy another run while the server
runs, stop it with SIGTERM, and find every answered row in the log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from checks import free_port, refused, state_files
from loopml import Project
from loopml.models.packaged import load
from loopml.serve import PredictionLog


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Project, str, str]:
    """A digits project with two linear runs; the first is deployed."""
    root = tmp_path_factory.mktemp("serve") / "digits"
    project = Project.init(root, data="digits")
    first = project.train("linear", size=2, report=False)
    second = project.train("linear", report=False)
    project.deploy(first.run_id)
    return project, first.run_id, second.run_id



def _wait_for(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer {url} within {seconds} s")


def test_serve_before_any_deploy_says_deploy_first(cli, tmp_path: Path) -> None:
    project = Project.init(tmp_path / "fresh", data="digits")
    before = state_files(project.root, store=True)
    result = cli("serve", "-p", project.root)
    refused(result, "no deployed model", "loopml deploy")
    assert state_files(project.root, store=True) == before


@pytest.mark.slow  # ~25 s: a uvicorn subprocess, two model loads, a deploy while it serves
def test_the_served_champion_follows_a_deploy_and_the_log_keeps_every_answer(digits) -> None:
    project, _, second = digits
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "serve", "-p", str(project.root),
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "LOOPML_API_KEY": ""})
    try:
        _wait_for(f"{base}/health")
        names = load(project.champion().model_dir).schema.names
        row = dict.fromkeys(names, 0.0) | {names[20]: 12.0, names[28]: 16.0}
        answer = httpx.post(f"{base}/predict", json=row, timeout=10).json()
        assert answer["model_version"] == "1" and len(answer["probabilities"]) == 10
        assert httpx.post(f"{base}/feedback", json={"request_id": answer["request_id"],
                                                    "label": answer["prediction"]},
                          timeout=10).status_code == 401  # no key
        key = (project.state_dir / "serve" / "api_key").read_text().strip()
        assert httpx.post(f"{base}/feedback", headers={"X-API-Key": key},
                          json={"request_id": answer["request_id"],
                                "label": answer["prediction"]}, timeout=10).status_code == 200

        project.deploy(second)  # the server polls the champion alias every 2 s
        deadline = time.monotonic() + 30
        versions = []
        while time.monotonic() < deadline:
            reply = httpx.post(f"{base}/predict", json={"rows": [row, row]}, timeout=10)
            assert reply.status_code == 200, reply.text  # no request fails during the swap
            versions.append(reply.json()["model_version"])
            if versions[-1] == "2":
                break
            time.sleep(0.2)
        assert versions[-1] == "2", versions
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert "serving version 1" in output, output
    log = PredictionLog(f"sqlite:///{project.state_dir / 'serve' / 'predictions.db'}").open()
    try:
        logged = log.read()
    finally:
        log.close()
    assert len(logged) == 1 + 2 * len(versions)  # every answered row, nothing more
    assert set(logged["model_version"]) == {"1", "2"}
    labelled = logged[logged["request_id"] == answer["request_id"]]
    assert labelled["label"].iloc[0] == answer["prediction"]
