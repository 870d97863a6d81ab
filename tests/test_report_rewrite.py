"""A run's report rewritten later (diagnose, errors, lift) keeps what ``loopml run`` put in it."""

from __future__ import annotations

from pathlib import Path

from loopml import Project


def test_a_rewritten_report_keeps_the_candidates_table(tmp_path: Path, penguins_csv) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    result = project.run(["linear", "gbt"])
    best = result.best
    other = next(it for it in result.candidates if it.run_id != best.run_id)
    assert "Candidates compared" in best.report_path.read_text(encoding="utf-8")

    project.write_report(best)  # what diagnose, errors and lift do after their work
    text = best.report_path.read_text(encoding="utf-8")
    assert "Candidates compared" in text
    assert all(it.run_id[:8] in text for it in result.candidates)
    project.write_report(other)  # a candidate that lost gets no table of its own
    assert "Candidates compared" not in other.report_path.read_text(encoding="utf-8")

    single = project.train("linear")  # a run trained alone has no candidates
    assert "Candidates compared" not in single.report_path.read_text(encoding="utf-8")
