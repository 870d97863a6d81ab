"""loopml.yaml: what init writes, and how mistakes in it are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopml import Project
from loopml.exceptions import ScopeError
from loopml.scope import read_scope


@pytest.fixture
def project(tmp_path: Path, penguins_csv: Path) -> Project:
    return Project.init(tmp_path / "p", data=str(penguins_csv), target="species")


def test_init_infers_task_metric_and_feature_types(project: Project) -> None:
    scope = project.scope
    assert scope.task == "classification"
    assert scope.metric == "accuracy"
    assert scope.data.features["island"] == "categorical"
    assert scope.data.features["bill_length_mm"] == "numeric"
    assert "species" not in scope.data.features
    assert scope.data.source == "../penguins.csv"  # relative, so the folder can move


def test_written_scope_is_commented_and_reads_back_equal(project: Project) -> None:
    text = (project.root / "loopml.yaml").read_text()
    assert "# the column to predict" in text
    assert "# share only ever reported, never used to choose anything" in text
    assert read_scope(project.root / "loopml.yaml") == project.scope


def _edit(project: Project, old: str, new: str) -> Path:
    path = project.root / "loopml.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_key_is_named_with_its_line_and_a_suggestion(project: Project) -> None:
    path = _edit(project, "  target: species", "  target: species\n  sourse: x.csv")
    with pytest.raises(ScopeError) as info:
        Project.load(project.root)
    message = str(info.value)
    assert f"line {_line_of(path, 'sourse')}" in message
    assert "unknown key 'data.sourse'" in message
    assert "Did you mean 'source'?" in message


def test_wrong_type_is_named_with_its_line(project: Project) -> None:
    path = _edit(project, "seed: 0", "seed: twelve")
    with pytest.raises(ScopeError) as info:
        Project.load(project.root)
    assert f"line {_line_of(path, 'seed: twelve')}: key 'seed'" in str(info.value)
    assert "integer" in str(info.value)


def test_split_fractions_must_sum_to_one(project: Project) -> None:
    _edit(project, "  val: 0.15", "  val: 0.25")
    with pytest.raises(ScopeError, match=r"must sum to 1.*0\.7 \+ 0\.25 \+ 0\.15 = 1\.1"):
        Project.load(project.root)


def test_metric_must_fit_the_task(project: Project) -> None:
    _edit(project, "metric: accuracy", "metric: rmse")
    with pytest.raises(ScopeError, match="'rmse' is not a classification metric"):
        Project.load(project.root)


def test_baseline_outside_the_metric_range_is_refused(project: Project) -> None:
    _edit(project, "baseline: null", "baseline:\n  value: 1.7")
    with pytest.raises(ScopeError, match=r"baseline.value = 1.7 is outside the range"):
        Project.load(project.root)


def test_invalid_yaml_names_the_line(project: Project) -> None:
    path = _edit(project, "seed: 0", "seed: [0")
    with pytest.raises(ScopeError, match=r"loopml.yaml line \d+: not valid YAML"):
        Project.load(path.parent)


def test_missing_scope_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ScopeError, match="loopml init"):
        Project.load(tmp_path)


def test_notes_explain_a_value_above_its_key(project: Project) -> None:
    from loopml.scope import render_scope

    text = render_scope(project.scope, notes={"metric": "chosen by hand: why not",
                                              "data.target": "the label column"})
    lines = text.splitlines()
    assert lines[lines.index("metric: accuracy") - 1] == "# chosen by hand: why not"
    assert lines[lines.index("  target: species") - 1] == "  # the label column"
    assert _read_back(project, text) == project.scope  # a note is only a comment


def test_a_note_on_an_unknown_key_is_refused(project: Project) -> None:
    from loopml.scope import render_scope

    with pytest.raises(ValueError, match="notes name keys the scope does not have: metrik"):
        render_scope(project.scope, notes={"metrik": "typo"})


def test_balance_must_be_true_or_false(project: Project) -> None:
    path = _edit(project, "balance: false", "balance: sometimes")
    with pytest.raises(ScopeError) as info:
        Project.load(project.root)
    assert f"line {_line_of(path, 'balance: sometimes')}: key 'balance'" in str(info.value)


def _read_back(project: Project, text: str):
    path = project.root / "copy.yaml"
    path.write_text(text)
    return read_scope(path)


def test_an_alias_bomb_is_refused_before_it_expands(project: Project) -> None:
    """Nine levels of nine aliases would be 387 million strings; it is refused at once."""
    path = project.root / "loopml.yaml"
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path.write_text(path.read_text() + "\n".join(levels) + "\n")
    before = (project.root / ".loopml" / "split.parquet").read_bytes()
    with pytest.raises(ScopeError, match=r"loopml.yaml line \d+: YAML anchors and aliases "
                                         r"\(&a / \*a\) are not allowed"):
        read_scope(path)
    assert (project.root / ".loopml" / "split.parquet").read_bytes() == before


def test_a_key_given_twice_names_both_lines(project: Project) -> None:
    path = project.root / "loopml.yaml"
    text = path.read_text()
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("seed:"))
    path.write_text(text + "seed: 7\n")
    last = len(path.read_text().splitlines())
    with pytest.raises(ScopeError, match=rf"loopml.yaml lines {first} and {last}: key 'seed' "
                                         "is given twice"):
        read_scope(path)


def test_a_file_that_is_not_utf8_is_named(project: Project) -> None:
    path = project.root / "loopml.yaml"
    text = path.read_text()
    path.write_bytes(text.encode() + "name_note: caf\xe9\n".encode("latin-1"))
    line = len(text.splitlines()) + 1
    with pytest.raises(ScopeError, match=rf"loopml.yaml line {line}: not UTF-8 text") as info:
        read_scope(path)
    assert "save" in info.value.hint and "UTF-8" in info.value.hint


def test_the_cli_answers_a_duplicate_key_with_exit_2_and_no_traceback(cli, project: Project
                                                                      ) -> None:
    path = project.root / "loopml.yaml"
    path.write_text(path.read_text() + "metric: accuracy\n")
    result = cli("runs", "-p", str(project.root))
    assert result.exit_code == 2
    assert "key 'metric' is given twice" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_the_cli_answers_an_alias_bomb_within_two_seconds(cli, project: Project) -> None:
    """The 400-byte bomb of the issue took over 60 s and GBs while its message was built."""
    import time

    path = project.root / "loopml.yaml"
    bomb = ['lol: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        bomb.append(f"{name}{i}: &{name} [" + ",".join([f"*{'abcdefghi'[i]}"] * 9) + "]")
    path.write_text(path.read_text() + "\n".join(bomb) + "\n")
    start = time.perf_counter()
    result = cli("runs", "-p", str(project.root))
    assert time.perf_counter() - start < 2
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "anchors and aliases" in result.output
