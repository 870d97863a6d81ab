"""Slice definitions kept across iterations, and their error on every run.

A slice found once stays defined (``.loopml/errors/definitions.json``), so
each later ``loopml errors`` re-scores it on the new run's predictions and
the report shows whether the work on it paid off. Traits are defined by
their sources and are re-scored the same way.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.atomic import locked, write_text_atomic
from loopml.errors.report import GroupStat, Scorer

DEFINITIONS_FILE = Path("errors") / "definitions.json"
MAX_RUNS = 20


def merge_definitions(stored: list[dict[str, Any]], slices: list[GroupStat], run_id: str
                      ) -> list[dict[str, Any]]:
    """The stored slice definitions plus the new ones among ``slices`` (by key)."""
    out = list(stored)
    known = {s["key"] for s in out}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for g in slices:
        if g.key not in known:
            out.append({"key": g.key, "description": g.description, "slice": g.extra["slice"],
                        "first_run": run_id, "first_seen": now})
            known.add(g.key)
    return out


class Definitions:
    """The stored slice definitions of a project."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.file = self.state_dir / DEFINITIONS_FILE

    def load(self) -> list[dict[str, Any]]:
        if not self.file.exists():
            return []
        return json.loads(self.file.read_text()).get("slices", [])

    def add(self, slices: list[GroupStat], run_id: str) -> list[dict[str, Any]]:
        """Store new slices (by key); known ones keep their first sighting."""
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.state_dir, "definitions"):
            stored = merge_definitions(self.load(), slices, run_id)
            write_text_atomic(self.file, json.dumps({"slices": stored}, indent=1))
        return stored


def rescore(runs: list[Any], masks: dict[str, tuple[str, str, pd.Series]], *, task: str,
            metric: str, classes: list) -> list[dict[str, Any]]:
    """Each group's error rate on every run (oldest first) over the val ids it shares.

    ``masks`` maps a group key to (kind, name, bool Series indexed by id).
    """
    history = {key: {"key": key, "kind": kind, "name": name, "runs": []}
               for key, (kind, name, _) in masks.items()}
    for run in runs[-MAX_RUNS:]:
        try:
            preds = run.predictions()
        except FileNotFoundError:
            continue
        val = preds[preds["part"] == "val"]
        if val.empty:
            continue
        scorer = Scorer.from_predictions(val, task, metric, classes)
        for key, (_, _, mask) in masks.items():
            inside = mask.reindex(scorer.ids, fill_value=False).to_numpy(dtype=bool)
            loss = scorer.loss[inside]
            history[key]["runs"].append({
                "run_id": run.run_id, "architecture": run.architecture,
                "created": run.created, "size": int(inside.sum()),
                "n_errors": int((inside & scorer.is_error).sum()),
                "rate": float(loss.mean()) if len(loss) else float("nan")})
    return [h for h in history.values() if any(np.isfinite(r["rate"]) for r in h["runs"])]
