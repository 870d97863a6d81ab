"""``loopml augment``: policies matched to the errors, label preservation, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from checks import refused, state_files
from loopml import Project
from loopml.cli import app
from loopml.grow.augment import Policy, PolicyStep, check_preservation
from loopml.grow.transforms import TRANSFORMS, apply_transform

runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False,
                         env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Project:
    """Digits with one linear run (shared: tests that add examples count relative to before)."""
    project = Project.init(tmp_path_factory.mktemp("aug") / "digits", data="digits",
                           target="label")
    project.train("linear", report=False)
    return project


def test_every_transform_keeps_shape_and_range_and_is_seeded() -> None:
    images = torch.tensor(load_digits().images[:16] / 16, dtype=torch.float32)[:, None]
    for name in TRANSFORMS:
        a = apply_transform(name, images, generator=torch.Generator().manual_seed(3))
        b = apply_transform(name, images, generator=torch.Generator().manual_seed(3))
        assert a.shape == images.shape and float(a.min()) >= 0 and float(a.max()) <= 1, name
        assert torch.equal(a, b), name
        assert not torch.equal(a, images), name


def test_rotate180_is_refused_for_6_and_9(digits: Project) -> None:
    iteration = digits.choose_run().iteration
    policy = Policy("rotate180", [PolicyStep("rotate180", 0.0)])
    preservation = check_preservation(digits.dataset, digits.split, iteration, policy, seed=0)
    refused_for = preservation.refused_classes("rotate180")
    assert {"6", "9"} <= refused_for
    six = next(c for c in preservation.checks if str(c.label) == "6")
    assert six.flip_rate > 0.5 and six.clean_rate < 0.1


def test_augment_adds_factor_children_per_parent_in_train(digits: Project) -> None:
    before = len(digits.dataset.ids)
    n_train = len(digits.split.ids("train"))
    result = _cli("augment", "--policy", "rotation=10,blur=0.5", "--factor", "2",
                  "--no-lift", "--json", "-p", digits.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [s["transform"] for s in out["policy"]["steps"]] == ["rotation", "blur"]
    assert out["policy"]["steps"][0]["magnitude"] == 10
    assert out["added"] == 2 * out["parents"] and out["parents"] == n_train
    reopened = Project.load(digits.root)
    dataset = reopened.dataset
    assert len(dataset.ids) == before + out["added"]
    added = dataset.provenance[dataset.provenance["action_id"] == out["action"]["action_id"]]
    assert len(added) == out["added"]
    assert set(added["parent_id"]) <= set(reopened.split.ids("train"))
    assert (reopened.split.parts.reindex(added.index) == "train").all()
    child = added.index[0]
    parent = added.loc[child, "parent_id"]
    assert dataset.y([child])[0] == dataset.y([parent])[0]
    pixels = dataset.X([child]).to_numpy()
    assert pixels.min() >= 0 and pixels.max() <= 16
    assert not np.array_equal(pixels, dataset.X([parent]).to_numpy())


@pytest.mark.parametrize(("args", "needles"), [
    (("--group", "slice:nope"), ("no group 'slice:nope'", "the groups are")),
    (("--policy", "shift,twirl"), ("unknown transform 'twirl'", "rotate180")),
    (("--factor", "0"), ("--factor",)),
])
def test_bad_input_exits_2_and_writes_nothing(digits: Project, args, needles) -> None:
    before = state_files(digits.root)
    refused(_cli("augment", *args, "--no-lift", "-p", digits.root), *needles)
    assert state_files(digits.root) == before


def test_image_transforms_on_a_table_are_refused_with_nothing_written(
        penguins_csv: Path, tmp_path: Path) -> None:
    project = Project.init(tmp_path / "pen", data=str(penguins_csv), target="species")
    before = state_files(project.root)
    refused(_cli("augment", "--policy", "shift", "--no-lift", "-p", project.root),
            "'shift' in --policy does not apply to a classification table", "smote, jitter")
    assert state_files(project.root) == before


def test_auto_policy_picks_shift_when_val_images_are_shifted(tmp_path: Path) -> None:
    """An image folder whose val digits sit off centre: auto picks shift, PNGs round-trip."""
    bunch = load_digits()
    folder = tmp_path / "images"
    keep = np.arange(600)
    for i in keep:
        (folder / str(bunch.target[i])).mkdir(parents=True, exist_ok=True)
        pixels = np.kron(bunch.images[i] / 16 * 255, np.ones((2, 2))).astype(np.uint8)
        Image.fromarray(pixels).save(folder / str(bunch.target[i]) / f"{i:04d}.png")
    project = Project.init(tmp_path / "p", data=str(folder), target="label")
    rng = np.random.default_rng(0)
    for path in project.dataset.frame.loc[project.split.ids("val"), "image"]:
        pixels = np.asarray(Image.open(path))
        dy, dx = rng.choice([-4, -3, 3, 4], size=2)
        moved = np.roll(np.roll(pixels, dy, axis=0), dx, axis=1)
        Image.fromarray(moved).save(path)
    project = Project.load(project.root)
    project.train("linear", report=False)
    record, result = project.augment(policy="auto", lift=False)
    steps = {s.transform: s for s in result.policy.steps}
    assert "shift" in steps and "centres of mass" in " ".join(steps["shift"].reasons)
    assert steps["shift"].magnitude >= 0.1
    dataset = Project.load(project.root).dataset
    added = dataset.ids[dataset.provenance["action_id"] == record.action_id]
    assert len(added) == result.n_added > 0
    with Image.open(dataset.frame.loc[added[0], "image"]) as img:
        assert img.size == (16, 16)
