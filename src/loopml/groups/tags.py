"""Manual tags: ids a person marked with a trait (``loopml tag ID TRAIT``).

Kept in ``.loopml/tags.json``; error analysis counts each tag like any trait,
and :class:`~loopml.groups.traits.TagTrait` applies it to rows by id.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from loopml.atomic import locked, write_text_atomic
from loopml.exceptions import DataError

TAGS_FILE = "tags.json"
TRAIT_NAME = re.compile(r"[\w.:-]+")  # whole name (fullmatch): "odd\n" is not one
MAX_TRAIT_NAME = 100  # reports, tables and MLflow tags show it whole


def check_trait_name(name: str) -> None:
    """Refuse a name reports could not show: other characters, or over 100 of them."""
    if len(name) > MAX_TRAIT_NAME:
        raise DataError(f"the trait name '{name[:40]}...' is {len(name):,} characters long; "
                        f"the most is {MAX_TRAIT_NAME}", hint="give it a short name")
    if not TRAIT_NAME.fullmatch(name):
        raise DataError(f"{name!r} is not a trait name",
                        hint="use letters, digits, '_', '.', ':' or '-', without spaces or "
                             "line breaks")


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
        check_trait_name(trait_name)
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
