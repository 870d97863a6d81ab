"""Slices as groups: conjunctions of predicates over columns that travel to any rows.

:class:`Predicate` and :class:`Slice` are the definitions the slice search
(:mod:`loopml.errors.slices`) finds; a :class:`SliceGroup` is a slice plus
what its columns mean when they are not plain columns of the rows: a trait
(``low_contrast``, defined by its own group, so it is re-measured on the new
rows with the cut-offs fitted on train) or a word (``word:parcel``, whether
the row's text holds it). So a slice found on val selects the matching rows
of a pool file, whether its columns are features, metadata, traits or words.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.data.dataset import plain_value
from loopml.exceptions import DataError
from loopml.groups.group import Group, GroupKind, group_from_dict, membership

if TYPE_CHECKING:
    from pathlib import Path

    from loopml.groups.rows import Rows

KINDS = ("eq", "range", "missing")
#: the prefix of slice columns that say whether a row's text holds a word
WORD_PREFIX = "word:"


# ------------------------------------------------------------------ predicates


# ------------------------------------------------------------------ predicates


def _number(value: float) -> str:
    return f"{value:.6g}"


@dataclass(frozen=True)
class Predicate:
    """One condition on one column.

    Parameters
    ----------
    column : str
        The column it reads.
    kind : {"eq", "range", "missing"}
        ``eq``: the column equals ``value`` (a categorical level, a numeric
        level, or ``True`` for a boolean trait); ``range``: ``lo <= x < hi``,
        either end may be None for an open end; ``missing``: the value is
        missing (None or NaN).
    value : str, int, float or bool, optional
        The level, for ``eq``.
    lo, hi : float, optional
        The ends, for ``range``.
    """

    column: str
    kind: str
    value: object = None
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Predicate kind must be one of {list(KINDS)}, "
                             f"but it is {self.kind!r}.")
        if self.kind == "eq" and self.value is None:
            raise ValueError(f"An 'eq' predicate on {self.column!r} needs a value.")
        if self.kind == "range" and self.lo is None and self.hi is None:
            raise ValueError(f"A 'range' predicate on {self.column!r} needs lo or hi.")
        for name in ("value", "lo", "hi"):
            object.__setattr__(self, name, plain_value(getattr(self, name)))

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` it holds for, as a bool array of length ``len(frame)``.

        Raises
        ------
        DataError
            If ``frame`` has no such column, or a range predicate meets a
            column that is not numeric.
        """
        if self.column not in frame.columns:
            columns = [str(c) for c in frame.columns]
            shown = ", ".join(columns[:30]) + (", ..." if len(columns) > 30 else "")
            raise DataError(f"The slice predicate '{self.describe()}' reads column "
                            f"{self.column!r}, but the frame has no such column.",
                            hint=f"the frame's columns are: {shown}")
        series = frame[self.column]
        if self.kind == "missing":
            return series.isna().to_numpy(dtype=bool)
        if self.kind == "eq":
            return (series == self.value).to_numpy(dtype=bool, na_value=False)
        try:
            x = series.to_numpy(dtype=float, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataError(f"The slice predicate '{self.describe()}' needs a numeric "
                            f"column, but {self.column!r} holds {series.dtype}.") from exc
        inside = ~np.isnan(x)
        if self.lo is not None:
            inside &= x >= self.lo
        if self.hi is not None:
            inside &= x < self.hi
        return inside

    def describe(self) -> str:
        """Human text: ``island = Biscoe``, ``4.2 <= bill < 5.1``, ``age ≥ 60``."""
        if self.kind == "missing":
            return f"{self.column} is missing"
        if self.kind == "eq":
            if isinstance(self.value, bool):
                return self.column if self.value else f"not {self.column}"
            return f"{self.column} = {self.value}"
        if self.lo is None:
            return f"{self.column} < {_number(self.hi)}"
        if self.hi is None:
            return f"{self.column} ≥ {_number(self.lo)}"
        return f"{_number(self.lo)} <= {self.column} < {_number(self.hi)}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"column": self.column, "kind": self.kind}
        if self.kind == "eq":
            out["value"] = self.value
        elif self.kind == "range":
            out.update(lo=self.lo, hi=self.hi)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Predicate:
        return cls(column=d["column"], kind=d["kind"], value=d.get("value"),
                   lo=d.get("lo"), hi=d.get("hi"))


def _canonical(predicate: Predicate) -> str:
    return json.dumps(predicate.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class Slice:
    """The rows where all ``predicates`` hold.

    The predicates are kept in a canonical order, so two slices built from the
    same predicates in any order are equal and share a :attr:`key`.
    """

    predicates: tuple[Predicate, ...]

    def __post_init__(self) -> None:
        if not self.predicates:
            raise ValueError("A slice needs at least one predicate.")
        object.__setattr__(self, "predicates", tuple(sorted(self.predicates, key=_canonical)))

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Bool array of length ``len(frame)``: the AND of the predicates' masks."""
        inside = np.ones(len(frame), dtype=bool)
        for predicate in self.predicates:
            inside &= predicate.mask(frame)
        return inside

    def describe(self) -> str:
        return " AND ".join(p.describe() for p in self.predicates)

    @property
    def key(self) -> str:
        """A stable id: 12 hex digits of the SHA-1 of the canonical JSON."""
        text = json.dumps([p.to_dict() for p in self.predicates], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"predicates": [p.to_dict() for p in self.predicates]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Slice:
        return cls(tuple(Predicate.from_dict(p) for p in d["predicates"]))



# ------------------------------------------------------------------ the group


@dataclass(frozen=True)
class SliceGroup(Group):
    """A slice, and the groups behind its columns that are traits.

    ``columns`` maps a predicate's column to the trait group it stands for
    (the search sliced on the trait's yes/no column); any other column is read
    from the rows (features, metadata, the label, compared as text for
    classification) or, for ``word:<w>``, from the rows' text.
    """

    slice: Slice
    columns: dict[str, Group] = field(default_factory=dict, compare=False, hash=False)

    type_name = "slice"
    kind = GroupKind.SLICE

    @property
    def key(self) -> str:
        return f"slice:{self.slice.key}"

    @property
    def name(self) -> str:
        return self.slice.describe()

    @property
    def description(self) -> str:
        return self.slice.describe()

    def with_traits(self, traits: dict[str, Group]) -> SliceGroup:
        """A copy whose unresolved columns that name a trait (``x`` or ``trait:x``) read it.

        Slices stored before groups travelled name trait columns without
        their definitions; the project's current traits fill them in.
        """
        wanted = {p.column for p in self.slice.predicates} - set(self.columns)
        found = {c: traits[c.removeprefix("trait:")] for c in wanted
                 if c.removeprefix("trait:") in traits}
        return self if not found else SliceGroup(self.slice, {**self.columns, **found})

    def _members(self, rows: Rows) -> np.ndarray:
        columns = {c: self._column(c, rows) for c in dict.fromkeys(
            p.column for p in self.slice.predicates)}
        return self.slice.mask(pd.DataFrame(  # by position: ids of a pool may repeat
            {c: v.reset_index(drop=True) if isinstance(v, pd.Series) else v
             for c, v in columns.items()}, index=pd.RangeIndex(len(rows))))

    def _column(self, column: str, rows: Rows) -> np.ndarray | pd.Series:
        if column in self.columns:
            return membership(self.columns[column], rows)
        if column.startswith(WORD_PREFIX) and rows.has_text:
            return rows.holds_word(column.removeprefix(WORD_PREFIX))
        if column in rows.frame.columns:
            return rows.readable(column)
        shown = ", ".join(map(str, list(rows.frame.columns)[:30]))
        raise DataError(f"slice '{self.name}' reads column '{column}', which these rows do "
                        "not have", hint=f"the rows' columns are: {shown}"
                        + ("; a pool without labels cannot be sliced on the label"
                           if column == rows.target else ""))

    def _fields(self) -> dict[str, Any]:
        return {"slice": self.slice.to_dict(),
                "columns": {c: g.to_dict() for c, g in self.columns.items()}}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> SliceGroup:
        columns = {c: group_from_dict(g, folder=folder)
                   for c, g in (data.get("columns") or {}).items()}
        return cls(Slice.from_dict(data["slice"]), columns)
