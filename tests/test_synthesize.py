"""loopml synthesize: glyphs of each class's character, drawn in matplotlib's fonts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from checks import refused, state_files
from loopml.exceptions import DataError, LoopmlError
from loopml.grow.synthesize import default_fonts, glyph_missing, synthesize
from loopml.project import Project


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Project:
    """A digits project to read from (tests that add examples make their own)."""
    return Project.init(tmp_path_factory.mktemp("synth") / "d", data="digits")


def _font(stem: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{stem}.ttf"


def test_synthesize_adds_train_only_glyphs_like_the_real_digits(cli):
    assert cli("init", "p", "--data", "digits").exit_code == 0
    result = cli("synthesize", "-p", "p", "--count", "20", "--no-lift", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["n_images"] == 200 and doc["image_shape"] == [1, 8, 8]
    assert [c["images"] for c in doc["classes"]] == [20] * 10
    # many fonts, not one: screening keeps those nearest handwriting (8-14 of 20 per class)
    assert all(len(c["fonts_used"]) >= 6 for c in doc["classes"])
    assert doc["candidates_per_glyph"] == 20 and doc["n_screen"] == 1257  # no run: all train

    project = Project.load("p")
    dataset, split = project.dataset, project.split
    synth = dataset.ids[(dataset.origin == "synth").to_numpy()]
    assert len(synth) == 200
    assert set(split.parts.reindex(synth)) == {"train"}  # never val or test
    assert (dataset.provenance.loc[synth, "action_id"] == doc["action"]["action_id"]).all()
    pixels = dataset.X(synth).to_numpy()
    assert pixels.min() >= 0 and pixels.max() <= 16 and (pixels == np.round(pixels)).all()
    real_ids = split.ids("train")[(dataset.origin.reindex(split.ids("train")) == "source")
                                  .to_numpy()]
    real, real_y, synth_y = dataset.X(real_ids).to_numpy(), dataset.y(real_ids), dataset.y(synth)
    for label in range(10):
        made, seen = pixels[synth_y == label], real[real_y == label]
        assert abs(made.mean() - seen.mean()) < 0.3, label  # real class means are 4.7..5.2
        assert abs(made.std() - seen.std()) < 0.3, label
        assert abs((made > 0).mean() - (seen > 0).mean()) < 0.03, label

    table = cli("synthesize", "-p", "p", "--count", "1", "--no-lift")
    assert table.exit_code == 0, table.output
    assert "DejaVuSans" in table.output and "added 10 synthesized train example(s)" in \
        table.output


def test_glyphs_alone_teach_a_linear_model_to_read_real_digits(digits):
    # measured: 0.52-0.61 val accuracy over seeds 0-4 with 30 glyphs per class (chance: 0.10)
    dataset, split = digits.dataset, digits.split
    result = synthesize(dataset, split, count=30, candidates=1, seed=1)  # unscreened
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(result.images.reshape(len(result.images), -1), result.labels)
    val = split.ids("val")
    accuracy = (model.predict(dataset.X(val).to_numpy()) == dataset.y(val)).mean()
    assert accuracy > 0.40, accuracy


def test_screening_keeps_glyphs_a_model_of_real_digits_reads_as_their_class(digits):
    # measured: a model of all real train digits reads 0.55-0.61 of unscreened glyphs as
    # their class and 0.98-1.00 of glyphs screened by a model of 10% of train (seeds 0-2)
    dataset, split = digits.dataset, digits.split
    train = split.ids("train")
    tenth = train[::10]
    raw = synthesize(dataset, split, count=10, candidates=1, seed=2)
    kept = synthesize(dataset, split, count=10, screen_on=tenth, seed=2)
    assert (raw.candidates, raw.n_screen) == (1, 0)
    assert (kept.candidates, kept.n_screen) == (20, len(tenth))
    assert "best 1 in 20 as read by a model of 126 real train" in kept.describe()
    assert [int((kept.labels == c).sum()) for c in range(10)] == [10] * 10
    reader = SVC().fit(dataset.X(train).to_numpy(), dataset.y(train))  # all of train

    def read(result) -> float:
        return float((reader.predict(result.images.reshape(100, -1)) == result.labels).mean())

    assert read(raw) < 0.7 and read(kept) > 0.9, (read(raw), read(kept))
    with pytest.raises(LoopmlError, match="candidates must be a whole number"):
        synthesize(dataset, split, count=1, candidates=0)


def test_same_seed_draws_the_same_glyphs(digits):
    one = synthesize(digits.dataset, digits.split, count=3, classes=[4], seed=7)
    two = synthesize(digits.dataset, digits.split, count=3, classes=[4], seed=7)
    other = synthesize(digits.dataset, digits.split, count=3, classes=[4], seed=8)
    assert np.array_equal(one.images, two.images) and list(one.fonts) == list(two.fonts)
    assert not np.array_equal(one.images, other.images)


def test_coverage_check_skips_a_font_without_digits_and_names_it(digits):
    sans, symbols = _font("DejaVuSans"), _font("STIXSizOneSymReg")  # a font of big delimiters
    result = synthesize(digits.dataset, digits.split, count=4, fonts=[sans, symbols], seed=0)
    assert {s.font for s in result.skipped} == {"STIXSizOneSymReg"}
    assert sorted(s.label for s in result.skipped) == list(range(10))  # named for every class
    assert set(result.fonts) == {"DejaVuSans"} and len(result.images) == 40
    assert result.to_dict()["classes"][3]["fonts_skipped"] == ["STIXSizOneSymReg"]
    # a character the font lacks draws its missing-glyph box: refused the same way
    assert glyph_missing(sans, "7") is None
    assert glyph_missing(sans, "\u4e2d") == "draws its missing-glyph box"
    assert glyph_missing(symbols, "7") == "draws nothing"
    with pytest.raises(DataError, match="no font draws class 3") as caught:
        synthesize(digits.dataset, digits.split, count=1, classes=[3], fonts=[symbols])
    assert "STIXSizOneSymReg" in caught.value.hint
    assert all(glyph_missing(f, d) is None for f in default_fonts() for d in "0123456789")


def test_group_draws_only_its_classes(cli):
    assert cli("init", "p", "--data", "digits").exit_code == 0
    project = Project.load("p")
    val = project.split.ids("val")
    threes = val[project.dataset.y(val) == 3][:5].tolist()
    assert cli("tag", "-p", "p", *threes, "smudged").exit_code == 0
    result = cli("synthesize", "-p", "p", "--group", "trait:smudged", "--count", "5",
                 "--no-lift", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["group"] == "trait:smudged" and [c["class"] for c in doc["classes"]] == [3]
    dataset = Project.load("p").dataset
    synth = dataset.ids[(dataset.origin == "synth").to_numpy()]
    assert set(dataset.y(synth)) == {3}
    assert set(dataset.provenance.loc[synth, "target_group"]) == {"trait:smudged"}


def _image_folder(root: Path, classes: tuple[str, ...], side: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (side, side), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_image_folder_gets_png_glyphs_of_its_image_size(tmp_path):
    folder = _image_folder(tmp_path / "letters", ("a", "b"), side=20)
    project = Project.init(tmp_path / "p", data=str(folder))
    record, result = project.synthesize(count=4, lift=False)
    assert result.images.shape == (8, 1, 20, 20)
    assert record.counts == {"train": 8, "val": 0, "test": 0}
    dataset = Project.load(tmp_path / "p").dataset
    synth = dataset.ids[(dataset.origin == "synth").to_numpy()]
    assert sorted(dataset.y(synth)) == ["a"] * 4 + ["b"] * 4
    for path in dataset.frame.loc[synth, "image"]:
        with Image.open(path) as image:
            assert image.size == (20, 20) and image.mode == "L"


def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path):
    assert cli("init", "p", "--data", "digits").exit_code == 0
    before = state_files(Path("p"))
    refused(cli("synthesize", "-p", "p", "--count", "0", "--no-lift"), "count", "at least 1")
    refused(cli("synthesize", "-p", "p", "--group", "slice:nope", "--no-lift"),
            "no group 'slice:nope'", "the groups are")
    assert state_files(Path("p")) == before

    # a table is not refused: it gets a Gaussian copula (tests/test_synthesize_tables.py)

    folder = _image_folder(tmp_path / "animals", ("cat", "dog"))
    assert cli("init", "a", "--data", str(folder)).exit_code == 0
    before = state_files(Path("a"))
    refused(cli("synthesize", "-p", "a", "--no-lift"), "'cat', 'dog'", "not single characters")
    assert state_files(Path("a")) == before


def test_the_lift_of_glyphs_is_measured_on_integer_classes(tmp_path: Path) -> None:
    """Digits' classes are integers: the lift compares the model's classes with the labels."""
    project = Project.init(tmp_path / "d", data="digits")
    reference = project.train("linear", report=False)
    record, result = project.synthesize(count=5, seeds=2)
    lift = result.lift
    assert lift is not None and lift.action_id == record.action_id
    assert lift.reference_run == reference.run_id and lift.n_val == 270
    assert lift.n_train_after - lift.n_train_before == 50
    assert abs(lift.overall.before.mean - reference.metrics["val_accuracy"]) < 0.02
    assert [e.action_id for e in project.ledger()] == [record.action_id]
