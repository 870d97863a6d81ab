"""Guess the task and each column's type, so ``loopml init`` can write a scope
the user only has to correct, never to write from nothing."""

from __future__ import annotations

import pandas as pd
from pandas.api import types as ptypes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_CLASSES_FOR_INTEGERS = 20


def infer_task(target: pd.Series) -> str:
    """Classification for labels and small sets of integers, regression otherwise."""
    values = target.dropna()
    if ptypes.is_bool_dtype(values) or not ptypes.is_numeric_dtype(values):
        return "classification"
    if ptypes.is_float_dtype(values) and not (values == values.round()).all():
        return "regression"
    n_unique = values.nunique()
    if n_unique <= MAX_CLASSES_FOR_INTEGERS and n_unique <= max(2, len(values) // 5):
        return "classification"
    return "regression"


def infer_feature_type(column: pd.Series) -> str:
    """numeric, categorical, text or image (a column of image file paths)."""
    values = column.dropna()
    if ptypes.is_bool_dtype(values):
        return "categorical"
    if ptypes.is_numeric_dtype(values):
        return "numeric"
    strings = values.astype(str)
    if len(strings) == 0:
        return "categorical"
    if strings.str.lower().str.endswith(IMAGE_SUFFIXES).mean() > 0.9:
        return "image"
    words = strings.str.split().str.len().mean()
    if words >= 4 and strings.nunique() > 0.5 * len(strings):
        return "text"
    return "categorical"
