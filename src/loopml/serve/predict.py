"""``POST /predict``: one row or a batch, answered from the next micro-batch.

One row in (a JSON object of feature -> value), one object out::

    {"model_version": "3", "request_id": "9f0c...", "prediction": "Adelie",
     "probabilities": {"Adelie": 0.97, "Chinstrap": 0.02, "Gentoo": 0.01}}

A batch in (``{"rows": [row, ...]}``), the same per row, in order::

    {"model_version": "3", "predictions": [{"request_id": ..., "prediction": ...,
                                            "probabilities": {...}}, ...]}

``probabilities`` is null for a regression model. All rows of one request are
predicted by the same model version. The response is written with
``JSONResponse`` directly: FastAPI's response-model validation would cost more
than the model call of a small batch.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from loopml.models.packaged import ModelInputError
from loopml.serve.batcher import ServerClosingError
from loopml.serve.dependencies import JsonBody, State
from loopml.serve.rows import BATCH_KEY, RowsError, parse_rows

router = APIRouter(tags=["predict"])

_VALUE = {"type": ["string", "number", "boolean", "null"]}
_ROW = {"type": "object", "title": "Row", "additionalProperties": _VALUE,
        "description": "one row: feature name -> value (the fields of the model's schema)"}
_BODY = {"anyOf": [_ROW, {"type": "object", "title": "Batch", "required": [BATCH_KEY],
                          "additionalProperties": False,
                          "properties": {BATCH_KEY: {"type": "array", "minItems": 1,
                                                     "items": _ROW}}}]}


class RowAnswer(BaseModel):
    request_id: str
    prediction: Any
    probabilities: dict[str, float] | None


class OneAnswer(RowAnswer):
    model_version: str


class BatchAnswer(BaseModel):
    model_version: str
    predictions: list[RowAnswer]


@router.post("/predict", response_class=JSONResponse,
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": _BODY}}}},
             responses={200: {"model": OneAnswer | BatchAnswer},
                        413: {"description": "the body is over the server's limit"},
                        422: {"description": "a field is missing, unknown or of the wrong type; "
                                             "`detail[].loc` names the row and field"}})
async def predict(body: JsonBody,
                  state: State) -> JSONResponse:
    """Predict one row (a JSON object) or a batch (``{"rows": [...]}``)."""
    received = time.perf_counter()
    try:
        rows, is_batch = parse_rows(body, state.live.model_pair[1].schema)
        answer = await state.batcher.submit(rows, received)
    except RowsError as exc:
        raise HTTPException(422, exc.errors) from None
    except ModelInputError as exc:
        loc = ["body", *([exc.column] if exc.column else [])]
        raise HTTPException(422, [{"loc": loc, "msg": exc.message, "type": "value_error"}]
                            ) from None
    except ServerClosingError as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    answers = answer.rows()
    if is_batch:
        return JSONResponse({"model_version": answer.version, "predictions": answers})
    return JSONResponse({"model_version": answer.version, **answers[0]})
