"""``/admin``: what an operator (or the autopilot) asks of a running server, behind the key.

- ``POST /admin/reload``: look up the deployed version now instead of at the
  next poll, so a script that deploys and then tests sees the new champion at
  once (the swap is the same as the poll's: loaded off the request path, then
  swapped in one assignment; a version that fails to load keeps the old one).
- ``POST /admin/flush``: write every queued prediction row now, so a
  ``loopml monitor`` run right after sees all traffic answered so far.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from loopml.serve.dependencies import State, require_api_key

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_api_key)],
                   responses={401: {"description": "missing or wrong API key"}})


class Reloaded(BaseModel):
    model_version: str
    swapped: bool


class Flushed(BaseModel):
    flushed: bool
    log_queue: int


@router.post("/reload", response_model=Reloaded,
             responses={503: {"description": "the deployed version could not be loaded"}})
async def reload(state: State) -> Reloaded:
    """Load the deployed version now if it moved; say which version answers from here on."""
    before = state.live.version
    try:
        swapped = await asyncio.to_thread(state.live.refresh)
    except Exception as exc:  # as the poll: the model in hand keeps serving
        raise HTTPException(503, f"version {before} keeps serving; the deployed model did "
                                 f"not load: {exc}") from None
    return Reloaded(model_version=state.live.version, swapped=swapped)


@router.post("/flush", response_model=Flushed)
async def flush(state: State) -> Flushed:
    """Write every queued prediction row to the log now."""
    done = await asyncio.to_thread(state.log.flush)
    return Flushed(flushed=bool(done), log_queue=state.log.depth)
