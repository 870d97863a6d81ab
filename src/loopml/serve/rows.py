"""The rows of a ``POST /predict`` body, checked against the model's schema.

The body is one row, a JSON object of feature name -> value, or a batch,
``{"rows": [row, ...]}``. The checks are stricter than
:meth:`PackagedModel.validate` (which also reads CSV text): JSON carries types,
so a numeric feature takes a number or null, never a string, and a row may not
carry a field the model does not read (a typo would otherwise be predicted as a
missing value). Every refusal is reported as FastAPI reports its own: ``loc``
(``["body", "rows", 3, "flipper_length_mm"]``), ``msg`` naming the row and
field, and ``type``; at most :data:`MAX_ERRORS` of them.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from loopml.models.packaged import FeatureKind, ModelSchema

BATCH_KEY = "rows"
MAX_ERRORS = 20


class RowsError(ValueError):
    """The body's rows do not fit the schema; ``errors`` in FastAPI's 422 shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["msg"])
        self.errors = errors


class RowChecker:
    """The checks of one schema, prepared once: a request's rows are checked on the hot path.

    Most rows are clean: exactly the schema's fields, numeric ones holding finite
    numbers. :meth:`clean` answers that in one pass; only a row that fails it
    goes through :func:`_row_errors`, which names every problem.
    """

    _last: tuple[ModelSchema, RowChecker] | None = None  # the served schema changes rarely

    def __init__(self, schema: ModelSchema) -> None:
        self.schema = schema
        self.names = schema.names
        self.name_set = frozenset(self.names)
        self.numeric = tuple(f.name for f in schema.features if f.kind == FeatureKind.NUMERIC)
        self.others = tuple(f for f in schema.features if f.kind != FeatureKind.NUMERIC)

    @classmethod
    def of(cls, schema: ModelSchema) -> RowChecker:
        last = cls._last
        if last is None or last[0] is not schema:
            last = cls._last = (schema, cls(schema))
        return last[1]

    def clean(self, row: Any) -> bool:
        """True when ``row`` passes every check (False says nothing: see _row_errors)."""
        if type(row) is not dict or row.keys() != self.name_set:
            return False
        for name in self.numeric:
            value = row[name]
            kind = type(value)  # bool is not int here: a JSON true is not a number
            if not ((kind is float and value - value == 0.0)  # not NaN, not infinite
                    or (kind is int and -_BIG < value < _BIG) or value is None):
                return False
        return not any(_type_problem(row[f.name], f.kind) for f in self.others)


_BIG = 2**1000  # an integer a float holds; beyond it is_finite decides


def parse_rows(body: Any, schema: ModelSchema) -> tuple[list[dict[str, Any]], bool]:
    """The rows of ``body`` and whether it was a batch; raises :class:`RowsError`."""
    checker = RowChecker.of(schema)
    is_batch = (isinstance(body, dict) and len(body) == 1 and BATCH_KEY in body
                and BATCH_KEY not in checker.name_set)
    if is_batch:
        rows = body[BATCH_KEY]
        if not isinstance(rows, list):
            raise RowsError([_error(["body", BATCH_KEY], "'rows' must be a list of rows "
                                    f"(JSON objects), not {_json_type(rows)}", "list_type")])
        if not rows:
            raise RowsError([_error(["body", BATCH_KEY], "the batch is empty: 'rows' needs at "
                                    "least one row", "too_short")])
    elif isinstance(body, dict):
        rows = [body]
    else:
        raise RowsError([_error(["body"], "the body must be a JSON object (one row) or "
                                f"{{\"rows\": [...]}} (a batch), not {_json_type(body)}",
                                "model_type")])
    errors: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if checker.clean(row):
            continue
        where = ["body", BATCH_KEY, index] if is_batch else ["body"]
        errors += _row_errors(row, checker, where, f"row {index}: " if is_batch else "")
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise RowsError(errors[:MAX_ERRORS])
    return rows, is_batch


def _row_errors(row: Any, checker: RowChecker, where: list, prefix: str) -> list[dict]:
    if not isinstance(row, dict):
        return [_error(where, f"{prefix}a row must be a JSON object of feature -> value, not "
                              f"{_json_type(row)}", "model_type")]
    errors = []
    names = checker.names
    unknown = [key for key in row if key not in checker.name_set]
    for spec in checker.schema.features:
        if spec.name not in row:
            guess = difflib.get_close_matches(spec.name, unknown, n=1)
            also = f" (did you mean '{guess[0]}'?)" if guess else ""
            errors.append(_error([*where, spec.name], f"{prefix}field '{spec.name}' is "
                                 f"missing{also}", "missing"))
            continue
        problem = _type_problem(row[spec.name], spec.kind)
        if problem:
            errors.append(_error([*where, spec.name], f"{prefix}field '{spec.name}' ({spec.kind}) "
                                 f"{problem}", "type_error"))
    for key in unknown:
        guess = difflib.get_close_matches(key, names, n=1)
        also = f" (did you mean '{guess[0]}'?)" if guess else ""
        errors.append(_error([*where, key], f"{prefix}unknown field '{key}'{also}; the model "
                             f"reads: {', '.join(names)}", "extra_forbidden"))
    return errors


def _type_problem(value: Any, kind: FeatureKind) -> str | None:
    """Why ``value`` cannot be a ``kind`` feature, or None if it can."""
    if not is_finite(value):
        return f"must be a finite number or null, not {_short(value)}"
    if kind == FeatureKind.NUMERIC:
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return None
        return f"must be a number or null, not {_json_type(value)} {_short(value)}"
    if kind == FeatureKind.CATEGORICAL:
        if value is None or isinstance(value, str | int | float | bool):
            return None
        return f"must be a string, number, boolean or null, not {_json_type(value)}"
    if kind == FeatureKind.TEXT:
        if value is None or isinstance(value, str):
            return None
        return f"must be a string or null, not {_json_type(value)} {_short(value)}"
    if isinstance(value, str):  # image: a path the server can read
        return None
    return f"must be the path of an image file, not {_json_type(value)} {_short(value)}"


def is_finite(value: Any) -> bool:
    """False for a number a float cannot hold (NaN, infinity, 1e400 written as an integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _error(loc: list, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}
