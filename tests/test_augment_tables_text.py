"""``loopml augment`` on tables (SMOTE, jitter) and text (typos, word drop...), with parents."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from checks import refused, state_files
from loopml import Project
from loopml.grow.textaug import apply_text_transform

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_text.py"


def _bench_text():
    if "bench_text" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_text", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_text"] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
    return sys.modules["bench_text"]


@pytest.fixture
def penguins(penguins_csv: Path, tmp_path: Path) -> Project:
    project = Project.init(tmp_path / "pen", data=str(penguins_csv), target="species")
    project.train("linear", report=False)
    return project


def _added(project: Project, action_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    reopened = Project.load(project.root)
    provenance = reopened.dataset.provenance
    added = provenance[provenance["action_id"] == action_id]
    assert (reopened.split.parts.reindex(added.index) == "train").all()
    return reopened.dataset.frame, added


def test_smote_on_penguins_adds_children_of_the_parents_class_within_train(cli, penguins):
    train = penguins.split.ids("train")
    source = penguins.dataset.frame.loc[train]
    result = cli("augment", "--policy", "smote", "--factor", "1", "--no-lift", "--json",
                 "-p", penguins.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["added"] == len(train) == out["parents"]
    assert out["applied"] == {"smote": len(train)}
    frame, added = _added(penguins, out["action"]["action_id"])
    assert len(added) == len(train) and set(added["parent_id"]) == set(train)
    children = frame.loc[added.index]
    parents = frame.loc[added["parent_id"].astype(str)]
    assert (children["species"].to_numpy() == parents["species"].to_numpy()).all()
    for column in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"):
        values = children[column].dropna()
        assert values.between(source[column].min(), source[column].max()).all(), column
        # missing in the parent -> missing in the child, and the other way round
        assert (children[column].isna().to_numpy() == parents[column].isna().to_numpy()).all()
    assert (children["flipper_length_mm"].dropna() % 1 == 0).all()  # whole numbers stay whole
    for column in ("island", "sex"):
        assert set(children[column].dropna()) <= set(source[column].dropna()), column
    assert (children["sex"].isna().to_numpy() == parents["sex"].isna().to_numpy()).all()
    moved = children["bill_length_mm"].to_numpy() != parents["bill_length_mm"].to_numpy()
    assert np.nanmean(moved) > 0.5  # interpolated, not copied
    # neighbours are of the same class: an Adelie child stays in the Adelie range
    adelie = source[source["species"] == "Adelie"]["bill_length_mm"]
    kids = children[children["species"] == "Adelie"]["bill_length_mm"].dropna()
    assert kids.between(adelie.min(), adelie.max()).all()


def test_auto_on_a_table_targets_the_failing_classes_and_says_why(cli, penguins):
    predictions = penguins.choose_run().iteration.predictions()
    val = predictions[predictions["part"] == "val"]
    failing = set(val.loc[val["y_true"] != val["y_pred"], "y_true"].astype(str))
    result = cli("augment", "--no-lift", "--json", "-p", penguins.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    (step,) = out["policy"]["steps"]
    assert step["transform"] == "smote" and "fails on in val" in step["reasons"][0]
    frame, added = _added(penguins, out["action"]["action_id"])
    if failing:  # the linear run on penguins misses a few val examples
        assert set(frame.loc[added.index, "species"].astype(str)) <= failing
        assert set(out["policy"]["measured"]["failing_val"]) == failing


def test_jitter_on_boston_stays_in_range_and_smote_is_refused(cli, boston_parquet, tmp_path):
    project = Project.init(tmp_path / "boston", data=str(boston_parquet), target="medv")
    project.train("linear", report=False)
    before = state_files(project.root)
    refused(cli("augment", "--policy", "smote", "--no-lift", "-p", project.root),
            "'smote' in --policy does not apply to a regression table",
            "a regression table has no classes", "auto, jitter")
    assert state_files(project.root) == before
    train = project.split.ids("train")
    result = cli("augment", "--policy", "jitter=0.2", "--factor", "2", "--no-lift", "--json",
                 "-p", project.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["added"] == 2 * len(train) and out["preservation"]["checks"] == []
    frame, added = _added(project, out["action"]["action_id"])
    source = frame.loc[train]
    children = frame.loc[added.index]
    parents = frame.loc[added["parent_id"].astype(str)]
    assert (children["medv"].to_numpy() == parents["medv"].to_numpy()).all()
    for column in ("crim", "rm", "lstat", "rad"):
        assert children[column].between(source[column].min(), source[column].max()).all()
    assert (children["rad"] % 1 == 0).all()  # an integer column stays whole
    assert (children["rm"].to_numpy() != parents["rm"].to_numpy()).mean() > 0.9
    auto = cli("augment", "--no-lift", "--json", "-p", project.root)
    assert json.loads(auto.stdout)["policy"]["steps"][0]["transform"] == "jitter"


def test_text_transforms_are_seeded_and_touch_what_they_say() -> None:
    texts = pd.Series(["the quick brown fox jumps over the lazy dog " * 3, np.nan])
    for name in ("typo", "word_drop", "word_swap", "case"):
        a = apply_text_transform(name, texts, 0.3, rng=np.random.default_rng(1))
        b = apply_text_transform(name, texts, 0.3, rng=np.random.default_rng(1))
        assert a.iloc[0] == b.iloc[0] and a.iloc[0] != texts.iloc[0], name
        assert pd.isna(a.iloc[1]), name
    dropped = apply_text_transform("word_drop", texts, 0.3, rng=np.random.default_rng(1))
    assert 0.4 < len(dropped.iloc[0].split()) / len(texts.iloc[0].split()) < 0.95
    swapped = apply_text_transform("word_swap", texts, 0.5, rng=np.random.default_rng(1))
    assert sorted(swapped.iloc[0].split()) == sorted(texts.iloc[0].split())


@pytest.fixture
def reviews(tmp_path: Path) -> Project:
    bench_text = _bench_text()
    frame = bench_text.reviews_table().sample(n=600, random_state=0)
    project = bench_text.reviews_project(tmp_path / "reviews", frame)
    project.train("linear", report=False)
    return project


def test_typo_and_word_drop_on_reviews_add_noisy_texts_with_parents(cli, reviews):
    result = cli("augment", "--policy", "typo,word_drop", "--no-lift", "--json",
                 "-p", reviews.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [s["transform"] for s in out["policy"]["steps"]] == ["typo", "word_drop"]
    assert out["policy"]["steps"][1]["unit"] == "share of words"
    frame, added = _added(reviews, out["action"]["action_id"])
    assert len(added) == out["added"] > 0
    children = frame.loc[added.index]
    parents = frame.loc[added["parent_id"].astype(str)]
    assert (children["score"].to_numpy() == parents["score"].to_numpy()).all()
    changed = children["review"].to_numpy() != parents["review"].to_numpy()
    assert changed.mean() > 0.9
    shorter = (children["review"].str.split().str.len().to_numpy()
               < parents["review"].str.split().str.len().to_numpy())
    assert shorter.mean() > 0.5
    checks = out["preservation"]["checks"]  # every transform checked for every class
    assert {(c["class"], c["transform"]) for c in checks} == {
        (k, t) for k in set(frame["score"]) for t in ("typo", "word_drop")}


@pytest.mark.parametrize("args,needles", [
    (("--policy", "twirl"), ("'twirl' in --policy does not apply to a classification table",
                             "auto, smote, jitter")),
    (("--policy", "jitter=9"), ("outside 0 .. 2",)),
    (("--group", "nope"), ("no group 'nope'",)),
])
def test_bad_table_policies_exit_2_and_write_nothing(cli, penguins, args, needles):
    before = state_files(penguins.root)
    refused(cli("augment", *args, "--no-lift", "-p", penguins.root), *needles)
    assert state_files(penguins.root) == before


def test_image_transform_on_text_lists_the_text_ones(cli, tmp_path):
    bench_text = _bench_text()
    frame = bench_text.reviews_table().sample(n=100, random_state=0)
    project = bench_text.reviews_project(tmp_path / "reviews", frame)
    before = state_files(project.root)
    refused(cli("augment", "--policy", "blur", "--no-lift", "-p", project.root),
            "'blur' in --policy does not apply to text", "typo, word_drop, word_swap, case")
    assert state_files(project.root) == before
