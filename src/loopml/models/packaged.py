"""A saved model that predicts without the project: the pyfunc flavor loopml writes.

``loopml train`` saves each candidate as an MLflow model folder
(``.loopml/runs/<run_id>/artifacts/model/``): ``model.pkl`` (the fitted
Architecture, cloudpickled), ``schema.json`` (what a request must look like:
the feature columns, their kinds, the classes), ``MLmodel`` and the pinned pip
requirements. Its ``python_function`` flavor names this module as its loader,
so ``mlflow.pyfunc.load_model(folder).predict(frame)`` runs
:class:`PackagedModel` in any Python where loopml is installed, with no
project on disk; the sklearn flavor stays, so ``mlflow.sklearn.load_model``
still returns the fitted estimator. A server loads the same folder with
:func:`load`, which needs no mlflow import.

Why the folder carries no MLflow input signature: MLflow's enforcement refuses
an int64 column for a ``double`` column spec ("Can not safely convert int64 to
float64"), and pandas reads a CSV column of whole numbers as int64; its error
also prints the whole frame. We validate against ``schema.json`` instead
(:meth:`PackagedModel.validate`), with a message that names the column, the row
and the bad value. This module must not import mlflow (only ``loopml.track`` does).

Example::

    import mlflow.pyfunc, pandas as pd
    model = mlflow.pyfunc.load_model(".loopml/runs/<run_id>/artifacts/model")
    model.predict(pd.read_csv("new_penguins.csv"))   # prediction, proba:Adelie, ...
"""

from __future__ import annotations

import difflib
import json
import math
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from loopml.exceptions import LoopmlError

SCHEMA_FILE = "schema.json"
MLMODEL_FILE = "MLmodel"
PICKLE_FILE = "model.pkl"
#: text a numeric column reads as a missing value (besides blank text)
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none"})


class FeatureKind(StrEnum):
    """How a feature column is read (the kinds ``loopml init`` infers)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEXT = "text"
    IMAGE = "image"


class ModelInputError(LoopmlError, ValueError):
    """A frame a saved model cannot predict on; ``column`` names the culprit, if one."""

    def __init__(self, message: str, *, column: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.column = column


@dataclass(frozen=True)
class FeatureSpec:
    """One input column as training saw it (``nullable``: training had missing values)."""

    name: str
    kind: FeatureKind
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSchema:
    """What a request to a saved model must look like, and what it answers.

    Read from and written to ``schema.json`` (the dict ``Dataset.schema()`` builds).
    """

    task: str
    target: str
    features: tuple[FeatureSpec, ...]
    classes: tuple = ()
    image_shape: tuple[int, ...] | None = None
    data_version: str = ""

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = SCHEMA_FILE) -> ModelSchema:
        try:
            features = tuple(FeatureSpec(
                name=str(f["name"]), kind=FeatureKind(f["type"]),
                nullable=bool(f.get("nullable", True)), min=f.get("min"), max=f.get("max"),
                values=tuple(str(v) for v in f.get("values", ()))) for f in data["features"])
            shape = data.get("image_shape")
            return cls(task=str(data["task"]), target=str(data["target"]), features=features,
                       classes=tuple(data.get("classes") or ()),
                       image_shape=tuple(shape) if shape else None,
                       data_version=str(data.get("data_version", "")))
        except KeyError as exc:
            raise LoopmlError(f"{where} lacks the key {exc}",
                              hint="the model folder is damaged: retrain it") from None
        except (TypeError, ValueError) as exc:
            raise LoopmlError(f"{where} is not a model schema: {exc}",
                              hint="the model folder is damaged: retrain it") from None


@dataclass
class PackagedModel:
    """A fitted estimator with the schema it validates its input against.

    ``predict(frame)`` answers a DataFrame on the input's index: ``prediction``,
    and for classification one ``proba:<class>`` column per class the model was
    fitted on (``estimator.classes_`` order, the columns of the stored
    predictions). ``run_id`` is the MLflow run that trained it.
    """

    estimator: Any
    schema: ModelSchema
    run_id: str | None = None

    @property
    def output_columns(self) -> list[str]:
        """``prediction``, then one ``proba:<class>`` per class the model was fitted on."""
        if self.schema.task != "classification":
            return ["prediction"]
        return ["prediction", *(f"proba:{c}" for c in self.estimator.classes_)]

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Validate ``data`` (see :meth:`validate`) and predict every row."""
        if params:
            warnings.warn(f"a loopml model takes no params; ignoring {sorted(params)}",
                          stacklevel=2)
        X = self.validate(data)
        columns = self.output_columns
        if len(X) == 0:
            return pd.DataFrame(index=X.index, columns=columns)
        if self.schema.task != "classification":
            return pd.DataFrame({"prediction": np.asarray(self.estimator.predict(X), dtype=float)},
                                index=X.index)
        proba = np.asarray(self.estimator.predict_proba(X), dtype=float)
        out = pd.DataFrame(proba, index=X.index, columns=columns[1:])
        out.insert(0, "prediction", np.asarray(self.estimator.classes_)[np.argmax(proba, axis=1)])
        return out

    def validate(self, data: Any) -> pd.DataFrame:
        """The feature columns of ``data``, cast to what the model was trained on.

        Rules, per column kind of ``schema.json``:

        - every feature column must be present; extra columns (the target, ids,
          metadata) are ignored;
        - numeric: numbers of any dtype, booleans (as 0/1) and text that reads as a
          number (``" 181"``, ``"1e3"``); blank text and na/n/a/nan/null/none are
          missing. Other text, or an infinite value, is refused;
        - categorical: any value; a number is written the way training wrote it,
          so 2007 matches a level learned as ``"2007.0"`` and the reverse; a level
          never seen in training is accepted (the encoder pools it as rare);
        - text: any value, as text;
        - image: the path of an existing image file.

        Missing values are accepted in every column but image paths, whether or
        not training had any (``nullable``): the model imputes as it learned to
        (the numeric median with a missing-indicator, a "missing" level, empty
        text), so a row with a gap still gets the model's best answer. Values
        outside the training range are accepted too: drift is the monitor's call.
        """
        frame = _as_frame(data, self.schema)
        _check_columns(frame, self.schema)
        columns = {spec.name: _CASTS[spec.kind](frame[spec.name], spec)
                   for spec in self.schema.features}
        return pd.DataFrame(columns, index=frame.index)


def _as_frame(data: Any, schema: ModelSchema) -> pd.DataFrame:
    """A DataFrame from a frame, a record, a list of records or a 2-D array."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Mapping):
        scalar = all(np.ndim(v) == 0 for v in data.values())
        return pd.DataFrame([data] if scalar else dict(data))
    if isinstance(data, list) and all(isinstance(row, Mapping) for row in data):
        return pd.DataFrame(data)
    if isinstance(data, np.ndarray) and data.ndim == 2:
        if data.shape[1] != len(schema.features):
            raise ModelInputError(f"the array has {data.shape[1]} columns, but the model reads "
                                  f"{len(schema.features)}: {schema.names[:10]}",
                                  hint="pass a DataFrame with named columns")
        return pd.DataFrame(data, columns=schema.names)
    raise ModelInputError(f"cannot predict on a {type(data).__name__}",
                          hint="pass a pandas DataFrame (e.g. pd.read_csv(...)), a dict of "
                               "columns, or a list of records")


def _check_columns(frame: pd.DataFrame, schema: ModelSchema) -> None:
    present = [str(c) for c in frame.columns]
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        others = [c for c in present if c not in schema.names]
        close = {m: difflib.get_close_matches(m, others, n=1) for m in missing}
        guesses = "".join(f" ('{m}': did you mean '{c[0]}'?)" for m, c in close.items() if c)
        raise ModelInputError(
            f"the input lacks feature column(s) {', '.join(map(repr, missing))}{guesses}",
            column=missing[0], hint=f"the model reads: {', '.join(schema.names)}")
    repeated = sorted({n for n in present if present.count(n) > 1} & set(schema.names))
    if repeated:
        raise ModelInputError(f"feature column '{repeated[0]}' appears more than once",
                              column=repeated[0], hint="keep one column of each name")


def _numeric(values: pd.Series, spec: FeatureSpec) -> pd.Series:
    if ptypes.is_bool_dtype(values) or ptypes.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        numbers = np.array([_number(v) for v in values], dtype="float64")
        bad = np.isnan(numbers) & ~np.array([_is_missing(v) for v in values])
        if bad.any():
            _refuse(values, bad, spec, "must hold numbers")
    bad = np.isinf(numbers)
    if bad.any():
        _refuse(values, bad, spec, "must hold finite numbers")
    return pd.Series(numbers, index=values.index, name=spec.name)


def _number(value: Any) -> float:
    """The value as a float, or NaN if it is missing or not a number."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.number):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def _is_missing(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TEXT
    return value is None or value is pd.NA or value is pd.NaT or (
        isinstance(value, float | np.floating) and math.isnan(value))


def _refuse(values: pd.Series, bad: np.ndarray, spec: FeatureSpec, rule: str) -> None:
    first = int(np.flatnonzero(bad)[0])
    count = int(bad.sum())
    others = f" ({count} values are refused)" if count > 1 else ""
    raise ModelInputError(
        f"column '{spec.name}' {rule}, but row {values.index[first]!r} holds "
        f"{values.iloc[first]!r}{others}", column=spec.name,
        hint=f"'{spec.name}' is a numeric feature (training range {spec.min} to {spec.max}); "
             "fix or blank those values")


def _categorical(values: pd.Series, spec: FeatureSpec) -> pd.Series:
    known = set(spec.values)
    forms = {v: _level(v, known) for v in values.dropna().unique()}
    out = values.astype(object).map(forms)
    return out.where(out.notna(), None).rename(spec.name)


def _level(value: Any, known: set[str]) -> str:
    """The value written as training wrote its levels (``str``, as ``astype("string")``)."""
    text = str(value)
    if text in known or isinstance(value, bool | np.bool_):
        return text
    number = _number(value)
    if math.isfinite(number):
        forms = [str(int(number))] if number.is_integer() else []
        forms.append(str(number))
        return next((f for f in forms if f in known), text)
    return text


def _text(values: pd.Series, spec: FeatureSpec) -> pd.Series:
    return pd.Series([None if pd.isna(v) else str(v) for v in values], index=values.index,
                     dtype=object, name=spec.name)


def _image(values: pd.Series, spec: FeatureSpec) -> pd.Series:
    missing = values.isna().to_numpy()
    if missing.any():
        _refuse(values, missing, spec, "must hold image paths")
    absent = np.array([not os.path.isfile(str(v)) for v in values])
    if absent.any():
        first = int(np.flatnonzero(absent)[0])
        raise ModelInputError(f"column '{spec.name}' names no image file at row "
                              f"{values.index[first]!r}: {values.iloc[first]!r}",
                              column=spec.name, hint="give paths this process can read")
    return values.astype(str).rename(spec.name)


_CASTS = {FeatureKind.NUMERIC: _numeric, FeatureKind.CATEGORICAL: _categorical,
          FeatureKind.TEXT: _text, FeatureKind.IMAGE: _image}


def load(path: str | os.PathLike[str]) -> PackagedModel:
    """The model in a folder written by ``TrackedRun.save_model``, without importing mlflow."""
    folder = Path(path)
    if not folder.exists() and folder.name == "model" and folder.parent.name == "artifacts":
        raise LoopmlError(f"the model of run {folder.parent.parent.name[:8]} is missing "
                          f"({folder} was deleted)",
                          hint="its scores, report and 'loopml show' still work, and "
                               "'loopml diagnose' refits; to predict or judge labels, train "
                               "the architecture again with 'loopml train'")
    if not (folder / MLMODEL_FILE).is_file():
        raise LoopmlError(f"{folder} is not a saved model (it has no {MLMODEL_FILE})",
                          hint="pass the 'model' folder of a run: .loopml/runs/<run_id>/"
                               "artifacts/model")
    import yaml

    try:
        info = yaml.safe_load((folder / MLMODEL_FILE).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LoopmlError(f"{folder / MLMODEL_FILE} is not readable: {exc}".splitlines()[0],
                          hint="the model folder is damaged: retrain it") from None
    info = info if isinstance(info, dict) else {}
    pickled = info.get("flavors", {}).get("sklearn", {}).get("pickled_model", PICKLE_FILE)
    schema_file = folder / SCHEMA_FILE
    try:
        schema_data = json.loads(schema_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LoopmlError(f"{schema_file} is not readable: {exc}",
                          hint="the model folder is damaged: retrain it") from None
    schema = ModelSchema.from_dict(schema_data, where=str(schema_file))
    estimator = _unpickle(folder / pickled)
    fitted = list(getattr(estimator, "feature_types_", None) or schema.names)
    if fitted != schema.names:
        raise LoopmlError(f"{schema_file} lists features {schema.names[:10]}, but the model "
                          f"was fitted on {fitted[:10]}", hint="retrain the model")
    return PackagedModel(estimator, schema, run_id=info.get("run_id"))


def _unpickle(file: Path) -> Any:
    import cloudpickle

    try:
        with open(file, "rb") as handle:
            return cloudpickle.load(handle)
    except ModuleNotFoundError as exc:
        raise LoopmlError(f"{file} needs the package '{exc.name}', which is not installed",
                          hint=f"pip install -r {file.parent / 'requirements.txt'}") from None
    except (OSError, EOFError, ImportError, pickle.UnpicklingError, AttributeError) as exc:
        raise LoopmlError(f"{file} is not a readable model: {exc}",
                          hint="the model folder is damaged: retrain it") from None


def _load_pyfunc(path: str, model_config: dict | None = None) -> PackagedModel:
    """MLflow's hook: ``mlflow.pyfunc.load_model`` calls it with the model folder."""
    return load(path)
