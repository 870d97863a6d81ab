"""What the routers share: the app's state, the API key check, a size-bounded JSON body."""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from loopml.serve.batcher import MicroBatcher
from loopml.serve.live_model import LiveModel
from loopml.serve.prediction_log import PredictionLog
from loopml.serve.telemetry import ServeMetrics

API_KEY_HEADER = "X-API-Key"

_api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                               description="the server's API key")
_bearer = HTTPBearer(auto_error=False, description="the server's API key, as a bearer token")


@dataclass
class ServeState:
    """Everything a request needs; built by ``create_app``, started by its lifespan."""

    live: LiveModel
    batcher: MicroBatcher
    log: PredictionLog
    metrics: ServeMetrics
    api_key: str
    max_body_bytes: int


async def get_state(request: Request) -> ServeState:
    """The app's state (async: FastAPI runs a plain ``def`` dependency in a thread pool,
    a thread hop per request that cost more than the rest of /predict's checks)."""
    return request.app.state.serve


#: a route parameter that receives the app's :class:`ServeState`
State = Annotated[ServeState, Depends(get_state)]


async def require_api_key(request: Request,
                          key: Annotated[str | None, Security(_api_key_header)],
                          bearer: Annotated[HTTPAuthorizationCredentials | None,
                                            Security(_bearer)]) -> None:
    """Refuse (401) a request without the key in ``X-API-Key`` or ``Authorization: Bearer``."""
    given = key or (bearer.credentials if bearer else None)
    expected = request.app.state.serve.api_key
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        what = "wrong" if given else "missing"
        raise HTTPException(401, f"{what} API key: send it in the {API_KEY_HEADER} header or "
                                 "as 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})


async def json_body(request: Request) -> Any:
    """The body as JSON; over ``max_body_bytes`` is 413 before it is all read."""
    limit = request.app.state.serve.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HTTPException(422, [{"loc": ["body"], "msg": "the body is empty: send a JSON "
                                   "object (one row) or {\"rows\": [...]}", "type": "missing"}])
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, a 5,000-digit number
        raise HTTPException(422, [{"loc": ["body"], "msg": f"the body is not JSON: {exc}",
                                   "type": "json_invalid"}]) from None


#: a route parameter that receives the body as JSON (size-bounded)
JsonBody = Annotated[Any, Depends(json_body)]
