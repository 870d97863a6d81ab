"""Architectures built on PyTorch: a multilayer perceptron and a small conv net.

Both train with :func:`loopml.models.trainer.train_module` (AdamW, early
stopping on a validation set, best weights restored), so ``reg`` means the
same for both: the AdamW weight decay, an L2 pull of every weight towards 0.
A fitted model pickles with its weights on the CPU and predicts on any
machine, with or without CUDA.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from torch import from_numpy, nn

from loopml.models.base import Architecture
from loopml.models.features import image_preprocessor, image_shape_of
from loopml.models.trainer import predict_module, train_module

#: conv blocks of the CNN; each doubles the channels and halves the image while it can
CNN_BLOCKS = 3


class TorchArchitecture(Architecture):
    """What the torch families share: training, batched prediction and pickling.

    A subclass says how to describe its module from the training rows
    (``_module_spec``, a dict of plain values) and how to build the module
    from that description (``_build_module``); the description is kept as
    ``module_spec_`` so an unpickled model rebuilds the same module.
    """

    #: AdamW's decay takes lr * reg of each weight per step, so at the default
    #: learning rates little happens below 1 and the fit collapses by ~100
    reg_grid = tuple(np.logspace(-1, 2.5, 8))

    max_epochs: int
    batch_size: int
    lr: float
    patience: int
    device: str | None
    verbose: bool

    def _module_spec(self, Xt) -> dict:
        raise NotImplementedError

    def _build_module(self, **spec) -> nn.Module:
        raise NotImplementedError

    def _fit_model(self, Xt, y, eval_set) -> None:
        self.module_spec_ = self._module_spec(Xt)
        classification = self.task == "classification"
        result = train_module(
            lambda: self._build_module(**self.module_spec_), Xt, y, task=self.task,
            eval_set=eval_set, n_classes=self.n_classes_ if classification else None,
            max_epochs=self.max_epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=float(self.reg), patience=self.patience,
            random_state=self.random_state, balance=bool(self.balance) and classification,
            device=self.device, verbose=self.verbose,
            description=f"{self.name} size={self.size:g} reg={self.reg:g}")
        self.module_ = result.module
        self.best_epoch_, self.n_epochs_ = result.best_epoch, result.n_epochs
        self.history_ = result.history
        self.y_mean_, self.y_std_ = result.y_mean, result.y_std

    def _n_outputs(self) -> int:
        return self.n_classes_ if self.task == "classification" else 1

    def _predict_proba_model(self, Xt) -> np.ndarray:
        logits = predict_module(self.module_, Xt, device=self.device)
        return softmax(logits.astype(np.float64), axis=1)

    def _predict_model(self, Xt) -> np.ndarray:
        outputs = predict_module(self.module_, Xt, device=self.device)
        return outputs[:, 0].astype(np.float64) * self.y_std_ + self.y_mean_

    # ------------------------------------------------------------ pickling

    def __getstate__(self) -> dict:
        # a copy: on Python 3.11+ object.__getstate__ returns the live __dict__
        state = dict(super().__getstate__())
        module = state.pop("module_", None)
        if module is not None:
            state["module_weights_"] = {k: v.detach().cpu().numpy()
                                        for k, v in module.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        weights = state.pop("module_weights_", None)
        super().__setstate__(state)
        if weights is not None:
            module = self._build_module(**self.module_spec_)
            module.load_state_dict({k: from_numpy(np.array(v)) for k, v in weights.items()})
            self.module_ = module.eval()


class MLP(TorchArchitecture):
    """A multilayer perceptron: two hidden layers of ``size`` ReLU units.

    Takes the table preprocessor's output (scaled numbers, one-hot categories,
    TF-IDF text, flattened pixels), so it fits any table. Trained with AdamW
    and early stopping (see :func:`loopml.models.trainer.train_module`).

    Parameters
    ----------
    size : int, default 256
        Width of each of the two hidden layers; capacity grows with it.
    reg : float, default 1e-4
        AdamW weight decay, an L2 pull of every weight towards 0; 0 means none.
        Each step takes ``lr * reg`` of every weight away: on scikit-learn's
        digits up to ~10 barely changes the fit, ~30 visibly constrains it and
        100 leaves little more than the class frequencies (or the mean).
    balance : bool, default False
        Weight each class's cross-entropy inversely to its frequency in the
        training rows, so a rare class counts as much as a common one;
        regression ignores it.
    max_epochs : int, default 200
        Upper bound on passes over the training rows.
    batch_size : int, default 128
        Rows per gradient step.
    lr : float, default 1e-3
        AdamW learning rate.
    patience : int, default 15
        Epochs without a lower validation loss before training stops; the
        best epoch's weights are kept.
    device : str, optional
        "cuda", "cpu", ...; None uses CUDA when available.
    verbose : bool, default True
        Show a progress bar over epochs while fitting.

    Attributes
    ----------
    best_epoch_, n_epochs_ : int
        The epoch whose weights were kept, and the epochs run.
    history_ : dict
        ``train_loss`` and ``val_loss``, one value per epoch.
    """

    name = "mlp"
    summary = "multilayer perceptron, 2 hidden ReLU layers (PyTorch)"
    knobs = "size = width of each hidden layer; reg = weight decay (AdamW)"
    size_grid = (16, 32, 64, 128, 256, 512)

    def __init__(self, *, task: str = "classification", size: int = 256, reg: float = 1e-4,
                 balance: bool = False, features: dict | None = None,
                 image_shape: tuple | None = None, image_size: int = 32,
                 random_state: int = 0, max_epochs: int = 200, batch_size: int = 128,
                 lr: float = 1e-3, patience: int = 15, device: str | None = None,
                 verbose: bool = True) -> None:
        self.task = task
        self.size = size
        self.reg = reg
        self.balance = balance
        self.features = features
        self.image_shape = image_shape
        self.image_size = image_size
        self.random_state = random_state
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.device = device
        self.verbose = verbose

    def _module_spec(self, Xt) -> dict:
        return {"n_inputs": int(Xt.shape[1]), "width": max(1, round(self.size)),
                "n_outputs": self._n_outputs()}

    def _build_module(self, *, n_inputs: int, width: int, n_outputs: int) -> nn.Module:
        return nn.Sequential(nn.Linear(n_inputs, width), nn.ReLU(),
                             nn.Linear(width, width), nn.ReLU(),
                             nn.Linear(width, n_outputs))


class CNN(TorchArchitecture):
    """A small convolutional network for images or pixel tables.

    Three conv blocks (3x3 conv, batch norm, ReLU) with ``size``, 2*``size``
    and 4*``size`` channels; each halves the image by 2x2 max pooling while it
    is at least 4 pixels across, so 8x8 digits and 32x32 photos both fit.
    Global average pooling and a linear layer give the prediction.

    Input is the one image column (files read at ``image_size`` x
    ``image_size``) or, for a table of pixel intensities, the columns read
    as images of ``image_shape`` = (channels, height, width) in C order.

    Parameters
    ----------
    size : int, default 32
        Channels of the first conv block (the next ones have 2x and 4x).
    reg : float, default 1e-4
        AdamW weight decay, an L2 pull of every weight towards 0; 0 means none.
    balance : bool, default False
        Class-weighted cross-entropy, as for :class:`MLP`.
    image_shape : tuple, optional
        (C, H, W) of a pixel table; unused when the input is an image column.
    image_size : int, default 32
        Side in pixels that image files are resized to.
    lr : float, default 3e-3
        AdamW learning rate; higher than the MLP's, which batch norm tolerates
        and which reaches the best epoch in about half the epochs.
    max_epochs, batch_size, patience, device, verbose
        Training settings, as for :class:`MLP`.

    Attributes
    ----------
    image_shape_ : tuple
        (C, H, W) of the images the network was trained on.
    best_epoch_, n_epochs_, history_
        As for :class:`MLP`.
    """

    name = "cnn"
    summary = "small convolutional network, 3 conv blocks (PyTorch)"
    knobs = "size = channels of the first conv block (x2, x4 after); reg = weight decay (AdamW)"
    input_kind = "image"
    size_grid = (8, 16, 32, 64)

    def __init__(self, *, task: str = "classification", size: int = 32, reg: float = 1e-4,
                 balance: bool = False, features: dict | None = None,
                 image_shape: tuple | None = None, image_size: int = 32,
                 random_state: int = 0, max_epochs: int = 200, batch_size: int = 128,
                 lr: float = 3e-3, patience: int = 15, device: str | None = None,
                 verbose: bool = True) -> None:
        self.task = task
        self.size = size
        self.reg = reg
        self.balance = balance
        self.features = features
        self.image_shape = image_shape
        self.image_size = image_size
        self.random_state = random_state
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.device = device
        self.verbose = verbose

    def _make_preprocessor(self):
        return image_preprocessor(self.feature_types_, image_size=self.image_size)

    def _module_spec(self, Xt) -> dict:
        shape = tuple(int(d) for d in image_shape_of(self.preprocessor_, self.image_shape))
        if len(shape) != 3 or int(np.prod(shape)) != Xt.shape[1]:
            raise ValueError(f"image_shape must be (channels, height, width) with one value "
                             f"per input column, but it is {shape} and the input has "
                             f"{Xt.shape[1]} columns")
        self.image_shape_ = shape
        return {"image_shape": shape, "channels": max(1, round(self.size)),
                "n_outputs": self._n_outputs()}

    def _build_module(self, *, image_shape: tuple[int, int, int], channels: int,
                      n_outputs: int) -> nn.Module:
        c_in, height, width = image_shape
        layers: list[nn.Module] = [nn.Unflatten(1, tuple(image_shape))]
        for block in range(CNN_BLOCKS):
            c_out = channels * 2 ** block
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU()]
            if min(height, width) >= 4:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_outputs)]
        return nn.Sequential(*layers)
