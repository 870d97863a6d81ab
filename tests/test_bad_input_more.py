"""More bad input and damaged state (issue 10): each gets a clear message, exit code 2,
no traceback, and leaves ``.loopml/`` as it was; a damaged run hides no other run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from checks import refused, state_files
from loopml.exceptions import LoopmlError
from loopml.project import Project


@pytest.fixture
def project(cli, penguins_csv: Path) -> Path:
    """Penguins with two linear runs."""
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    for _ in range(2):
        assert cli("train", "-p", "p", "--arch", "linear").exit_code == 0
    return Path("p")


@pytest.fixture
def one_run(cli, penguins_csv: Path) -> Path:
    """Penguins with one linear run."""
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    assert cli("train", "-p", "p", "--arch", "linear").exit_code == 0
    return Path("p")


def _run_ids(cli, project: Path) -> list[str]:
    result = cli("runs", "-p", project, "--json")
    assert result.exit_code == 0, result.output
    return [r["run_id"] for r in json.loads(result.stdout)]


# ---------------------------------------------------------------- init --force


def test_init_force_over_runs_needs_yes_and_moves_the_old_state_aside(
        cli, project: Path, penguins_csv: Path) -> None:
    runs = _run_ids(cli, project)
    assert cli("tag", "-p", project, *_some_ids(project, 3), "odd").exit_code == 0
    before = state_files(project)
    old_scope = (project / "loopml.yaml").read_text()

    refused(cli("init", project, "--data", penguins_csv, "--target", "species", "--force"),
             "holds 2 runs, 3 tags", "--yes", "moved aside")
    assert state_files(project) == before
    assert (project / "loopml.yaml").read_text() == old_scope

    result = cli("init", project, "--data", penguins_csv, "--target", "species", "--force",
                 "--yes", "--json")
    assert result.exit_code == 0, result.output
    moved = Path(json.loads(result.stdout)["old_state"])
    assert moved.parent == project.resolve() and moved.name.startswith(".loopml.old-")
    assert sorted(p.name for p in (moved / "runs").iterdir()) == sorted(runs)
    assert (moved / "tags.json").exists() and (moved / "loopml.yaml").read_text() == old_scope
    assert _run_ids(cli, project) == []  # a fresh project ...
    assert cli("train", "-p", project, "--arch", "linear").exit_code == 0  # ... that works


def test_init_force_without_runs_needs_no_yes(cli, penguins_csv: Path) -> None:
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    result = cli("init", "p", "--data", penguins_csv, "--target", "species", "--force")
    assert result.exit_code == 0, result.output
    assert "moved the old state" in result.output
    assert len(list(Path("p").glob(".loopml.old-*"))) == 1


def test_init_force_in_the_library_needs_yes(project: Path, penguins_csv: Path) -> None:
    with pytest.raises(LoopmlError, match="holds 2 runs"):
        Project.init(project, data=str(penguins_csv), target="species", force=True)
    fresh = Project.init(project, data=str(penguins_csv), target="species", force=True,
                         yes=True)
    assert fresh.moved_state is not None and (fresh.moved_state / "runs").is_dir()
    assert fresh.runs() == []


def _some_ids(project: Path, n: int) -> list[str]:
    return [str(i) for i in Project.load(project).dataset.ids[:n]]


# ---------------------------------------------------------------- damaged run records


def _corrupt(record: Path, shape: str) -> None:
    data = json.loads(record.read_text())
    if shape == "garbage":
        record.write_text("{not json")
        return
    if shape == "list":
        data = [data]
    elif shape == "metrics-not-a-dict":
        data["metrics"] = "x"
    elif shape == "metric-value-not-a-number":
        data["metrics"][f"val_{data['metric']}"] = "high"
    elif shape == "missing-field":
        del data["architecture"]
    elif shape == "unknown-metric":
        data["metric"] = "nope"
    record.write_text(json.dumps(data))


SHAPES = ["garbage", "list", "metrics-not-a-dict", "metric-value-not-a-number",
          "missing-field", "unknown-metric"]


def test_a_damaged_run_record_is_skipped_with_a_warning(cli, project: Path) -> None:
    bad, good = _run_ids(cli, project)
    record = project / ".loopml" / "runs" / bad / "artifacts" / "iteration.json"
    intact = record.read_text()
    for shape in SHAPES:
        record.write_text(intact)
        _corrupt(record, shape)
        result = cli("runs", "-p", project, "--json")
        assert result.exit_code == 0, (shape, result.output)
        assert [r["run_id"] for r in json.loads(result.stdout)] == [good]  # stdout: JSON
        assert f"warning: skipping run {bad}" in result.stderr, (shape, result.stderr)
        assert result.stderr.count(f"skipping run {bad}") == 1
        assert "UserWarning" not in result.stderr and "Traceback" not in result.output
        shown = cli("show", "-p", project, good[:8])
        assert shown.exit_code == 0 and good in shown.output
        refused(cli("show", "-p", project, bad[:8]), f"no run '{bad[:8]}'")


def test_a_damaged_run_hides_no_other_from_errors_and_diagnose(cli, project: Path) -> None:
    bad, good = _run_ids(cli, project)
    _corrupt(project / ".loopml" / "runs" / bad / "artifacts" / "iteration.json", "list")
    errors = cli("errors", "-p", project, good[:8], "--no-label-issues", "--json")
    assert errors.exit_code == 0, errors.output
    assert json.loads(errors.stdout)["chosen_run"]["run_id"] == good
    diagnosis = cli("diagnose", "-p", project, "--folds", "2", "--no-curves", "--json")
    assert diagnosis.exit_code == 0, diagnosis.output
    assert json.loads(diagnosis.stdout)["chosen_run"]["run_id"] == good


def test_an_extended_run_record_still_loads(cli, project: Path) -> None:
    first, second = _run_ids(cli, project)
    record = project / ".loopml" / "runs" / first / "artifacts" / "iteration.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "from_the_future": 1}))
    result = cli("runs", "-p", project, "--json")
    assert [r["run_id"] for r in json.loads(result.stdout)] == [first, second]
    assert "ignoring unknown keys ['from_the_future']" in result.stderr


# ---------------------------------------------------------------- deleted store or files


def test_deleted_mlflow_store_train_warns_and_diagnose_of_an_old_run_works(
        cli, project: Path) -> None:
    old, _ = _run_ids(cli, project)
    (project / ".loopml" / "mlflow.db").unlink()
    trained = cli("train", "-p", project, "--arch", "linear")
    assert trained.exit_code == 0, trained.output
    assert "MLflow store" in trained.output and "is missing" in trained.output
    result = cli("diagnose", "-p", project, old[:8], "--folds", "2", "--no-curves")
    assert result.exit_code == 0, result.output
    assert f"run {old} is not in the MLflow store" in result.output
    assert (project / ".loopml" / "runs" / old / "artifacts" / "diagnosis.json").exists()
    assert len(_run_ids(cli, project)) == 3


def test_deleted_model_says_what_is_missing_and_what_works(cli, one_run: Path) -> None:
    [run] = _run_ids(cli, one_run)
    shutil.rmtree(one_run / ".loopml" / "runs" / run / "artifacts" / "model")
    assert cli("show", "-p", one_run, run[:8]).exit_code == 0
    before = state_files(one_run)
    refused(cli("errors", "-p", one_run, run[:8], "--folds", "2"),
             f"the model of run {run[:8]} is missing", "loopml train")
    assert state_files(one_run) == before


def test_deleted_predictions_say_what_is_missing(cli, one_run: Path) -> None:
    [run] = _run_ids(cli, one_run)
    (one_run / ".loopml" / "runs" / run / "artifacts" / "predictions.parquet").unlink()
    assert cli("show", "-p", one_run, run[:8]).exit_code == 0
    before = state_files(one_run)
    for verb in (("diagnose", "--folds", "2", "--no-curves"), ("errors", "--no-label-issues")):
        refused(cli(verb[0], "-p", one_run, run[:8], *verb[1:]),
                 f"the predictions of run {run[:8]} are missing", "loopml train")
    assert state_files(one_run) == before


def test_unreadable_model_file(cli, one_run: Path) -> None:
    [run] = _run_ids(cli, one_run)
    (one_run / ".loopml" / "runs" / run / "artifacts" / "model" / "MLmodel").write_bytes(
        b"\xff\xfe: [")
    refused(cli("errors", "-p", one_run, run[:8], "--folds", "2"), "MLmodel is not readable",
             "retrain")


# ---------------------------------------------------------------- command-line values


OUT_OF_RANGE = [
    (("diagnose", "--jobs", "0"), ("'--jobs'", "-1 (every core)")),
    (("errors", "-j", "-3"), ("'--jobs'", "-1 (every core)")),
    (("run", "--jobs", "0"), ("'--jobs'", "-1 (every core)")),
    (("diagnose", "--folds", "1"), ("'--folds'", "2")),
    (("errors", "--folds", "1"), ("'--folds'", "2")),
    (("diagnose", "--budget", "-5"), ("budget must be a positive",)),
    (("train", "--arch", "linear", "--train-fraction", "1.5"), ("--train-fraction", "(0, 1]")),
    (("train", "--arch", "linear", "--train-fraction", "0"), ("--train-fraction", "(0, 1]")),
    (("train", "--arch", "linear", "--train-fraction", "-1"), ("--train-fraction", "(0, 1]")),
]


def test_out_of_range_options_name_the_option_and_the_range(cli, one_run: Path) -> None:
    before = state_files(one_run)
    for args, needles in OUT_OF_RANGE:
        result = cli(*args, "-p", one_run)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        for needle in needles:
            assert needle in result.output, (args, result.output)
    assert state_files(one_run) == before


def test_negative_seed_in_the_scope(cli, one_run: Path) -> None:
    before = state_files(one_run)
    scope = one_run / "loopml.yaml"
    scope.write_text(scope.read_text().replace("\nseed: 0", "\nseed: -1", 1))
    refused(cli("diagnose", "-p", one_run, "--folds", "2"), "key 'seed'",
             "greater than or equal to 0")
    assert state_files(one_run) == before


def test_a_failed_fit_says_what_to_fix(cli, one_run: Path) -> None:
    before = state_files(one_run)
    refused(cli("train", "-p", one_run, "--arch", "linear", "--size", "-3"),
             "size must be > 0", "loopml architectures")
    refused(cli("train", "-p", one_run, "--arch", "gbt", "--param", "learning_rate=-1"),
             "training 'gbt' failed", "--param value")
    assert "config_auto.cpp" not in cli("train", "-p", one_run, "--arch", "gbt", "--param",
                                        "learning_rate=-1").output
    assert state_files(one_run) == before


# ---------------------------------------------------------------- targets


def test_missing_targets_are_refused_with_their_lines(cli, penguins_csv: Path) -> None:
    frame = pd.read_csv(penguins_csv)
    frame.loc[[3, 10, 50, 60, 70, 80, 90], "species"] = None
    frame.to_csv("gaps.csv", index=False)
    refused(cli("init", "p", "--data", "gaps.csv", "--target", "species"),
             "7 rows of data source", "'species'", "lines 5, 12, 52, 62, 72, ... (2 more)",
             "--drop-missing-target", "data.missing_target: drop")
    assert not Path("p").exists()

    result = cli("init", "p", "--data", "gaps.csv", "--target", "species",
                 "--drop-missing-target", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["dropped_missing_target"] == 7
    assert sum(document["split"].values()) == len(frame) - 7
    assert "missing_target: drop" in Path("p/loopml.yaml").read_text()
    assert cli("train", "-p", "p", "--arch", "linear").exit_code == 0


def test_missing_targets_appearing_later_are_refused(cli, one_run: Path,
                                                     penguins_csv: Path) -> None:
    before = state_files(one_run)
    frame = pd.read_csv(penguins_csv)
    frame.loc[[0], "species"] = None
    frame.to_csv(penguins_csv, index=False)
    refused(cli("train", "-p", one_run, "--arch", "linear"), "1 rows", "lines 2",
             "data.missing_target: drop")
    assert state_files(one_run) == before


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_infinite_regression_targets_are_refused_at_load(cli, boston_parquet: Path,
                                                         suffix: str) -> None:
    frame = pd.read_parquet(boston_parquet)
    frame.loc[[5, 9], "medv"] = float("inf")
    path = Path(f"inf.{suffix}")
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    where = "lines 7, 11" if suffix == "csv" else "rows 6, 10"
    refused(cli("init", "p", "--data", path, "--target", "medv"),
             "2 rows", "infinite target 'medv'", where)
    assert not Path("p").exists()


# ---------------------------------------------------------------- trait names


def test_bad_trait_names_for_tag(cli, one_run: Path) -> None:
    before = state_files(one_run)
    example = _some_ids(one_run, 1)[0]
    for name, needle in [("odd\n", "is not a trait name"), ("two words", "is not a trait name"),
                         ("a" * 10_000, "10,000 characters long; the most is 100"),
                         ("", "is not a trait name")]:
        refused(cli("tag", "-p", one_run, example, name), needle)
    assert state_files(one_run) == before
    assert cli("tag", "-p", one_run, example, "a" * 100).exit_code == 0  # 100 is fine
    assert "a" * 100 in Project.load(one_run).tags()


def test_bad_trait_names_in_the_scope(cli, one_run: Path) -> None:
    scope = one_run / "loopml.yaml"
    original = scope.read_text()
    assert "\ntraits: []\n" in original
    before = state_files(one_run)
    for name, needle in [("odd\n", "should match pattern"),
                         ("a" * 101, "at most 100 characters")]:
        scope.write_text(original.replace(
            "\ntraits: []\n", f"\ntraits:\n- name: {json.dumps(name)}\n  column: island\n"
            "  equals: Dream\n", 1))
        refused(cli("errors", "-p", one_run, "--no-label-issues"), "traits", needle)
    assert state_files(one_run) == before
