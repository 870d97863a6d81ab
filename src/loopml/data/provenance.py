"""Where an example comes from: the nouns of provenance.

A project's examples are the rows of its source plus the rows loopml added
(augmented, synthesized, collected). Each added row carries its origin, the
example it was derived from (``parent_id``), the action that made it, the
group it was made for and the part of the split it belongs to; each action is
one :class:`ActionRecord`. The store that keeps them is
:mod:`loopml.data.examples`; this module only names things, so the Dataset and
the stages can speak of provenance without importing the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Origin(StrEnum):
    """How an example came to be."""

    SOURCE = "source"
    AUGMENT = "augment"
    SYNTH = "synth"
    COLLECT = "collect"

    @property
    def train_only(self) -> bool:
        """Made from training examples, so it may only ever train (never judge)."""
        return self in (Origin.AUGMENT, Origin.SYNTH)


#: The provenance of one example, in the order the store writes it.
PROVENANCE_COLUMNS = ("origin", "parent_id", "action_id", "target_group", "created",
                      "data_version", "part")


@dataclass(frozen=True)
class ActionRecord:
    """One action that added examples: what, when, for which group, how many where.

    ``data_version`` is the version the dataset had just before the action, so
    dropping the action (when nothing else changed) returns to exactly it.
    """

    action_id: str
    origin: Origin
    created: str
    data_version: str
    counts: dict[str, int]
    target_group: str | None = None
    note: str = ""

    @property
    def n_examples(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "origin": str(self.origin),
                "created": self.created, "data_version": self.data_version,
                "counts": dict(self.counts), "target_group": self.target_group,
                "note": self.note}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> ActionRecord:
        return cls(action_id=entry["action_id"], origin=Origin(entry["origin"]),
                   created=entry["created"], data_version=entry["data_version"],
                   counts={str(k): int(v) for k, v in entry["counts"].items()},
                   target_group=entry["target_group"], note=entry["note"])


@dataclass(frozen=True)
class DataSource:
    """One line of ``loopml data``: the source, or one action, and its examples per part."""

    name: str
    origin: Origin
    counts: dict[str, int]
    target_group: str | None = None
    created: str | None = None
    note: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "origin": str(self.origin), "target_group": self.target_group,
                "created": self.created, "note": self.note, "counts": dict(self.counts),
                "total": self.total}


@dataclass(frozen=True)
class ExampleDrop:
    """What dropping one action did: the action, and the data version before and after."""

    record: ActionRecord
    data_version_before: str
    data_version_after: str
    split_version_before: str
    split_version_after: str
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def restored(self) -> bool:
        """True when the data is back at the version it had before the action."""
        return self.data_version_after == self.record.data_version

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.record.to_dict(), "removed": dict(self.removed),
                "data_version_before": self.data_version_before,
                "data_version_after": self.data_version_after,
                "split_version_before": self.split_version_before,
                "split_version_after": self.split_version_after,
                "restored": self.restored}
