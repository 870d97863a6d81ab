"""Serving: ``loopml serve`` against ``mlflow models serve`` on the same digits model.

Two models, each served by both servers from the same fitted estimator:

- ``linear``: a loopml run's model (trained and deployed here). loopml serves the
  run's folder with ``loopml serve``; MLflow serves the same fitted estimator saved
  with ``mlflow.sklearn`` (its pyfunc calls ``estimator.predict`` directly; serving the
  run's folder itself would make MLflow pay loopml's input validation per request,
  ~100 req/s here, which is not MLflow at its best);
- ``sklearn pipeline``: a plain StandardScaler + LogisticRegression fitted on the same
  train split, whose model call is cheap, so per-request overhead decides. loopml
  serves it from a copy of the run's folder holding that pickle instead.

Each server is started on a free port of 127.0.0.1, warmed up, loaded by ``wrk -t2
-c64 -d15s --latency`` with one row per request (MLflow's body is
``{"dataframe_split": ...}``, loopml's one JSON object), and stopped with SIGTERM.
The servers run one after the other, ``ROUNDS`` times each, alternating, so drift in
machine load hits both alike; every run is reported with the load average, and the
medians are compared. Both run uvicorn from this venv, so both get uvloop/httptools.

After each loopml run stops, its prediction log must hold exactly one row per 2xx
answer the server counted itself (``/metrics``; wrk stops counting at its timer, so
its own count can be short of what was answered).

Targets (issue 13): loopml's requests/s >= 2x MLflow's, its p99 <= 1/2 of MLflow's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from loopml import Project
from loopml.models.packaged import load

ROUNDS = 2
WRK = ["-t2", "-c64", "-d15s", "--latency"]
BIN = Path(sys.executable).parent  # mlflow execs `uvicorn` from PATH: this venv's

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, server: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def _post(url: str, body: bytes) -> bytes:
    request = urllib.request.Request(url, data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.read()


def _stop(server: subprocess.Popen) -> int:
    """SIGTERM to the server's process group (mlflow runs uvicorn under bash); its exit code."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        return server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        return server.wait()


def _wrk(url: str, script: Path) -> dict:
    out = subprocess.run(["wrk", *WRK, "-s", str(script), url], capture_output=True,
                         text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*", out)
    return {"rps": rate, "p99_ms": float(p99.group(1)) * scale,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(0) if socket_errors else "",
            "requests": int(re.search(r"(\d+) requests in", out).group(1))}


def _served_2xx(base: str) -> int:
    """``/predict`` answers with a 2xx status, as the server itself counted them."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    found = re.findall(r'loopml_requests_total\{route="/predict",status="2\d\d"\} ([\d.e+]+)',
                       text)
    return int(sum(float(n) for n in found))


def _warm_and_load(url: str, body: str, script: Path) -> dict:
    """20 warm-up requests, then wrk POSTing ``body`` to ``url`` (its Lua script at ``script``)."""
    for _ in range(20):
        _post(url, body.encode())
    script.write_text(LUA.format(body=body))
    return _wrk(url, script)


def _run_mlflow(model_dir: Path, body: str, work: Path) -> dict:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    try:
        _wait_up(f"{base}/ping", server)
        result = _warm_and_load(f"{base}/invocations", body, work / "mlflow.lua")
    finally:
        result_code = _stop(server)
    return result | {"exit": result_code}


LAUNCH = """
import sys
from pathlib import Path
from loopml.serve import create_app, serve
app = create_app(lambda: ("1", Path(sys.argv[1])), api_key="bench-key-0123456789",
                 log_url=sys.argv[2])
serve(app, port=int(sys.argv[3]), log_level="warning")
"""


def _run_loopml(served: Project | Path, body: str, work: Path, tag: str) -> dict:
    """``loopml serve`` on a project's champion, or the same app on a bare model folder."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / f"predictions-{tag}.db"
    log_url = f"sqlite:///{log_path}"
    if isinstance(served, Project):
        command = [sys.executable, "-m", "loopml.cli", "serve", "-p", str(served.root),
                   "--port", str(port), "--log-url", log_url]
    else:
        command = [sys.executable, "-c", LAUNCH, str(served), log_url, str(port)]
    server = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait_up(f"{base}/health", server)
        result = _warm_and_load(f"{base}/predict", body, work / "loopml.lua")
        time.sleep(1.0)  # requests wrk dropped at its timer are still answered: let them end
        answered = _served_2xx(base)
    finally:
        result_code = _stop(server)
    with sqlite3.connect(log_path) as db:
        logged = db.execute("SELECT count(*) FROM predictions").fetchone()[0]
    return result | {"exit": result_code, "served_2xx": answered, "logged": logged}


def _runs_line(runs: list[dict]) -> str:
    return "; ".join(f"{r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, {r['non_2xx']} non-2xx "
                     f"(load {r['load']})" for r in runs)


def _plain_pipeline(project: Project, run_model: Path, work: Path) -> Path:
    """A copy of the run's model folder holding a plain scikit-learn pipeline instead."""
    import cloudpickle
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = project.split.ids("train")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pipeline.fit(project.dataset.X(train), project.dataset.y(train))
    folder = work / "pipeline-loopml"
    shutil.copytree(run_model, folder)
    (folder / "model.pkl").write_bytes(cloudpickle.dumps(pipeline))
    return folder


def _mlflow_folder(estimator, folder: Path) -> Path:
    import mlflow.sklearn

    mlflow.sklearn.save_model(estimator, str(folder), serialization_format="cloudpickle")
    return folder


def run() -> list[dict]:
    if shutil.which("wrk") is None:
        return [{"name": "serving bench", "value": "skipped: wrk is not installed "
                 "(apt-get install wrk)", "ok": False}]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        project = Project.init(work / "digits", data="digits")
        trained = project.train("linear", report=False)
        project.deploy(trained.run_id)
        run_model = Path(trained.model_path)
        pipeline = _plain_pipeline(project, run_model, work)
        models = {"linear": (project, _mlflow_folder(load(run_model).estimator,
                                                     work / "linear-mlflow")),
                  "sklearn pipeline": (pipeline, _mlflow_folder(load(pipeline).estimator,
                                                                work / "pipeline-mlflow"))}
        names = load(run_model).schema.names
        x = project.dataset.X(project.split.ids("test")).iloc[0]
        row = {name: float(x[name]) for name in names}
        mlflow_body = json.dumps({"dataframe_split": {"columns": names,
                                                      "data": [list(row.values())]}})
        loopml_body = json.dumps(row)
        for label, (ours, theirs) in models.items():
            mlflow_runs, loopml_runs = [], []
            for round_ in range(ROUNDS):
                mlflow_runs.append(_run_mlflow(theirs, mlflow_body, work) | {"load": _load()})
                loopml_runs.append(_run_loopml(ours, loopml_body, work,
                                               f"{label.replace(' ', '-')}-{round_}")
                                   | {"load": _load()})
            rows += _rows(label, mlflow_runs, loopml_runs)
    return rows


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def _rows(label: str, mlflow_runs: list[dict], loopml_runs: list[dict]) -> list[dict]:
    m_rps = statistics.median(r["rps"] for r in mlflow_runs)
    l_rps = statistics.median(r["rps"] for r in loopml_runs)
    m_p99 = statistics.median(r["p99_ms"] for r in mlflow_runs)
    l_p99 = statistics.median(r["p99_ms"] for r in loopml_runs)
    logged_ok = all(r["logged"] == r["served_2xx"] and r["non_2xx"] == 0 for r in loopml_runs)
    return [
        {"name": f"{label}: mlflow models serve, {ROUNDS} runs",
         "value": _runs_line(mlflow_runs)},
        {"name": f"{label}: loopml serve, {ROUNDS} runs", "value": _runs_line(loopml_runs)},
        {"name": f"{label}: req/s loopml / mlflow (medians)", "value": f"{l_rps / m_rps:.2f}x",
         "target": ">= 2x", "ok": l_rps >= 2 * m_rps},
        {"name": f"{label}: p99 loopml / mlflow (medians)", "value": f"{l_p99 / m_p99:.2f}",
         "target": "<= 0.5", "ok": l_p99 <= 0.5 * m_p99},
        {"name": f"{label}: log rows / server's 2xx count, per run",
         "value": ", ".join(f"{r['logged']} / {r['served_2xx']}" for r in loopml_runs),
         "target": "equal, no non-2xx", "ok": logged_ok},
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
