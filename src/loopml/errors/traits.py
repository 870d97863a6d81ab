"""Traits: named yes/no properties of an example, from four sources.

- ``scope``: predicates declared under ``traits:`` in loopml.yaml;
- ``python``: functions in the project's ``traits.py`` marked with
  :func:`trait`;
- ``tag``: ids a person tagged (``loopml tag ID TRAIT``), kept in
  ``.loopml/tags.json``;
- ``builtin``: what :mod:`loopml.errors.builtin` measures for the modality.

A function trait takes the examples' table (indexed by id, with features,
target and metadata) and may also ask for ``images`` ((n, C, H, W) in [0, 1])
or ``texts`` by naming those parameters::

    import loopml

    @loopml.trait(description="the reviewer's text mentions a refund")
    def refund(frame):
        return frame["review"].str.contains("refund", case=False)
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.atomic import locked, write_text_atomic
from loopml.exceptions import DataError, LoopmlError, ScopeError
from loopml.scope import TraitSpec

TAGS_FILE = "tags.json"
TRAIT_NAME = re.compile(r"^[\w.:-]+$")
_MARK = "__loopml_trait__"


@dataclass
class Trait:
    """One trait over the analysed examples."""

    name: str
    source: str  # scope | python | tag | builtin
    description: str
    mask: pd.Series  # bool, indexed by example id

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "description": self.description,
                "count": int(self.mask.sum())}


# ---------------------------------------------------------------- python traits


def trait(name: str | Callable | None = None, *, description: str | None = None):
    """Mark a function as a trait; usable bare (``@trait``) or with options."""

    def mark(fn: Callable) -> Callable:
        label = name if isinstance(name, str) else fn.__name__
        doc = (fn.__doc__ or "").strip().splitlines()
        setattr(fn, _MARK, {"name": label, "description": description or
                            (doc[0] if doc else "")})
        return fn

    return mark(name) if callable(name) else mark


def load_trait_functions(file: Path) -> list[Callable]:
    """The marked functions of a Python file, in the order they are defined."""
    spec = importlib.util.spec_from_file_location(f"loopml_traits_{abs(hash(file))}", file)
    if spec is None or spec.loader is None:
        raise ScopeError(f"cannot import trait file {file}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: report what broke and where
        raise ScopeError(f"importing trait file {file} failed: {type(exc).__name__}: {exc}",
                         hint="fix the file, or set traits_module: null in loopml.yaml"
                         ) from exc
    found = [v for v in vars(module).values() if callable(v) and hasattr(v, _MARK)]
    return sorted(found, key=lambda f: (getattr(f, "__code__", None) and
                  f.__code__.co_firstlineno) or 0)


def _call(fn: Callable, frame: pd.DataFrame, inputs: dict[str, Callable[[], Any]],
          file: Path | None) -> np.ndarray:
    info = getattr(fn, _MARK)
    where = f" in {file.name}" if file else ""
    wanted = inspect.signature(fn).parameters
    kwargs = {k: inputs[k]() for k in wanted if k in inputs}
    try:
        result = fn(frame, **kwargs)
    except Exception as exc:  # the user's code
        raise LoopmlError(f"trait '{info['name']}' (function {fn.__name__}{where}) failed: "
                          f"{type(exc).__name__}: {exc}",
                          hint="it receives the examples' table indexed by id"
                          + (f" and {', '.join(inputs)} if it names them" if inputs else "")
                          ) from exc
    mask = np.asarray(result)
    if mask.shape != (len(frame),):
        raise LoopmlError(f"trait '{info['name']}' (function {fn.__name__}{where}) returned "
                          f"shape {mask.shape}; expected one yes/no per example "
                          f"({len(frame)},)")
    try:
        return pd.Series(mask).fillna(False).astype(bool).to_numpy()
    except (TypeError, ValueError):
        raise LoopmlError(f"trait '{info['name']}' (function {fn.__name__}{where}) returned "
                          f"values that are not yes/no ({mask.dtype})") from None


# ---------------------------------------------------------------- scope traits


def _column(frame: pd.DataFrame, spec: TraitSpec) -> pd.Series:
    if spec.column not in frame.columns:
        columns = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(str(spec.column), columns, n=1)
        tip = f" Did you mean '{close[0]}'?" if close else ""
        raise ScopeError(f"trait '{spec.name}' in loopml.yaml names column '{spec.column}', "
                         f"which the data does not have.{tip}",
                         hint=f"the columns are: {', '.join(columns)}")
    return frame[spec.column]


def evaluate_spec(spec: TraitSpec, frame: pd.DataFrame) -> np.ndarray:
    """The examples a declared trait holds for."""
    if spec.where is not None:
        try:
            result = frame.eval(spec.where)
        except pd.errors.UndefinedVariableError as exc:
            name = re.search(r"'([^']+)'", str(exc))
            columns = ", ".join(map(str, frame.columns))
            raise ScopeError(f"trait '{spec.name}' in loopml.yaml: 'where' names "
                             f"{name.group(1) if name else 'a name'!r}, which is not a column",
                             hint=f"the columns are: {columns}") from None
        except Exception as exc:  # a pandas expression the user wrote
            raise ScopeError(f"trait '{spec.name}' in loopml.yaml: 'where' expression "
                             f"{spec.where!r} failed: {exc}") from None
        return pd.Series(result).fillna(False).astype(bool).to_numpy()
    values = _column(frame, spec)
    if spec.matches is not None:
        return values.astype("string").str.contains(spec.matches, regex=True).fillna(False) \
            .to_numpy(dtype=bool)
    if spec.between is not None:
        numbers = pd.to_numeric(values, errors="coerce")
        lo, hi = spec.between
        mask = numbers.notna()
        if lo is not None:
            mask &= numbers >= lo
        if hi is not None:
            mask &= numbers <= hi
        return mask.to_numpy(dtype=bool)
    if spec.isin is not None:
        return (values.isin(spec.isin) | values.astype(str).isin(map(str, spec.isin))) \
            .to_numpy(dtype=bool)
    if spec.missing is not None:
        return (values.isna() == spec.missing).to_numpy(dtype=bool)
    return ((values == spec.equals) | (values.astype(str) == str(spec.equals))) \
        .to_numpy(dtype=bool)


def _describe_spec(spec: TraitSpec) -> str:
    if spec.description:
        return spec.description
    if spec.where is not None:
        return spec.where
    if spec.matches is not None:
        return f"{spec.column} matches /{spec.matches}/"
    if spec.between is not None:
        lo, hi = spec.between
        return f"{spec.column} in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    if spec.isin is not None:
        return f"{spec.column} in {spec.isin}"
    if spec.missing is not None:
        return f"{spec.column} is {'missing' if spec.missing else 'present'}"
    return f"{spec.column} = {spec.equals!r}"


# ---------------------------------------------------------------- tags


class TagStore:
    """Manual tags, one JSON file in the project's state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.file = Path(state_dir) / TAGS_FILE

    def load(self) -> list[dict[str, str]]:
        if not self.file.exists():
            return []
        try:
            return json.loads(self.file.read_text())["tags"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{self.file} is not a loopml tag file: {exc}",
                            hint="fix or remove it; it holds {\"tags\": [{\"id\", "
                                 "\"trait\"}, ...]}") from None

    def by_trait(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for row in self.load():
            out.setdefault(row["trait"], set()).add(row["id"])
        return out

    def change(self, ids: list[str], trait_name: str, known: pd.Index, *,
               remove: bool = False) -> int:
        """Add (or remove) a tag on examples; every id must be one of ``known``."""
        if not TRAIT_NAME.match(trait_name):
            raise DataError(f"'{trait_name}' is not a trait name",
                            hint="use letters, digits, '_', '.', ':' or '-'")
        unknown = [i for i in ids if i not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], [str(k) for k in known[:50_000]], n=3)
            raise DataError(f"no example with id '{unknown[0]}' in the data"
                            + (f" ({len(unknown)} unknown ids)" if len(unknown) > 1 else ""),
                            hint=(f"close ids: {', '.join(close)}; " if close else "")
                            + "ids are listed by 'loopml errors' and in predictions.parquet")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.file.parent, "tags"):
            return self._change(ids, trait_name, remove=remove)

    def _change(self, ids: list[str], trait_name: str, *, remove: bool) -> int:
        rows = self.load()
        present = {(r["id"], r["trait"]) for r in rows}
        if remove:
            kept = [r for r in rows if not (r["trait"] == trait_name and r["id"] in ids)]
            changed = len(rows) - len(kept)
        else:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            new = [{"id": i, "trait": trait_name, "added": now} for i in dict.fromkeys(ids)
                   if (i, trait_name) not in present]
            kept, changed = rows + new, len(new)
        write_text_atomic(self.file, json.dumps({"tags": kept}, indent=1))
        return changed


# ---------------------------------------------------------------- all together


def compute_traits(frame: pd.DataFrame, *, specs: list[TraitSpec] = (),
                   functions: list[Callable] = (), function_file: Path | None = None,
                   tags: dict[str, set[str]] | None = None,
                   builtin: dict[str, tuple[np.ndarray, str]] | None = None,
                   inputs: dict[str, Callable[[], Any]] | None = None) -> list[Trait]:
    """Every trait over the rows of ``frame`` (indexed by id).

    Names must be unique across the user's sources (scope, python, tags); a
    built-in trait gives way to a user trait of the same name, since the
    user's meaning wins.
    """
    traits: list[Trait] = []

    def add(name: str, source: str, description: str, mask: np.ndarray) -> None:
        clash = next((t for t in traits if t.name == name), None)
        if clash is not None:
            raise ScopeError(f"trait '{name}' is defined twice ({clash.source} and {source})",
                             hint="rename one of them")
        traits.append(Trait(name, source, description, pd.Series(mask, index=frame.index)))

    for spec in specs:
        add(spec.name, "scope", _describe_spec(spec), evaluate_spec(spec, frame))
    for fn in functions:
        info = getattr(fn, _MARK)
        add(info["name"], "python", info["description"] or fn.__name__,
            _call(fn, frame, inputs or {}, function_file))
    for name, ids in (tags or {}).items():
        add(name, "tag", f"tagged by hand ({len(ids)} example(s) in all)",
            frame.index.isin(list(ids)))
    taken = {t.name for t in traits}
    for name, (mask, description) in (builtin or {}).items():
        if name not in taken:
            add(name, "builtin", description, mask)
    return traits
