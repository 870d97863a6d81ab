"""What a group is, and the one function that applies it to rows.

A group is a definition, not a list of ids: "low contrast (pixel std <= 0.09,
the train part's lowest tenth)", "shop = s3 AND channel = web", "nearest to
centre 4 of these EfficientNet-Lite0 clusters". So it can be applied to any
rows (train, val, a pool of unlabelled rows, logged production rows) and
means the same thing on each: :func:`membership` gives the mask.

Keys are stable across runs (no run id in them): ``trait:<name>`` for
traits and tags, ``pair:<true>-><predicted>``, ``slice:<12 hex>``,
``cluster:<hash of the centres>:<label>``. Definitions round-trip through
JSON (:meth:`Group.to_dict`, :func:`group_from_dict`); arrays (cluster
centres) are kept in files by the group store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from loopml.data.dataset import plain_value
from loopml.exceptions import DataError, LoopmlError

if TYPE_CHECKING:
    from pathlib import Path

    from loopml.groups.rows import Rows


class GroupKind(StrEnum):
    """What sort of group: the reports' "kind" column."""

    TRAIT = "trait"  # a named yes/no property (scope, python, tag or built-in)
    PAIR = "pair"  # a most-confused (true -> predicted) pair of classes
    SLICE = "slice"  # a conjunction of predicates over columns, found by the search
    CLUSTER = "cluster"  # the rows nearest one centre in a pretrained encoder's space


class TraitSource(StrEnum):
    """Where a trait was defined."""

    SCOPE = "scope"  # loopml.yaml's traits:
    PYTHON = "python"  # a @loopml.trait function in traits.py
    TAG = "tag"  # ids tagged by hand (loopml tag)
    BUILTIN = "builtin"  # measured by loopml, with cut-offs fitted on the train part


_TYPES: dict[str, type[Group]] = {}


class Group(ABC):
    """A definition of a set of rows, applicable to any rows (see the module doc).

    Subclasses set ``type_name`` (the ``"type"`` of their JSON) and ``kind``,
    and implement ``key``, ``name``, ``description``, ``_members`` and
    ``_fields`` / ``_from_fields``.
    """

    type_name: ClassVar[str]
    kind: ClassVar[GroupKind]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__:
            _TYPES[cls.type_name] = cls

    @property
    @abstractmethod
    def key(self) -> str:
        """Stable id: the same definition has the same key in every run."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name, as tables show it."""

    @property
    @abstractmethod
    def description(self) -> str:
        """What it means, in words, with the numbers it was fitted with."""

    @abstractmethod
    def _members(self, rows: Rows) -> np.ndarray:
        """Bool mask over ``rows``; called through :func:`membership` only."""

    @abstractmethod
    def _fields(self) -> dict[str, Any]:
        """The JSON of what defines it (beyond type, key, kind, name, description)."""

    @classmethod
    @abstractmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> Group:
        """Rebuild from :meth:`to_dict`; ``folder`` holds array files (cluster centres)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready definition; :func:`group_from_dict` reads it back."""
        return {"type": self.type_name, "key": self.key, "kind": str(self.kind),
                "name": self.name, "description": self.description, **self._fields()}


class TraitGroup(Group):
    """A trait: a named yes/no property; its key is ``trait:<name>`` whatever its source."""

    kind = GroupKind.TRAIT
    source: ClassVar[TraitSource]

    @property
    def key(self) -> str:
        return f"trait:{self.name}"


def membership(group: Group, rows: Rows) -> np.ndarray:
    """Which of ``rows`` belong to ``group``: a bool array, one entry per row.

    ``rows`` is a :class:`~loopml.groups.rows.Rows` view (``Rows.of(dataset,
    ids)`` for rows of a dataset, ``Rows.from_frame(frame, like=dataset)`` for
    a pool or logged rows with the same columns). The mask is computed once
    per group key and rows view; a copy is returned.

    Raises
    ------
    DataError
        If the rows lack what the group reads (a column, the labels and
        predictions a confused pair needs), naming it.
    """
    from loopml.groups.rows import Rows

    if not isinstance(group, Group):
        raise TypeError(f"group must be a loopml Group, but it is {type(group).__name__}; "
                        "get one from Project.groups() or an ErrorReport's definitions")
    if not isinstance(rows, Rows):
        raise TypeError(f"rows must be a Rows view, but it is {type(rows).__name__}; wrap a "
                        "DataFrame with Rows.from_frame(frame, like=dataset)")
    return rows.cached_mask(group.key, lambda: _checked(group, rows)).copy()


def _checked(group: Group, rows: Rows) -> np.ndarray:
    mask = np.asarray(group._members(rows))
    if mask.shape != (len(rows),):
        raise LoopmlError(f"group '{group.key}' gave {mask.shape} values for {len(rows)} rows")
    return mask.astype(bool)


def group_from_dict(data: dict[str, Any], *, folder: Path | None = None) -> Group:
    """The group :meth:`Group.to_dict` wrote; ``folder``: where its array files are."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in _TYPES:
        known = ", ".join(sorted(_TYPES))
        raise DataError(f"unknown group type {kind!r} in definition {data!r:.200}",
                        hint=f"known types: {known}; a newer loopml may have written it")
    try:
        return _TYPES[kind]._from_fields(data, folder)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"group definition {data.get('key')!r} ({kind}) is damaged: "
                        f"{type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- confused pairs


@dataclass(frozen=True)
class PairGroup(Group):
    """Rows of class ``true`` predicted as ``predicted``: needs labels and predictions."""

    true: Any
    predicted: Any

    type_name = "pair"
    kind = GroupKind.PAIR

    def __post_init__(self) -> None:
        object.__setattr__(self, "true", plain_value(self.true))
        object.__setattr__(self, "predicted", plain_value(self.predicted))

    @property
    def key(self) -> str:
        return f"pair:{self.true}->{self.predicted}"

    @property
    def name(self) -> str:
        return f"{self.true} → {self.predicted}"

    @property
    def description(self) -> str:
        return f"true {self.true}, predicted {self.predicted}"

    def _members(self, rows: Rows) -> np.ndarray:
        truth, predicted = rows.labels(), rows.predicted(why=f"confused pair '{self.name}'")
        return (truth == self.true) & (predicted == self.predicted)

    def _fields(self) -> dict[str, Any]:
        return {"true": self.true, "predicted": self.predicted}

    @classmethod
    def _from_fields(cls, data: dict[str, Any], folder: Path | None) -> PairGroup:
        return cls(data["true"], data["predicted"])
