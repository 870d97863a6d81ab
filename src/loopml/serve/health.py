"""``GET /health`` (is it up, which version, how much is waiting) and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from loopml.serve.dependencies import State

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    model_version: str
    predict_queue: int
    log_queue: int


@router.get("/health", response_model=Health)
async def health(state: State) -> Health:
    """The version being served and the rows waiting for the model and for the log."""
    return Health(status="ok", model_version=state.live.version,
                  predict_queue=state.batcher.waiting_rows, log_queue=state.log.depth)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}},
                             "description": "Prometheus text format"}})
async def metrics(state: State) -> Response:
    """Requests by route and status, latency, batch sizes, queue depths (Prometheus)."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
