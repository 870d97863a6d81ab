"""The ledger: every measured action and its lift, in ``.loopml/ledger.json``.

One entry per measurement (re-measuring an action, e.g. on another reference
run, appends a new entry; none is overwritten): the action (id, origin, target
group, examples added per part), the reference run it was measured on, the
metric and seeds, the :class:`~loopml.grow.lift.Lift` itself, when, and the
MLflow run that records it. Appends hold ``locked(state_dir, "ledger")`` and
rewrite the file atomically, so two processes never lose each other's entry.
The file is plain JSON (``{"format": 1, "entries": [...]}``) a user can read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopml.atomic import locked, write_text_atomic
from loopml.data.provenance import ActionRecord
from loopml.exceptions import LoopmlError
from loopml.grow.lift import Lift

LEDGER_FILE = "ledger.json"
LOCK_NAME = "ledger"
FORMAT = 1


@dataclass(frozen=True)
class LedgerEntry:
    """One measured action: what it added, on which run it was measured, its lift."""

    action_id: str
    origin: str
    target_group: str | None
    counts: dict[str, int]  # examples the action added, per part
    reference_run: str
    architecture: str
    metric: str
    seeds: int
    lift: Lift
    created: str
    lift_run_id: str | None

    @classmethod
    def of(cls, record: ActionRecord, lift: Lift) -> LedgerEntry:
        """The entry for ``record``'s action measured as ``lift``, stamped now."""
        return cls(action_id=record.action_id, origin=str(record.origin),
                   target_group=record.target_group, counts=dict(record.counts),
                   reference_run=lift.reference_run, architecture=lift.architecture,
                   metric=lift.metric, seeds=len(lift.seeds), lift=lift,
                   created=datetime.now(UTC).isoformat(timespec="seconds"),
                   lift_run_id=lift.run_id)

    @property
    def n_examples(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "origin": self.origin,
                "target_group": self.target_group, "counts": dict(self.counts),
                "n_examples": self.n_examples, "reference_run": self.reference_run,
                "architecture": self.architecture, "metric": self.metric,
                "seeds": self.seeds, "lift": self.lift.to_dict(), "created": self.created,
                "lift_run_id": self.lift_run_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        """The entry :meth:`to_dict` wrote; KeyError / TypeError / ValueError if damaged."""
        return cls(action_id=str(data["action_id"]), origin=str(data["origin"]),
                   target_group=data["target_group"],
                   counts={str(k): int(v) for k, v in data["counts"].items()},
                   reference_run=str(data["reference_run"]),
                   architecture=str(data["architecture"]), metric=str(data["metric"]),
                   seeds=int(data["seeds"]), lift=Lift.from_dict(data["lift"]),
                   created=str(data["created"]), lift_run_id=data["lift_run_id"])


class Ledger:
    """Reads and appends to ``.loopml/ledger.json``."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(state_dir)
        self.file = self.state_dir / LEDGER_FILE

    def entries(self) -> list[LedgerEntry]:
        """Every entry, oldest first; none when no action was measured yet."""
        try:
            text = self.file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._damaged(exc) from None
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or not isinstance(document["entries"], list):
                raise TypeError("expected an object with a list 'entries'")
            return [LedgerEntry.from_dict(e) for e in document["entries"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._damaged(exc) from None

    def append(self, entry: LedgerEntry) -> None:
        """Add one entry (under the ledger lock; the file is rewritten atomically)."""
        with locked(self.state_dir, LOCK_NAME):
            entries = self.entries()
            document = {"format": FORMAT, "entries": [e.to_dict() for e in [*entries, entry]]}
            write_text_atomic(self.file, json.dumps(document, indent=2) + "\n")

    def _damaged(self, exc: Exception) -> LoopmlError:
        return LoopmlError(
            f"the ledger {self.file} is damaged ({type(exc).__name__}: {exc})".splitlines()[0],
            hint="restore it from a backup, or move it aside (a new one is started); each "
                 "lift is also kept in its MLflow run's folder, "
                 ".loopml/runs/<run_id>/artifacts/lift.json")
