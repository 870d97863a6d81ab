"""`loopml serve --ray`: the same app from two Ray Serve replicas on a local Ray instance.

What a user does: deploy, `loopml serve --ray local --replicas 2`, send traffic
from several clients, stop the server with SIGTERM while traffic still flows,
and find exactly the answered rows in the one prediction log the replicas share.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from checks import free_port, refused, state_files
from loopml import Project
from loopml.models.packaged import load
from loopml.serve import PredictionLog
from test_serve_project import _wait_for

RAY_SERVE = importlib.util.find_spec("ray") is not None and \
    importlib.util.find_spec("grpc") is not None  # ray.serve imports grpc
needs_ray_serve = pytest.mark.skipif(
    not RAY_SERVE, reason="ray[serve] is not installed: pip install 'loopml[ray]'")


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Project:
    """A digits project whose linear run is deployed as version 1."""
    project = Project.init(tmp_path_factory.mktemp("serve_ray") / "digits", data="digits")
    project.deploy(project.train("linear", size=2, report=False).run_id)
    return project


def test_replicas_without_ray_are_refused(cli, digits: Project) -> None:
    before = state_files(digits.root, store=True)
    refused(cli("serve", "-p", digits.root, "--replicas", "2"), "--replicas needs --ray",
            "--ray local")
    assert state_files(digits.root, store=True) == before


@needs_ray_serve
def test_a_dead_cluster_address_is_refused_before_anything_starts(cli, digits: Project) -> None:
    before = state_files(digits.root, store=True)
    refused(cli("serve", "-p", digits.root, "--ray", f"127.0.0.1:{free_port()}"),
            "No Ray cluster answers", "ray start --head")
    assert state_files(digits.root, store=True) == before


def test_without_ray_the_flag_names_the_extra(cli, digits: Project, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    before = state_files(digits.root, store=True)
    refused(cli("serve", "-p", digits.root, "--ray", "local"), "pip install 'loopml[ray]'")
    assert state_files(digits.root, store=True) == before


def _send(base: str, row: dict, answers: list, stop: threading.Event) -> None:
    """One client: POST rows until the server stops answering after ``stop``."""
    with httpx.Client(timeout=30) as client:
        while True:
            try:
                reply = client.post(f"{base}/predict", json=row)
            except httpx.TransportError:
                return  # the proxy is gone: the server stopped
            if reply.status_code != 200:
                answers.append((reply.status_code, None, None, None))
                if stop.is_set():
                    return  # the app was deleted: Serve's proxy refuses
                continue
            body = reply.json()
            answers.append((200, reply.headers["x-replica"], body["model_version"],
                            body["request_id"]))


@needs_ray_serve
@pytest.mark.slow  # ~40 s: a Ray instance, two replicas, 8 clients, a SIGTERM under load
def test_two_replicas_answer_and_a_sigterm_under_load_keeps_every_answer(digits) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "serve", "-p", str(digits.root), "--port",
         str(port), "--ray", "local", "--replicas", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "LOOPML_API_KEY": "", "OMP_NUM_THREADS": "1"})
    answers: list[tuple] = []
    stop = threading.Event()
    try:
        _wait_for(f"{base}/health", seconds=120)
        names = load(digits.champion().model_dir).schema.names
        row = dict.fromkeys(names, 0.0) | {names[20]: 12.0, names[28]: 16.0}
        with ThreadPoolExecutor(8) as clients:
            sent = [clients.submit(_send, base, row, answers, stop) for _ in range(8)]
            deadline = time.monotonic() + 60
            while len(answers) < 150 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.send_signal(signal.SIGTERM)  # while all 8 clients still send
            stop.set()
            for future in sent:
                future.result()
        output, _ = server.communicate(timeout=90)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, output
    answered = [a for a in answers if a[0] == 200]
    assert len(answered) >= 100, Counter(a[0] for a in answers)
    assert {a[2] for a in answered} == {"1"}  # the champion's version
    by_replica = Counter(a[1] for a in answered)
    assert len(by_replica) == 2 and min(by_replica.values()) >= 10, by_replica
    log = PredictionLog(f"sqlite:///{digits.state_dir / 'serve' / 'predictions.db'}").open()
    try:
        logged = log.read()["request_id"]
    finally:
        log.close()
    assert sorted(logged) == sorted(a[3] for a in answered)  # one row per answer, no more
    assert "stopped; every replica wrote its prediction log" in output
