"""The examples loopml added to a project, stored with their provenance.

Augmented, synthesized and collected examples never touch the user's files:
they live in ``.loopml/examples/``, one Parquet file of rows per action
(``<action_id>.parquet``) and a manifest of the actions (``actions.json``,
the list of :class:`ActionRecord`); image payloads are PNG files in
``<action_id>/``, referred to by paths relative to ``.loopml/`` so the project
folder can move. A row holds the dataset's columns (a dataset column named
like a provenance column is stored as ``data.<name>``) and ``id``, ``origin``,
``parent_id``, ``action_id``, ``target_group``, ``created``, ``data_version``
(the version the rows were made from) and ``part``.

The manifest is the commit point: an action exists once it is listed, so a
crash while adding leaves at most unlisted files, which loading ignores.
Callers hold ``locked(state_dir, "examples")`` around an add or a drop and
update the split in the same step (:meth:`loopml.project.Project.add_examples`).

Example ids are ``<action_id>-<row>`` (``augment-3f2a9c1b-00007``): stable,
since they are stored, and checked against the source's ids on every load.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.atomic import replace_dir_atomic, write_parquet_atomic, write_text_atomic
from loopml.data.dataset import ID_NAME, Dataset, close_matches
from loopml.data.provenance import PROVENANCE_COLUMNS, ActionRecord, DataSource, Origin
from loopml.data.split import PARTS, Split
from loopml.exceptions import DataError

EXAMPLES_DIR = "examples"
MANIFEST_FILE = "actions.json"
LOCK_NAME = "examples"
RESERVED = (ID_NAME, *PROVENANCE_COLUMNS)
SHOWN = 5  # ids named in an error message


class ExampleStore:
    """The files under ``.loopml/examples/``: read them, add one action, remove one."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.folder = self.state_dir / EXAMPLES_DIR

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST_FILE

    def rows_file(self, action_id: str) -> Path:
        return self.folder / f"{action_id}.parquet"

    def records(self) -> list[ActionRecord]:
        """Every action, in the order they were added."""
        if not self.manifest.exists():
            return []
        try:
            entries = json.loads(self.manifest.read_text())["actions"]
            return [ActionRecord.from_dict(e) for e in entries]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{self.manifest} is damaged ({type(exc).__name__}: {exc})",
                            hint="restore it from a backup; the rows are in the "
                                 "<action_id>.parquet files next to it") from None

    def find(self, action_id: str) -> ActionRecord:
        """The action whose id is ``action_id`` or starts with it (like a git hash)."""
        records = self.records()
        matches = [r for r in records if r.action_id.startswith(action_id)] if action_id else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = (f"the actions are: {', '.join(r.action_id for r in records)}" if records
                     else "no action has added examples yet; every example is the source's")
            raise DataError(f"no action '{action_id}' added examples to this project",
                            hint=f"{known} ('loopml data' lists them)")
        raise DataError(f"action id prefix '{action_id}' matches {len(matches)} actions: "
                        f"{', '.join(r.action_id for r in matches)}",
                        hint="give more characters of the id")

    def read_rows(self, record: ActionRecord) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One action's stored rows as (provenance, dataset columns), both indexed by id."""
        path = self.rows_file(record.action_id)
        try:
            rows = pd.read_parquet(path)
        except FileNotFoundError:
            raise DataError(f"the rows of action {record.action_id} are missing ({path})",
                            hint=f"restore the file, or forget the action with "
                                 f"'loopml data drop {record.action_id}'") from None
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{path} is not a readable Parquet file: {exc}") from None
        missing = [c for c in RESERVED if c not in rows.columns]
        if missing:
            raise DataError(f"{path} lacks the provenance column(s) {missing}",
                            hint=f"restore the file, or forget the action with "
                                 f"'loopml data drop {record.action_id}'")
        index = pd.Index(rows[ID_NAME].astype(str), name=ID_NAME)
        provenance = rows[list(PROVENANCE_COLUMNS)].set_axis(index, axis=0)
        data = rows.drop(columns=list(RESERVED)).set_axis(index, axis=0)
        return provenance, data.rename(columns={f"data.{c}": c for c in RESERVED})

    def write(self, record: ActionRecord, rows: pd.DataFrame, images: dict[str, bytes]) -> None:
        """Write one action's image files, rows and manifest entry (the commit, last)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        records = self.records()
        image_dir = self.folder / record.action_id
        try:
            if images:
                build = Path(tempfile.mkdtemp(dir=self.folder, prefix=f".{record.action_id}."))
                for name, data in images.items():
                    (build / name).write_bytes(data)
                replace_dir_atomic(build, image_dir)
            write_parquet_atomic(rows, self.rows_file(record.action_id))
            self._write_manifest([*records, record])
        except BaseException as exc:
            shutil.rmtree(image_dir, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.rows_file(record.action_id).unlink()
            if isinstance(exc, ValueError | TypeError):  # pyarrow: a column of mixed types
                raise DataError(f"the added rows cannot be stored: {exc}",
                                hint="give each column values of one type, as in the "
                                     "dataset") from None
            raise

    def remove(self, record: ActionRecord) -> None:
        """Forget one action: the manifest first (the commit), then its files."""
        self._write_manifest([r for r in self.records() if r.action_id != record.action_id])
        with contextlib.suppress(FileNotFoundError):
            self.rows_file(record.action_id).unlink()
        shutil.rmtree(self.folder / record.action_id, ignore_errors=True)

    def _write_manifest(self, records: list[ActionRecord]) -> None:
        document = {"actions": [r.to_dict() for r in records]}
        write_text_atomic(self.manifest, json.dumps(document, indent=2) + "\n")


# ---------------------------------------------------------------- loading


def join_examples(dataset: Dataset, state_dir: str | os.PathLike[str]) -> Dataset:
    """The dataset with the added examples of ``state_dir`` after the source's rows.

    Without added examples the dataset comes back as it is, so its version is
    the source's own.
    """
    store = ExampleStore(state_dir)
    records = store.records()
    if not records:
        return dataset
    loaded = [_loaded_rows(store, r, dataset) for r in records]
    provenance = pd.concat([p for p, _ in loaded])
    clash = provenance.index.intersection(dataset.ids)
    if len(clash) or not provenance.index.is_unique:
        same = clash if len(clash) else provenance.index[provenance.index.duplicated()]
        raise DataError(f"added example id(s) {same[:SHOWN].tolist()} are also ids of "
                        f"{'the data source' if len(clash) else 'another added example'}",
                        hint="drop the action that holds them with 'loopml data drop "
                             "ACTION_ID', or rename the source's ids")
    frame = pd.concat([dataset.frame, *[d for _, d in loaded]])
    return replace(dataset, frame=frame, added=provenance)


def _loaded_rows(store: ExampleStore, record: ActionRecord, dataset: Dataset
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    provenance, data = store.read_rows(record)
    for column in [*dataset.features, dataset.target]:
        if column not in data.columns:
            raise DataError(f"{store.rows_file(record.action_id)} has no column '{column}', "
                            "which the scope's data needs", hint="the scope changed since the "
                            f"action; drop it with 'loopml data drop {record.action_id}'")
    for column, kind in dataset.features.items():
        if kind == "image":
            data[column] = [str(store.state_dir / p) if isinstance(p, str) else p
                            for p in data[column]]
    return provenance, data.reindex(columns=dataset.frame.columns)


# ---------------------------------------------------------------- adding


def add_examples(dataset: Dataset, split: Split, frame: pd.DataFrame, *,
                 state_dir: str | os.PathLike[str], origin: Origin | str,
                 parent_ids: Sequence[Any] | None = None, target_group: str | None = None,
                 part: str | None = None, note: str = "",
                 new_classes: bool = False) -> ActionRecord:
    """Check and store one action's rows; returns its record.

    A label the dataset does not have is refused unless ``new_classes`` (a
    class that arrives with collected labels, asked for explicitly).

    ``split`` must be current for ``dataset``: parents are checked against its
    train part. Every check runs before anything is written. The caller holds
    the examples lock and updates the split afterwards.
    """
    origin = _origin(origin)
    target_group = str(target_group) if target_group else None
    rows = _checked_frame(dataset, frame, new_classes=new_classes)
    parents = _checked_parents(dataset, split, parent_ids, len(rows), origin)
    part = _checked_part(origin, part, any(p is not None for p in parents))
    store = ExampleStore(state_dir)
    taken = {r.action_id for r in store.records()}
    action_id = _new_action_id(origin, taken)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    images = _store_images(dataset, rows, action_id)
    ids = [f"{action_id}-{i:05d}" for i in range(len(rows))]
    clash = dataset.ids.intersection(pd.Index(ids))
    if len(clash):
        raise DataError(f"new example id(s) {clash[:SHOWN].tolist()} are already ids of the "
                        "dataset", hint="add the examples again (a new action id is drawn)")
    provenance = pd.DataFrame({
        ID_NAME: ids, "origin": str(origin), "parent_id": parents, "action_id": action_id,
        "target_group": target_group, "created": created,
        "data_version": dataset.version, "part": part})
    record = ActionRecord(action_id, origin, created, dataset.version,
                          counts={p: len(rows) if p == part else 0 for p in PARTS},
                          target_group=target_group, note=str(note))
    stored = rows.rename(columns={c: f"data.{c}" for c in RESERVED})
    store.write(record, pd.concat([provenance, stored], axis=1), images)
    return record


def _origin(origin: Origin | str) -> Origin:
    try:
        value = Origin(str(origin))
    except ValueError:
        value = None
    if value is None or value is Origin.SOURCE:
        allowed = ", ".join(o for o in Origin if o is not Origin.SOURCE)
        raise DataError(f"origin '{origin}' is not one of {allowed}",
                        hint="rows of the source come from the data source itself; "
                             "loopml adds augmented, synthesized or collected ones")
    return value


def _checked_frame(dataset: Dataset, frame: pd.DataFrame, *,
                   new_classes: bool = False) -> pd.DataFrame:
    """The rows with the dataset's columns, in its order, typed like the source."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"examples to add must be a pandas DataFrame, not "
                        f"{type(frame).__name__}")
    needed = [*dataset.features, dataset.target]
    if frame.empty:
        raise DataError("no examples to add: the frame has no rows",
                        hint=f"give rows with the columns {', '.join(needed)}")
    allowed = [*needed, *dataset.metadata]
    for column in map(str, frame.columns):
        if column not in allowed:
            raise DataError(f"column '{column}' of the added rows is not a column of the "
                            f"dataset.{close_matches(column, allowed)}",
                            hint=f"the dataset's columns are: {', '.join(allowed)}")
    for column in needed:
        if column not in frame.columns:
            raise DataError(f"the added rows lack column '{column}' of the dataset",
                            hint=f"give every feature and the target: {', '.join(needed)}")
    if frame.columns.duplicated().any():
        raise DataError(f"the added rows repeat column(s) "
                        f"{frame.columns[frame.columns.duplicated()].tolist()}")
    rows = frame.reset_index(drop=True)
    out = pd.DataFrame(index=rows.index)
    for column in dataset.frame.columns:
        source = dataset.frame[column]
        if column not in rows.columns:
            out[column] = None
        elif dataset.features.get(column) == "image":
            out[column] = rows[column]
        elif dataset.features.get(column) == "numeric" or (
                column == dataset.target and dataset.task == "regression"):
            out[column] = _numeric_like(rows[column], source, column)
        else:
            out[column] = rows[column]
    _check_target(dataset, out[dataset.target], new_classes=new_classes)
    if dataset.task == "classification":  # "3" for the class 3: the same class, the same type
        by_text = {str(c): c for c in dataset.classes}
        labels = pd.Series([by_text.get(str(v), v) for v in out[dataset.target]],
                           index=out.index)
        out[dataset.target] = labels.astype(dataset.frame[dataset.target].dtype)
    return out


def _numeric_like(values: pd.Series, source: pd.Series, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"column '{column}' of the added rows is numeric in the dataset, but "
                        f"row {row} holds {values.iloc[row]!r}", hint="give numbers there")
    kind = source.dtype.kind
    if kind == "f":
        return numbers.astype(source.dtype)
    if kind in "iu" and numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype(source.dtype)
    return numbers.astype(np.float64)


def _check_target(dataset: Dataset, target: pd.Series, *, new_classes: bool = False) -> None:
    missing = target.isna()
    if missing.any():
        rows = np.flatnonzero(missing.to_numpy())[:SHOWN].tolist()
        raise DataError(f"target '{dataset.target}' is missing in added row(s) {rows}",
                        hint="every added example needs its label")
    if dataset.task != "classification":
        return
    known = set(map(str, dataset.classes))
    unknown = sorted({str(v) for v in target} - known)
    if unknown and not new_classes:
        raise DataError(f"target '{dataset.target}' of the added rows holds class(es) "
                        f"{unknown[:SHOWN]} that the dataset does not have",
                        hint=f"the classes are: {', '.join(sorted(known))}")


def _checked_parents(dataset: Dataset, split: Split, parent_ids: Sequence[Any] | None,
                     n_rows: int, origin: Origin) -> list[str | None]:
    """Parents exist and are train examples: nothing is ever derived from val or test."""
    if parent_ids is None:
        if origin is Origin.AUGMENT:
            raise DataError("augmented rows need parent_ids: the train example each one was "
                            "made from", hint="pass parent_ids=[...] with one id per row")
        return [None] * n_rows
    parents = [None if p is None or (isinstance(p, float) and np.isnan(p)) else str(p)
               for p in parent_ids]
    if len(parents) != n_rows:
        raise DataError(f"parent_ids has {len(parents)} id(s) for {n_rows} added row(s)",
                        hint="give one parent id per row (None where a row has none)")
    if origin is Origin.AUGMENT and None in parents:
        rows = [i for i, p in enumerate(parents) if p is None][:SHOWN]
        raise DataError(f"augmented row(s) {rows} have no parent_id",
                        hint="every augmented row is made from one train example")
    given = pd.Index([p for p in parents if p is not None]).unique()
    unknown = given.difference(dataset.ids)
    if len(unknown):
        raise DataError(f"parent id(s) {unknown[:SHOWN].tolist()} are not examples of the "
                        f"dataset ({len(unknown)} in all)",
                        hint="parents must be ids of train examples: project.split.ids('train')")
    placed = split.parts.reindex(given).fillna("unplaced")
    outside = placed[placed != "train"]
    if len(outside):
        named = [f"{i} ({p})" for i, p in outside.iloc[:SHOWN].items()]
        raise DataError(f"parent id(s) {', '.join(named)} are not in the train part "
                        f"({len(outside)} in all): an example derived from a val or test "
                        "example would leak it into training",
                        hint="derive examples only from project.split.ids('train')")
    return parents


def _checked_part(origin: Origin, part: str | None, has_parents: bool) -> str:
    part = "train" if part is None else str(part)
    if part not in PARTS:
        raise DataError(f"part '{part}' is not one of {', '.join(PARTS)}")
    if origin.train_only and part != "train":
        raise DataError(f"{origin} examples go to train only, never to '{part}'",
                        hint="leave part unset: they are made from train examples")
    if has_parents and part != "train":
        raise DataError(f"examples with a parent go to train only, never to '{part}'",
                        hint="drop parent_ids to place collected examples in val or test")
    return part


def _new_action_id(origin: Origin, taken: set[str]) -> str:
    while True:
        action_id = f"{origin}-{secrets.token_hex(4)}"
        if action_id not in taken:
            return action_id


# ---------------------------------------------------------------- image payloads


def _store_images(dataset: Dataset, rows: pd.DataFrame, action_id: str) -> dict[str, bytes]:
    """PNG bytes by file name; the rows' image column then holds paths under .loopml/."""
    images: dict[str, bytes] = {}
    columns = [c for c, kind in dataset.features.items() if kind == "image"]
    for column in columns:
        paths = []
        for i, value in enumerate(rows[column]):
            name = f"{i:05d}.png" if len(columns) == 1 else f"{i:05d}-{column}.png"
            images[name] = _png_bytes(value, f"row {i} of the added rows, column '{column}'")
            paths.append(f"{EXAMPLES_DIR}/{action_id}/{name}")
        rows[column] = paths
    return images


def _png_bytes(value: Any, where: str) -> bytes:
    """An image file, PIL image or pixel array (HxW, HxWxC or CxHxW) as PNG bytes."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, str | os.PathLike):
        try:
            with Image.open(value) as opened:
                image = opened.copy()
        except (FileNotFoundError, UnidentifiedImageError, IsADirectoryError) as exc:
            raise DataError(f"{where}: {value} is not a readable image ({exc})") from None
        if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            image = image.convert("RGB")
    elif isinstance(value, Image.Image):
        image = value
    else:
        image = Image.fromarray(_pixels(value, where))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _pixels(value: Any, where: str) -> np.ndarray:
    """uint8 HxW or HxWxC pixels; floats must lie in [0, 1], integers in [0, 255]."""
    arr = np.asarray(value)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise DataError(f"{where}: an image must have shape (H, W), (H, W, C) or (C, H, W) "
                        f"with C in 1, 3, 4, not {arr.shape}")
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise DataError(f"{where}: float pixels must lie in [0, 1] (found "
                            f"{np.nanmin(arr):.3g} .. {np.nanmax(arr):.3g})",
                            hint="scale them, or give uint8 pixels in 0..255")
        return np.round(arr * 255).astype(np.uint8)
    if arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise DataError(f"{where}: integer pixels must lie in 0..255 (found "
                            f"{arr.min()} .. {arr.max()})")
        return arr.astype(np.uint8)
    raise DataError(f"{where}: {type(value).__name__} is not an image",
                    hint="give a pixel array, a PIL image or an image file's path")


# ---------------------------------------------------------------- dropping, listing


def drop_examples(dataset: Dataset, action_id: str, *,
                  state_dir: str | os.PathLike[str]) -> ActionRecord:
    """Remove one action's rows and files; refused while other actions derive from them.

    The caller holds the examples lock and updates the split afterwards.
    """
    store = ExampleStore(state_dir)
    record = store.find(action_id)
    provenance = dataset.provenance
    own = provenance.index[provenance["action_id"] == record.action_id]
    children = provenance[provenance["parent_id"].isin(own)
                          & (provenance["action_id"] != record.action_id)]
    if len(children):
        others = sorted(children["action_id"].unique())
        raise DataError(f"action {record.action_id}'s examples are parents of the examples "
                        f"of {', '.join(others)}",
                        hint=f"drop {', '.join(others)} first")
    store.remove(record)
    return record


def data_sources(dataset: Dataset, split: Split, records: list[ActionRecord]
                 ) -> list[DataSource]:
    """The source and each action, with their examples per part of ``split``."""
    parts = split.parts.reindex(dataset.ids)
    action = dataset.provenance["action_id"]

    def counts(mask: pd.Series) -> dict[str, int]:
        chosen = parts[mask.to_numpy()]
        return {p: int((chosen == p).sum()) for p in PARTS}

    sources = [DataSource("source", Origin.SOURCE, counts(action.isna()))]
    for r in records:
        sources.append(DataSource(r.action_id, r.origin, counts(action == r.action_id),
                                  target_group=r.target_group, created=r.created,
                                  note=r.note))
    return sources
