"""Plain values for JSON: the one conversion every stored or printed document goes through.

JSON has no NaN, no infinity and no numpy scalars; diagnoses, error reports
and ``--json`` documents all hold them. :func:`json_ready` turns NaN and
infinity into null, numpy scalars into Python ones, tuples into lists and
keys into strings, at any depth.

>>> json_ready({"a": float("nan"), 1: (2.0, float("inf"))})
{'a': None, '1': [2.0, None]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_ready(value: Any) -> Any:
    """``value`` with NaN/infinity as None and numpy scalars as Python ones, at any depth."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
