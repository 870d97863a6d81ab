"""The "Monitoring" section: what ``loopml monitor`` found in the logged traffic.

The renderer takes the plain document of ``MonitorResult.to_dict()`` (the
serve layer, where the result lives, sits above the reports), so a stored or
POSTed result can be redrawn as it is. ``loopml monitor`` writes it to
``.loopml/serve/monitor.html``: the alarms first (window, kind, name, effect
against its floor, p and q), then every test of the newest tested window,
then the notes, and the rule that decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopml.report.html import Report, Section

TITLE = "Monitoring"
_COLUMNS = ("window", "kind", "name", "statistic", "distance", "floor", "value", "reference",
            "p", "q")


def add_monitor_section(report: Report, document: Mapping[str, Any]) -> Section:
    """Add the monitoring section for one monitor result (its ``to_dict()``) and return it."""
    alarms = list(document["alarms"])
    tested = [w for w in document["windows"] if w["tested"]]
    section = report.add_section(TITLE, intro=(
        f"{len(alarms)} alarm(s) over {len(document['checks'])} test(s)" if alarms
        else f"No alarm over {len(document['checks'])} test(s)."))
    section.add_facts({"version": document["version"], "run": document["run_id"][:8],
                       "windows": f"{len(document['windows'])} of {document['window']} "
                                  f"({len(tested)} tested)",
                       "rows": sum(w["rows"] for w in document["windows"]),
                       "labelled rows": sum(w["labelled"] for w in document["windows"])})
    if alarms:
        section.add_table([_row(c) for c in alarms], caption="Alarms",
                          highlight=range(len(alarms)))
    if tested:
        newest = tested[-1]["index"]
        section.add_table([_row(c) for c in document["checks"] if c["window"] == newest],
                          caption=f"Every test of the newest window ({newest}: "
                                  f"{tested[-1]['start']} to {tested[-1]['end']})")
    for note in document.get("notes", []):
        section.add_text(note, note=True)
    section.add_text(f"Rule: {document['method']}. An alarm needs q <= FDR and an effect at "
                     "least its floor (monitor: in loopml.yaml).", note=True)
    return section


def _row(check: Mapping[str, Any]) -> dict[str, Any]:
    return {column: check.get(column) for column in _COLUMNS}


def monitor_report(document: Mapping[str, Any], *, project_name: str = "") -> Report:
    """A page of its own for one monitor result."""
    report = Report(f"Monitoring of {project_name}" if project_name else "Monitoring",
                    subtitle=f"champion version {document['version']}")
    add_monitor_section(report, document)
    return report
