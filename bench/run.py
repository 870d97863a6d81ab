"""Run every benchmark in bench/ and print one table (``make bench``).

Each ``bench_*.py`` module has ``run() -> list[dict]``; a row has ``name``,
``value``, ``target`` and ``ok``. Results are also written to
``bench/results/<module>.json`` so runs can be compared.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).parent


def main(selected: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    console = Console()
    table = Table(title="loopml benchmarks", title_justify="left")
    for col in ("benchmark", "measure", "value", "target", "ok"):
        table.add_column(col)
    failed = False
    for path in sorted(HERE.glob("bench_*.py")):
        if selected and path.stem not in selected:
            continue
        rows = importlib.import_module(path.stem).run()
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"{path.stem}.json").write_text(json.dumps(rows, indent=2))
        for row in rows:
            failed |= row.get("ok") is False
            table.add_row(path.stem, row["name"], row["value"], row.get("target", ""),
                          {True: "[green]yes[/]", False: "[red]no[/]"}.get(row.get("ok"), ""))
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
