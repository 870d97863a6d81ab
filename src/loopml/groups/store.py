"""The project's groups, kept by key so a group found once means the same thing later.

``.loopml/groups/groups.json`` holds every group an analysis found or fitted
that cannot be rebuilt from the user's files: discovered slices (with the
traits their columns stand for), embedding clusters (their centres in
``.loopml/groups/<hash>.npy``) and the built-in traits with the cut-offs
fitted on train. Each entry keeps the run that first found it. The user's own
traits (loopml.yaml, traits.py, tags) are read from their sources each time
(:meth:`Groups.including`), so an edit there is never shadowed by a stale copy.

Projects from before groups travelled kept slices only, in
``.loopml/errors/definitions.json``; that file is still read (and left as it
is) until the first write of ``groups.json``, which carries its slices over.

The store is handed to a stage as a :class:`Groups` value; the stage never
opens these files. The project loads it, and adds what the stage returns
under a file lock (:func:`loopml.atomic.locked`), each file written atomically.
"""

from __future__ import annotations

import difflib
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from loopml.atomic import locked, write_bytes_atomic, write_text_atomic
from loopml.exceptions import DataError, LoopmlError
from loopml.groups.cluster import ClusterGroup
from loopml.groups.group import Group, GroupKind, TraitGroup, TraitSource, group_from_dict
from loopml.groups.slice import Slice, SliceGroup

GROUPS_DIR = "groups"
GROUPS_FILE = "groups.json"
#: where projects kept their slice definitions before groups travelled
LEGACY_FILE = Path("errors") / "definitions.json"
FORMAT = 1


@dataclass(frozen=True)
class StoredGroup:
    """A group and when it was first found (None for the user's traits, read live)."""

    group: Group
    first_run: str | None = None
    first_seen: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"definition": self.group.to_dict(), "first_run": self.first_run,
                "first_seen": self.first_seen}


SHOWN_KEYS = 20  # group keys an error message lists


class Groups(Mapping[str, Group]):
    """The groups of a project by key, in the order they were first found."""

    def __init__(self, entries: Iterable[StoredGroup] = ()) -> None:
        self._entries: dict[str, StoredGroup] = {}
        for entry in entries:
            self._entries.setdefault(entry.group.key, entry)

    def __getitem__(self, key: str) -> Group:
        return self._entries[key].group

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Groups({list(self._entries)})"

    def entry(self, key: str) -> StoredGroup:
        return self._entries[key]

    def find(self, key: str) -> Group:
        """The group ``key``, or a LoopmlError that lists close keys."""
        if key in self._entries:
            return self[key]
        keys = list(self._entries)
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
        shown = ", ".join(keys[:SHOWN_KEYS]) + (f", ... ({len(keys)} in all)"
                                                 if len(keys) > SHOWN_KEYS else "")
        raise LoopmlError(f"no group '{key}' in this project",
                          hint=(f"close keys: {', '.join(close)}; " if close else "")
                          + f"the groups are: {shown or 'none yet'} ('loopml errors' finds and "
                            "stores them; 'loopml errors --json' lists them under \"ranked\")")

    def of_kind(self, kind: GroupKind) -> list[Group]:
        return [g for g in self.values() if g.kind is kind]

    def builtin_traits(self, modality: str) -> list[Group]:
        """The stored built-in traits of a modality (fitted on train, kept since)."""
        return [g for g in self.values() if isinstance(g, TraitGroup)
                and g.source is TraitSource.BUILTIN and getattr(g, "modality", None) == modality]

    def with_new(self, groups: Iterable[Group], run_id: str) -> Groups:
        """These groups plus those of ``groups`` not known yet, first found by ``run_id``."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return Groups([*self._entries.values(),
                       *(StoredGroup(g, run_id, now) for g in groups)])

    def including(self, groups: Iterable[Group]) -> Groups:
        """``groups`` (the user's traits) in place of any stored group of the same key.

        Stored slices whose columns name traits without their definitions
        (kept before groups travelled) read those traits from the result.
        """
        extra = {g.key: StoredGroup(g) for g in groups}
        merged = {**self._entries, **extra}
        traits = {g.group.name: g.group for g in merged.values()
                  if isinstance(g.group, TraitGroup)}
        return Groups(StoredGroup(e.group.with_traits(traits), e.first_run, e.first_seen)
                      if isinstance(e.group, SliceGroup) else e for e in merged.values())

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "groups": [e.to_dict() for e in self._entries.values()]}


class GroupStore:
    """Reads and adds to a project's stored groups (see the module doc)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.folder = self.state_dir / GROUPS_DIR
        self.file = self.folder / GROUPS_FILE
        self.legacy = self.state_dir / LEGACY_FILE

    def load(self) -> Groups:
        """The stored groups (none yet: an empty set)."""
        if self.file.exists():
            return self._read(self.file, self._current)
        if self.legacy.exists():
            return self._read(self.legacy, _legacy)
        return Groups()

    def add(self, groups: Iterable[Group], run_id: str) -> Groups:
        """Store the groups not stored yet (by key); known ones keep their first sighting."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with locked(self.state_dir, "groups"):
            stored = self.load()
            merged = stored.with_new(groups, run_id)
            if len(merged) == len(stored) and self.file.exists():
                return stored  # nothing new: leave the file as it is
            for key in merged:
                group = merged[key]
                if key not in stored and isinstance(group, ClusterGroup):
                    self._save_centres(group)
            write_text_atomic(self.file, json.dumps(merged.to_dict(), indent=1))
        return merged

    def _save_centres(self, group: ClusterGroup) -> None:
        path = self.folder / group.centres_file
        if not path.exists():
            buffer = io.BytesIO()
            np.save(buffer, group.all_centres(), allow_pickle=False)
            write_bytes_atomic(path, buffer.getvalue())

    def _read(self, path: Path, parse) -> Groups:
        try:
            data = json.loads(path.read_text())
            return Groups(parse(data))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError,
                AttributeError, DataError) as exc:
            detail = exc.message if isinstance(exc, DataError) else f"{type(exc).__name__}: {exc}"
            raise DataError(f"{path} is not a loopml group store: {detail}",
                            hint="restore it from a backup, or move it away (the groups it "
                                 "held will be found again by the next 'loopml errors')"
                            ) from None

    def _current(self, data: dict[str, Any]) -> list[StoredGroup]:
        return [StoredGroup(group_from_dict(e["definition"], folder=self.folder),
                            e.get("first_run"), e.get("first_seen")) for e in data["groups"]]


def _legacy(data: dict[str, Any]) -> list[StoredGroup]:
    """Slices as ``errors/definitions.json`` kept them: key, description, slice, first_*."""
    return [StoredGroup(SliceGroup(Slice.from_dict(e["slice"])), e.get("first_run"),
                        e.get("first_seen")) for e in data.get("slices", [])]
