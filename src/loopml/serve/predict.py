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

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from loopml.models.packaged import FeatureKind, ModelInputError, ModelSchema
from loopml.serve.batcher import ServerClosingError
from loopml.serve.dependencies import ServeState, json_body
from loopml.serve.rows import BATCH_KEY, RowsError, parse_rows

router = APIRouter(tags=["predict"])

_VALUE = {"type": ["string", "number", "boolean", "null"]}
_ROW = {"type": "object", "title": "Row", "additionalProperties": _VALUE,
        "description": "one row: feature name -> value (the fields of the model's schema)"}
#: JSON types each feature kind takes (rows.py checks exactly these)
_KIND_TYPES = {FeatureKind.NUMERIC: ["number", "null"],
               FeatureKind.CATEGORICAL: ["string", "number", "boolean", "null"],
               FeatureKind.TEXT: ["string", "null"], FeatureKind.IMAGE: ["string"]}


def _body(row: dict) -> dict:
    return {"anyOf": [row, {"type": "object", "title": "Batch", "required": [BATCH_KEY],
                            "additionalProperties": False,
                            "properties": {BATCH_KEY: {"type": "array", "minItems": 1,
                                                       "items": row}}}]}


def request_schema(schema: ModelSchema) -> dict:
    """The JSON schema of a /predict body for this model: its fields, kinds and levels.

    The OpenAPI docs show it (``create_app`` builds them from the served model),
    so a client generated from them sends rows the model reads.
    """
    properties = {}
    for spec in schema.features:
        field: dict[str, Any] = {"type": _KIND_TYPES[spec.kind], "title": spec.name}
        if spec.kind == FeatureKind.CATEGORICAL and spec.values:
            field["examples"] = list(spec.values[:10])
        elif spec.kind == FeatureKind.NUMERIC and spec.min is not None and spec.max is not None:
            field["description"] = f"seen in training: {spec.min:g} to {spec.max:g}"
        properties[spec.name] = field
    return _body({"type": "object", "title": "Row", "properties": properties,
                  "required": schema.names, "additionalProperties": False})


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
             openapi_extra={"requestBody": {
                 "required": True, "content": {"application/json": {"schema": _body(_ROW)}}}},
             responses={200: {"model": OneAnswer | BatchAnswer},
                        413: {"description": "the body is over the server's limit"},
                        422: {"description": "a field is missing, unknown or of the wrong type "
                                             "(`detail[].loc` names the row and field), or "
                                             "the model cannot compute with its values"},
                        503: {"description": "the server is shutting down; retry"}})
async def predict(request: Request) -> JSONResponse:
    """Predict one row (a JSON object) or a batch (``{"rows": [...]}``)."""
    # The request alone, no Depends: FastAPI's dependency solving cost more per request
    # than everything else on this route (the body schema is in openapi_extra instead).
    received = time.perf_counter()
    state: ServeState = request.app.state.serve
    body = await json_body(request)
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
