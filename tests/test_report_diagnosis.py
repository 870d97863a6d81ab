"""The Diagnosis section: built from a real diagnosis of digits, checked on the written file."""

from __future__ import annotations

import copy
import json
from html import escape
from pathlib import Path
from typing import Any

import pytest

from loopml import Project
from loopml.diagnose import Diagnosis, Reference, diagnose
from loopml.report import Report
from loopml.report.diagnosis import add_diagnosis_section

pytestmark = pytest.mark.slow  # each diagnosis fits a few dozen small models
HOSTILE = "<script>x</script>"
FIGURE = 'class="plotly-graph-div"'


def _as_json(d: Diagnosis) -> dict[str, Any]:
    """What ``diagnosis.json`` holds: the dict with NaN and infinity as null."""
    return json.loads(json.dumps(d.to_json()))


def _diagnose(project: Project, iteration, **options):
    """The stage itself, on the project's concept objects (nothing stored)."""
    return diagnose(iteration, project.dataset, project.split, factory=project.factory,
                    reference=Reference(metric=project.scope.metric), **options)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Project, Any]:
    """Logistic regression far over-regularized on digits: a known high-bias iteration."""
    project = Project.init(tmp_path_factory.mktemp("report-diag") / "d", data="digits",
                           target="label")
    return project, project.train("linear", reg=1e4, report=False)


@pytest.fixture(scope="module")
def diagnosis(digits) -> dict[str, Any]:
    project, iteration = digits
    # the complete sweep: a budget on a busy machine may leave curves out, and this
    # section must draw every kind of figure
    return _as_json(_diagnose(project, iteration, folds=3, full=True))


def _written(tmp_path: Path, diagnosis: Diagnosis | dict[str, Any]) -> tuple[str, int]:
    report = Report("digits", subtitle="diagnosis")
    section = add_diagnosis_section(report, diagnosis)
    html = report.write(tmp_path / "report.html").read_text(encoding="utf-8")
    return html, section.n_figures


def test_section_shows_verdict_errors_curves_and_ranked_advice(tmp_path, diagnosis) -> None:
    html, n_figures = _written(tmp_path, diagnosis)
    assert "<h2>Diagnosis</h2>" in html
    assert escape(diagnosis["verdict_text"]) in html
    assert "Estimated baseline" in html  # no baseline in loopml.yaml
    knobs = list(diagnosis["validation_curves"])
    assert knobs and diagnosis["learning_curve"]["points"]
    assert n_figures == html.count(FIGURE) == 2 + len(knobs)  # errors, learning, one per knob
    assert "Learning curve" in html
    for knob in knobs:
        assert f"Validation curve: {knob}" in html
    assert escape(diagnosis["learning_curve"]["extrapolation"]["message"]) in html
    titles = [escape(item["title"]) for item in diagnosis["advice"]]
    assert titles
    positions = [html.index(title) for title in titles]
    assert positions == sorted(positions)
    assert "<script src=" not in html


def test_every_string_is_escaped(tmp_path, diagnosis) -> None:
    hostile = copy.deepcopy(diagnosis)
    hostile["baseline_note"] = HOSTILE
    hostile["baseline_source"] = HOSTILE  # free text from loopml.yaml
    hostile["advice"][0]["title"] = HOSTILE
    hostile["validation_curves"] = {HOSTILE: hostile["validation_curves"]["reg"]}
    html, n_figures = _written(tmp_path, hostile)
    assert HOSTILE not in html
    assert escape(HOSTILE) in html  # in the page's text and tables
    # figure labels are plotly markup: plotly's JSON writes "<" as \u003c and "/" as \u002f,
    # so a raw label would show here as \u003cscript; an escaped one as &lt;script
    assert "\\u003cscript" not in html
    assert "Validation curve: &lt;script&gt;x&lt;\\u002fscript&gt;" in html
    assert n_figures == 3


def test_a_verdict_the_report_does_not_know_fails_loudly(tmp_path, diagnosis) -> None:
    wrong = {**diagnosis, "verdict": "none"}  # never drawn as "Verdict: none"
    with pytest.raises(ValueError, match="'none' is not a valid Verdict"):
        _written(tmp_path, wrong)
    with pytest.raises(KeyError, match="verdict"):
        _written(tmp_path, {k: v for k, v in diagnosis.items() if k != "verdict"})


def test_section_renders_without_curves(tmp_path, digits) -> None:
    project, iteration = digits
    d = _diagnose(project, iteration, folds=3, curves=False)
    assert d.learning_curve is None and d.validation_curves == {}
    for data in (_as_json(d), d):  # the JSON file, or the typed diagnosis itself
        html, n_figures = _written(tmp_path, data)
        assert n_figures == html.count(FIGURE) == 1
        assert escape(d.verdict_text) in html
        assert html.count("ran with curves off") == 2
