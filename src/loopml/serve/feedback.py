"""``POST /feedback``: the true label of an earlier prediction, whenever it is known.

It needs the API key: labels become training data (``monitor --retrain``), so
whoever can post them can steer the next model. A prediction whose row is still
in the log's queue is known too, so a label sent right after its answer is not
refused as unknown.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from loopml.models.packaged import ModelSchema
from loopml.serve.dependencies import ServeState, State, require_api_key
from loopml.serve.rows import is_finite

router = APIRouter(tags=["feedback"], dependencies=[Depends(require_api_key)])


class Feedback(BaseModel):
    request_id: str = Field(min_length=1, max_length=64,
                            description="the request_id of a /predict answer")
    label: str | int | float | bool = Field(description="the true label of that row")


class FeedbackAnswer(BaseModel):
    request_id: str
    label: str | int | float | bool


@router.post("/feedback", response_model=FeedbackAnswer,
             responses={400: {"description": "the body is not readable (e.g. not UTF-8)"},
                        401: {"description": "the API key is missing or wrong"},
                        404: {"description": "no prediction has this request_id"},
                        422: {"description": "the label is not one the model can predict"}})
async def feedback(item: Feedback, state: State) -> FeedbackAnswer:
    """Record the true label of the row answered with ``request_id``."""
    _check_label(item.label, state)
    stored = await asyncio.to_thread(state.log.add_feedback, item.request_id, item.label)
    if not stored:
        raise HTTPException(404, f"no prediction has request_id '{item.request_id}'")
    return FeedbackAnswer(request_id=item.request_id, label=item.label)


def label_schema(schema: ModelSchema) -> dict:
    """The JSON schema of the labels :func:`_check_label` accepts for this model."""
    if schema.task != "classification":
        return {"type": "number", "title": "Label", "description": "the true value"}
    if not schema.classes:
        return {"type": ["string", "number", "boolean"], "title": "Label"}
    levels = list(dict.fromkeys([*schema.classes, *(str(c) for c in schema.classes)]))
    return {"enum": levels, "title": "Label", "description": "a class of the model"}


def _check_label(label: str | int | float | bool, state: ServeState) -> None:
    schema = state.live.model_pair[1].schema
    if schema.task == "classification" and schema.classes:
        classes = [str(c) for c in schema.classes]
        if str(label) not in classes:
            raise HTTPException(422, [{"loc": ["body", "label"], "type": "enum",
                                       "msg": f"label {label!r} is not a class of the model: "
                                              f"{', '.join(classes)}"}])
    elif schema.task != "classification" and (
            isinstance(label, bool) or not isinstance(label, int | float)
            or not is_finite(label)):
        raise HTTPException(422, [{"loc": ["body", "label"], "type": "float_type",
                                   "msg": f"label {label!r} must be a finite number "
                                          "(the model predicts a number)"}])
