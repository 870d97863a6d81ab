"""Every kind of bad input: a clear message, a non-zero exit, no traceback, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from checks import refused, state_files


def _nothing_written(folder: Path) -> None:
    assert not (folder / "loopml.yaml").exists()
    assert not (folder / ".loopml").exists()


def test_missing_file(cli) -> None:
    refused(cli("init", "p", "--data", "nope.csv", "--target", "y"), "nope.csv",
             "does not exist")
    _nothing_written(Path("p"))


def test_unreadable_csv_bad_quoting(cli) -> None:
    Path("broken.csv").write_text('a,b\n1,2\n3,"4\n5,6,7,8\n')
    refused(cli("init", "p", "--data", "broken.csv", "--target", "a"), "broken.csv",
             "not a readable CSV")
    _nothing_written(Path("p"))


def test_unreadable_csv_binary(cli) -> None:
    Path("image.csv").write_bytes(bytes(range(256)) * 10)
    refused(cli("init", "p", "--data", "image.csv", "--target", "a"), "binary file")
    _nothing_written(Path("p"))


def test_target_column_absent_lists_the_columns(cli, penguins_csv: Path) -> None:
    result = cli("init", "p", "--data", penguins_csv, "--target", "specie")
    refused(result, "'specie' is not a column", "Did you mean 'species'?", "island",
             "bill_length_mm")
    _nothing_written(Path("p"))


def test_classification_target_with_one_class(cli, penguins_csv: Path) -> None:
    frame = pd.read_csv(penguins_csv).assign(species="Adelie")
    frame.to_csv("one.csv", index=False)
    refused(cli("init", "p", "--data", "one.csv", "--target", "species", "--task",
                 "classification"), "single class", "'Adelie'")
    _nothing_written(Path("p"))


def test_image_folder_with_no_images(cli) -> None:
    (Path("pics") / "cats").mkdir(parents=True)
    (Path("pics") / "cats" / "notes.txt").write_text("no images here")
    refused(cli("init", "p", "--data", "pics"), "holds no images", "sub-folder per class")
    _nothing_written(Path("p"))


@pytest.fixture
def project(cli, penguins_csv: Path) -> Path:
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    assert cli("train", "-p", "p", "--arch", "linear").exit_code == 0
    return Path("p")


def _edit_scope(folder: Path, old: str, new: str) -> None:
    path = folder / "loopml.yaml"
    path.write_text(path.read_text().replace(old, new, 1))


def test_unknown_key_in_scope(cli, project: Path) -> None:
    before = state_files(project)
    _edit_scope(project, "seed: 0", "seed: 0\nsede: 1")
    refused(cli("train", "-p", project), "unknown key 'sede'", "loopml.yaml line")
    assert state_files(project) == before


def test_wrong_type_in_scope(cli, project: Path) -> None:
    before = state_files(project)
    _edit_scope(project, "  image_size: 32", "  image_size: big")
    refused(cli("train", "-p", project), "key 'data.image_size'", "integer")
    assert state_files(project) == before


def test_split_fractions_not_summing_to_one(cli, project: Path) -> None:
    before = state_files(project)
    _edit_scope(project, "  train: 0.7", "  train: 0.8")
    refused(cli("runs", "-p", project), "must sum to 1")
    assert state_files(project) == before


def test_run_id_that_does_not_exist(cli, project: Path) -> None:
    refused(cli("show", "-p", project, "deadbeef"), "no run 'deadbeef'", "loopml runs")


def test_unknown_architecture(cli, project: Path) -> None:
    refused(cli("train", "-p", project, "--arch", "mlpp"), "unknown architecture 'mlpp'",
             "did you mean 'mlp'")


def test_failed_training_leaves_no_run_behind(cli, project: Path) -> None:
    before = state_files(project)
    runs_before = json.loads(cli("runs", "-p", project, "--json").stdout)
    refused(cli("train", "-p", project, "--arch", "linear", "--param", "max_iter=-1"),
             "training 'linear' failed")
    assert json.loads(cli("runs", "-p", project, "--json").stdout) == runs_before
    _edit_scope(project, "island: categorical", "island: numeric")  # strings are not numbers
    refused(cli("train", "-p", project, "--arch", "linear"), "typed numeric in loopml.yaml",
             "'Torgersen'")  # refused at load, before the split could move to the data
    assert state_files(project) == before


def test_init_refuses_to_overwrite_a_project(cli, project: Path, penguins_csv: Path) -> None:
    before = (project / "loopml.yaml").read_text()
    refused(cli("init", project, "--data", penguins_csv, "--target", "species"),
             "already exists", "--force")
    assert (project / "loopml.yaml").read_text() == before


def test_baseline_outside_the_metric_range(cli, penguins_csv: Path) -> None:
    refused(cli("init", "p", "--data", penguins_csv, "--target", "species", "--baseline",
                 "97"), "baseline.value = 97.0 is outside the range of accuracy [0.0, 1.0]")
    _nothing_written(Path("p"))


def test_diagnose_with_too_many_folds(cli, project: Path) -> None:
    refused(cli("diagnose", "-p", project, "--folds", "1000"), "too few for 1000 folds",
             "--folds")


def test_diagnose_with_a_ray_address_that_does_not_answer(cli, project: Path) -> None:
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    refused(cli("diagnose", "-p", project, "--folds", "3", "--ray", f"127.0.0.1:{port}"),
             f"No Ray cluster answers at 127.0.0.1:{port}")
    assert time.perf_counter() - start < 30
    assert not list(project.glob(".loopml/runs/*/artifacts/diagnosis.json"))


def test_diagnose_without_runs(cli, penguins_csv: Path) -> None:
    assert cli("init", "q", "--data", penguins_csv, "--target", "species").exit_code == 0
    refused(cli("diagnose", "-p", "q"), "has no runs yet", "loopml train")


# ---------------------------------------------------------------- error analysis


def _add_traits(folder: Path, text: str) -> None:
    _edit_scope(folder, "traits: []", "traits:\n" + text)


def test_trait_with_an_invalid_regular_expression(cli, project: Path) -> None:
    before = state_files(project)
    _add_traits(project, "  - {name: odd, column: island, matches: '(unclosed'}\n")
    refused(cli("errors", "-p", project), "loopml.yaml line", "not a valid regular expression")
    assert state_files(project) == before


def test_trait_with_two_tests(cli, project: Path) -> None:
    _add_traits(project, "  - {name: odd, column: island, equals: Dream, missing: true}\n")
    refused(cli("errors", "-p", project), "trait 'odd' needs exactly one of",
             "['equals', 'missing']")


def test_trait_where_naming_a_missing_column(cli, project: Path) -> None:
    before = state_files(project)
    _add_traits(project, "  - {name: heavy, where: 'body_mass > 5000'}\n")
    refused(cli("errors", "-p", project), "trait 'heavy'", "'body_mass'",
             "the columns are:", "body_mass_g")
    assert state_files(project) == before


def test_trait_function_that_fails(cli, project: Path) -> None:
    before = state_files(project)
    (project / "traits.py").write_text(
        "import loopml\n\n@loopml.trait\ndef broken(frame):\n    return frame['nope'] > 1\n")
    refused(cli("errors", "-p", project), "trait 'broken'", "traits.py", "KeyError")
    (project / "traits.py").write_text(
        "import loopml\n\n@loopml.trait\ndef short(frame):\n    return [True, False]\n")
    refused(cli("errors", "-p", project), "trait 'short'", "returned shape (2,)")
    assert state_files(project) == before


def test_tag_needs_an_id_and_a_valid_trait_name(cli, project: Path) -> None:
    before = state_files(project)
    refused(cli("tag", "-p", project, "smudged"), "at least one example id")
    example = pd.read_parquet(project / ".loopml" / "split.parquet")["id"].iloc[0]
    refused(cli("tag", "-p", project, example, "two words"), "'two words' is not a trait name")
    assert state_files(project) == before


def test_errors_without_runs(cli, penguins_csv: Path) -> None:
    cli("init", "p", "--data", penguins_csv, "--target", "species")
    refused(cli("errors", "-p", "p"), "has no runs yet", "loopml train")


def test_a_missing_split_without_runs_is_made_again_as_init_made_it(cli, penguins_csv: Path
                                                                    ) -> None:
    # No run was ever scored on it, so nothing can move under a comparison; with runs it is
    # rebuilt from their recorded ids or refused (tests/test_split_safety.py).
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    state = Path("p") / ".loopml"
    before = (state / "split.parquet").read_bytes()
    for name in ("split.parquet", "split.json"):
        (state / name).unlink()
    result = cli("data", "-p", "p")
    assert result.exit_code == 0, result.output
    assert "split missing: computed it from loopml.yaml (no run was scored" in result.output
    assert (state / "split.parquet").read_bytes() == before
