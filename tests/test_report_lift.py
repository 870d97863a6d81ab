"""The lift section of a run's report: real penguins, a real linear run, a real lift."""

from __future__ import annotations

import json
from html import escape

import pytest

from checks import penguins_with_a_harmful_action
from loopml import Project
from loopml.grow.ledger import LedgerEntry
from loopml.report import Report, format_value
from loopml.report.lift import TITLE, add_lift_section

HOSTILE = "<b>x&y</b>"


@pytest.fixture(scope="module")
def lifted(tmp_path_factory) -> tuple[Project, LedgerEntry]:
    """Penguins, one linear run, val Adelies tagged, 40 mislabelled rows added and lifted."""
    project, record = penguins_with_a_harmful_action(tmp_path_factory.mktemp("report_lift"))
    project.lift(record.action_id, seeds=2)
    return project, project.ledger()[-1]


def _report(project: Project) -> str:
    return project.runs()[0].report_path.read_text(encoding="utf-8")


def test_the_reference_runs_report_shows_the_lift_as_the_ledger_has_it(lifted) -> None:
    project, entry = lifted
    assert entry.reference_run == project.runs()[0].run_id
    page = _report(project)
    assert '<section id="lift-of-the-actions">' in page and f"<h2>{TITLE}</h2>" in page
    assert f"Action {entry.action_id} (collect, target trait:adelie_val)" in page
    overall = entry.lift.overall
    line = (f"{format_value(overall.before.mean)} ± {format_value(overall.before.std)} -> "
            f"{format_value(overall.after.mean)} ± {format_value(overall.after.std)}")
    assert escape(line) in page
    assert f"{format_value(overall.delta)}): loss." in page  # mislabelled copies hurt
    # a plotly chart of the groups, the harmed group drawn and named worse
    start = page.index('<section id="lift-of-the-actions">')
    section = page[start:page.index("</section>", start)]
    assert 'class="plotly-graph-div"' in section and "Lift of " in section
    assert "Red: worse beyond the spread (adelie_val" in section
    assert "40 example(s) added (40 train)" in section
    # the report shares the project's plotly.js rather than embedding it
    assert "assets/plotly-" in page


def test_newest_first_and_user_strings_escaped(lifted) -> None:
    _, entry = lifted
    data = entry.to_dict()
    older = json.loads(json.dumps(data))
    older["action_id"], older["created"] = "collect-older", "2000-01-01T00:00:00+00:00"
    data["lift"]["groups"][0]["name"] = HOSTILE
    data["lift"]["notes"] = [f"note {HOSTILE}"]
    report = Report("penguins")
    section = add_lift_section(report, [data, older])  # plain dicts, as ledger.json has them
    assert section is not None and section.title == TITLE
    page = report.render()
    assert HOSTILE not in page
    assert escape(HOSTILE) in page and f"note {escape(HOSTILE)}" in page
    assert page.index(f"Action {entry.action_id}") < page.index("Action collect-older")
    assert add_lift_section(Report("empty"), []) is None


def test_a_damaged_ledger_leaves_the_report_without_the_lifts(lifted) -> None:
    project, entry = lifted
    ledger = project.state_dir / "ledger.json"
    good = ledger.read_bytes()
    try:
        ledger.write_text("{not json", encoding="utf-8")
        path = project.write_report(project.runs()[0])
        page = path.read_text(encoding="utf-8")
        start = page.index('<section id="lift-of-the-actions">')
        section = page[start:page.index("</section>", start)]
        assert entry.action_id not in page and "plotly-graph-div" not in section
        assert "The lifts measured on this run are not shown: the ledger" in section
        assert "is damaged" in page and "hint: restore it" in page
    finally:
        ledger.write_bytes(good)
    assert entry.action_id in project.write_report(project.runs()[0]).read_text("utf-8")
