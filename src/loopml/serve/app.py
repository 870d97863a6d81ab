"""The HTTP app of ``loopml serve``: routers, a prediction log, and a model that follows the
deployed version.

Everything the app needs comes in as arguments, so ``loopml serve``, a test or
a Ray Serve replica build the same app::

    from loopml.serve.app import create_app, serve
    app = create_app(lambda: ("3", Path(".loopml/runs/<run>/artifacts/model")),
                     api_key="...", log_url="sqlite:///.loopml/serve/predictions.db")
    serve(app)  # http://127.0.0.1:8000/docs

Startup (the lifespan) opens the log, starts the batcher and the poll of
``resolve``; shutdown answers what is queued, then writes the whole log.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from loopml.exceptions import LoopmlError
from loopml.serve import admin, feedback, health, predict
from loopml.serve.batcher import MicroBatcher
from loopml.serve.dependencies import ServeState
from loopml.serve.live_model import LiveModel, Resolver
from loopml.serve.prediction_log import PredictionLog
from loopml.serve.telemetry import RequestMetrics, ServeMetrics

MAX_BODY_BYTES = 1 << 20


def create_app(resolve: Resolver, *, api_key: str, log_url: str, max_batch: int = 64,
               max_wait_ms: float = 5.0, max_body_bytes: int = MAX_BODY_BYTES,
               poll_seconds: float = 2.0, log_flush_seconds: float = 1.0) -> FastAPI:
    """An app serving the model ``resolve()`` names, following it as it moves.

    ``resolve`` returns (model version, model folder); it is called now (a model
    that does not load raises :class:`LoopmlError` here, not at the first
    request) and every ``poll_seconds`` while the app runs. ``api_key`` guards
    ``/feedback`` and ``/admin`` (reload the deployed version now, flush the log).
    ``log_url`` is a SQLAlchemy URL for the prediction log.
    Micro-batches hold at most ``max_batch`` rows and wait at most
    ``max_wait_ms`` for company; a body over ``max_body_bytes`` gets 413.
    """
    _check_options(api_key=api_key, max_batch=max_batch, max_wait_ms=max_wait_ms,
                   max_body_bytes=max_body_bytes, poll_seconds=poll_seconds)
    log = PredictionLog(log_url, flush_seconds=log_flush_seconds)
    live = LiveModel(resolve, poll_seconds=poll_seconds)
    live.refresh()
    batcher = MicroBatcher(live, log, max_batch=max_batch, max_wait_ms=max_wait_ms)
    metrics = ServeMetrics(max_batch=max_batch, predict_depth=lambda: batcher.waiting_rows,
                           log_depth=lambda: log.depth)
    batcher.on_batch = metrics.observe_batch
    live.on_swap = lambda _version: metrics.model_swaps.inc()
    live.on_failure = metrics.reload_failures.inc

    app = FastAPI(title="loopml serve", lifespan=_lifespan,
                  description="Predictions from the deployed loopml model; every answered row "
                              "is logged, and true labels join it through /feedback.")
    app.state.serve = ServeState(live=live, batcher=batcher, log=log, metrics=metrics,
                                 api_key=api_key, max_body_bytes=max_body_bytes)
    app.include_router(predict.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, with the /predict body of the model being served (rebuilt on a swap)."""
    version, model = app.state.serve.live.model_pair
    cached = getattr(app.state, "openapi_for", None)
    if app.openapi_schema is None or cached != version:
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"] = predict.request_schema(model.schema)
        feedback_body = doc["components"]["schemas"]["Feedback"]["properties"]
        feedback_body["label"] = feedback.label_schema(model.schema)
        app.openapi_schema, app.state.openapi_for = doc, version
    return app.openapi_schema


def _check_options(*, api_key: str, max_batch: int, max_wait_ms: float, max_body_bytes: int,
                   poll_seconds: float) -> None:
    if not isinstance(api_key, str) or len(api_key) < 8:
        raise LoopmlError("the server's API key is missing or shorter than 8 characters",
                          hint="pass the key 'loopml deploy' wrote into .loopml/, or set one")
    for name, value, least in [("max_batch", max_batch, 1), ("max_wait_ms", max_wait_ms, 0),
                               ("max_body_bytes", max_body_bytes, 1),
                               ("poll_seconds", poll_seconds, 0.01)]:
        if not value >= least:
            raise LoopmlError(f"{name} must be at least {least}, not {value}",
                              hint=f"pass a {name} of {least} or more")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServeState = app.state.serve
    await asyncio.to_thread(state.log.open)
    try:
        state.batcher.start()
        # Everything loaded so far (the model, pandas, sklearn: ~250,000 objects) lives as
        # long as the server: out of the collector's sight, a full collection takes
        # ~1 ms instead of ~100 ms, which every request in flight would have waited for.
        gc.freeze()
        watcher = asyncio.create_task(state.live.watch())
        try:
            yield
        finally:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
            await state.batcher.stop()
            gc.unfreeze()  # back in sight: an app stopped in a longer process is collectable
    finally:
        await asyncio.to_thread(state.log.close)


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info", access_log: bool = False) -> None:
    """Run ``app`` under uvicorn until SIGTERM or Ctrl-C, then flush the log and return.

    Binds 127.0.0.1 unless told otherwise: the predict route has no key, so
    opening it to a network is the user's explicit choice (``host="0.0.0.0"``).
    """
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log,
                timeout_graceful_shutdown=30)
