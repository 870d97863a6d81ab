"""The one torch training loop behind every torch family.

Mini-batch AdamW with early stopping on a validation set: ``eval_set`` when
the caller has one, else a seeded (stratified) 10% of the training rows. The
weights of the best validation epoch are restored at the end. Inputs may be a
dense array or a scipy sparse matrix (TF-IDF); sparse inputs stay sparse and
are densified one batch at a time. Modules take flat rows, shape
(n_rows, n_features); a module that wants images reshapes them itself.

Example
-------
>>> result = train_module(lambda: torch.nn.Linear(4, 3), X, y,  # doctest: +SKIP
...                       task="classification", n_classes=3, max_epochs=50)
>>> logits = predict_module(result.module, X_new)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from loopml.console import progress
from loopml.data.sampling import EARLY_STOPPING_FRACTION, holdout
from loopml.models.base import balanced_class_weights

TASKS = ("classification", "regression")
#: share of the training rows held out for early stopping when no eval_set is given
HOLDOUT_FRACTION = EARLY_STOPPING_FRACTION
#: rows per forward pass when only predicting (no gradients kept)
PREDICT_BATCH_SIZE = 1024


@dataclass
class TrainResult:
    """What :func:`train_module` produced.

    ``module`` holds the weights of ``best_epoch`` (1-based; 0 when no epoch
    improved on the initial weights) and is in eval mode. ``history`` has one
    ``train_loss`` and one ``val_loss`` per epoch run. For regression the
    module predicts standardized targets: multiply by ``y_std`` and add
    ``y_mean`` to get back to the units of ``y``.
    """

    module: nn.Module
    best_epoch: int
    n_epochs: int
    history: dict[str, list[float]]
    y_mean: float = 0.0
    y_std: float = 1.0


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA when it is available and the CPU otherwise (``None``)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was asked for, but CUDA is not available "
                         "on this machine; use device=None to pick one automatically")
    return resolved


def train_module(build_module: Callable[[], nn.Module], X, y, *, task: str,
                 eval_set: tuple | None = None, n_classes: int | None = None,
                 max_epochs: int = 200, batch_size: int = 128, lr: float = 1e-3,
                 weight_decay: float = 0.0, patience: int = 15, random_state: int = 0,
                 balance: bool = False, device: str | None = None, verbose: bool = True,
                 description: str = "training",
                 param_groups: Callable[[nn.Module], list[dict]] | None = None
                 ) -> TrainResult:
    """Train the module ``build_module()`` returns on rows ``X`` and targets ``y``.

    Parameters
    ----------
    build_module : callable
        Returns a fresh module mapping (batch, n_features) float32 rows to
        (batch, n_classes) logits, or to (batch, 1) for regression. It is
        called under ``torch.manual_seed(random_state)``, so the initial
        weights depend on the seed only; the global RNG is left as it was.
    X : array or scipy sparse matrix, shape (n_rows, n_features)
    y : array, shape (n_rows,)
        Integer class codes 0..n_classes-1, or regression values.
    task : {"classification", "regression"}
        Cross-entropy loss, or mean squared error on standardized targets.
    eval_set : (X_val, y_val), optional
        Rows for early stopping; None holds out 10% of ``X`` (stratified).
    max_epochs, batch_size, lr, weight_decay, patience
        AdamW settings; training stops after ``patience`` epochs without a
        lower validation loss.
    balance : bool
        Classification: weight the cross-entropy of each class by
        ``n / (k * count)``, counted on the training rows only (not the
        early-stopping rows, whose loss is weighted the same way so training
        stops on the loss it optimizes). Regression ignores it.
    device : str, optional
        "cuda", "cpu", ...; None picks CUDA when available.
    verbose : bool
        Show a transient progress bar over epochs.
    param_groups : callable, optional
        ``param_groups(module)`` gives AdamW's parameter groups (each may set
        its own ``lr``), e.g. lower rates for pretrained layers than for a new
        head; None: one group at ``lr``.
    """
    _check_options(task=task, n_classes=n_classes, max_epochs=max_epochs,
                   batch_size=batch_size, lr=lr, weight_decay=weight_decay, patience=patience)
    max_epochs, batch_size, patience = int(max_epochs), int(batch_size), int(patience)
    target = resolve_device(device)
    X, y = _as_rows(X), np.asarray(y)
    if X.shape[0] != len(y):
        raise ValueError(f"X and y must be the same length, but X has {X.shape[0]} rows "
                         f"and y has {len(y)}")
    rows, X_val, y_val = _validation_split(X, y, eval_set, task=task, random_state=random_state)
    y_mean, y_std = 0.0, 1.0
    if task == "regression":
        y_mean, y_std = float(np.mean(y[rows])), float(np.std(y[rows])) or 1.0
    y_t, y_val_t = _targets(y, task, y_mean, y_std), _targets(y_val, task, y_mean, y_std)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        module = build_module().to(target)
    loop = _Loop(module=module, device=target, batch_size=batch_size,
                 loss_fn=_loss(task, y[rows], n_classes, balance=balance, device=target),
                 optimizer=torch.optim.AdamW(
                     module.parameters() if param_groups is None else param_groups(module),
                     lr=lr, weight_decay=weight_decay),
                 generator=torch.Generator().manual_seed(random_state))
    best_epoch, history = loop.run(X, y_t, rows, X_val, y_val_t, max_epochs=max_epochs,
                                   patience=patience, verbose=verbose, description=description)
    return TrainResult(module=module.eval(), best_epoch=best_epoch,
                       n_epochs=len(history["val_loss"]), history=history,
                       y_mean=y_mean, y_std=y_std)


@torch.no_grad()
def predict_module(module: nn.Module, X, *, device: str | None = None,
                   batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """The module's raw outputs for rows ``X``, shape (n_rows, n_outputs), float32.

    The module is moved to ``device`` (None: CUDA when available) and put in
    eval mode; rows go through in batches without gradients.
    """
    target = resolve_device(device)
    module.to(target).eval()
    return _forward(module, _as_rows(X), target, batch_size).cpu().numpy()


@dataclass
class _Loop:
    """One training run's moving parts, so each step is a short method."""

    module: nn.Module
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    device: torch.device
    batch_size: int

    def run(self, X, y: torch.Tensor, rows: np.ndarray, X_val, y_val: torch.Tensor, *,
            max_epochs: int, patience: int, verbose: bool, description: str
            ) -> tuple[int, dict[str, list[float]]]:
        """Train until ``patience`` epochs pass without a better val loss; restore the best."""
        history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        best_loss, best_epoch, best_state = math.inf, 0, _copy_state(self.module)
        with _epoch_bar(description, max_epochs, enabled=verbose) as advance:
            for epoch in range(1, max_epochs + 1):
                train_loss = self.train_epoch(X, y, rows)
                val_loss = self.val_loss(X_val, y_val)
                history["train_loss"].append(train_loss)
                history["val_loss"].append(val_loss)
                if val_loss < best_loss:
                    best_loss, best_epoch, best_state = val_loss, epoch, _copy_state(self.module)
                advance(f"val loss {val_loss:.4f} (best {best_loss:.4f})")
                if epoch - best_epoch >= patience or not math.isfinite(train_loss):
                    break
        self.module.load_state_dict(best_state)
        return best_epoch, history

    def train_epoch(self, X, y: torch.Tensor, rows: np.ndarray) -> float:
        """One pass over ``rows`` in a seeded random order; the mean training loss."""
        self.module.train()
        order = rows[torch.randperm(len(rows), generator=self.generator).numpy()]
        total = torch.zeros((), device=self.device)
        seen = 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if len(idx) == 1 and seen:
                continue  # batch norm cannot normalize a batch of one row
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.module(_batch(X, idx, self.device)),
                                y[idx].to(self.device))
            loss.backward()
            self.optimizer.step()
            total += loss.detach() * len(idx)
            seen += len(idx)
        return float(total) / max(seen, 1)

    @torch.no_grad()
    def val_loss(self, X_val, y_val: torch.Tensor) -> float:
        self.module.eval()
        outputs = _forward(self.module, X_val, self.device, PREDICT_BATCH_SIZE)
        return float(self.loss_fn(outputs, y_val.to(self.device)))


def _loss(task: str, y_train: np.ndarray, n_classes: int | None, *, balance: bool,
          device: torch.device) -> Callable:
    """Cross-entropy (class-weighted when ``balance``) or mean squared error."""
    if task != "classification":
        return F.mse_loss
    if not balance:
        return F.cross_entropy
    weights = balanced_class_weights(y_train, int(n_classes or 0))
    return functools.partial(F.cross_entropy,
                             weight=torch.as_tensor(weights, dtype=torch.float32, device=device))


def _check_options(*, task: str, n_classes: int | None, max_epochs: int, batch_size: int,
                   lr: float, weight_decay: float, patience: int) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "classification" and (n_classes is None or n_classes < 2):
        raise ValueError(f"classification needs n_classes >= 2, got {n_classes!r}")
    for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size),
                        ("patience", patience)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")


def _as_rows(X):
    """Sparse input as CSR (row slicing is cheap), dense input as a float32 array."""
    if sp.issparse(X):
        return X.tocsr()
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-dimensional (rows, features), got shape {X.shape}")
    return X


def _validation_split(X, y: np.ndarray, eval_set, *, task: str, random_state: int):
    """(training row indices, X_val, y_val): eval_set, or a seeded 10% of X."""
    if eval_set is not None and len(eval_set[1]) == 0:
        warnings.warn("eval_set has no rows (or none of a class seen in training); holding "
                      "out 10% of the training rows for early stopping instead", stacklevel=3)
    elif eval_set is not None:
        X_val, y_val = _as_rows(eval_set[0]), np.asarray(eval_set[1])
        if X_val.shape[0] != len(y_val) or X_val.shape[1] != X.shape[1]:
            raise ValueError(f"eval_set must be (X_val, y_val) with {X.shape[1]} features and "
                             f"one target per row, but X_val has shape {X_val.shape} and "
                             f"y_val has length {len(y_val)}")
        return np.arange(len(y)), X_val, y_val
    if len(y) < 2:
        raise ValueError(f"training needs at least 2 rows to hold one out for early stopping, "
                         f"got {len(y)}")
    rows, val_rows = holdout(np.arange(len(y)), y if task == "classification" else None,
                             HOLDOUT_FRACTION, seed=random_state)
    return np.sort(rows), X[val_rows], y[val_rows]


def _targets(y: np.ndarray, task: str, y_mean: float, y_std: float) -> torch.Tensor:
    if task == "classification":
        return torch.as_tensor(y, dtype=torch.long)
    return torch.as_tensor((y.astype(np.float64) - y_mean) / y_std, dtype=torch.float32)[:, None]


def _batch(X, idx: np.ndarray | slice, device: torch.device) -> torch.Tensor:
    rows = X[idx]
    if sp.issparse(rows):
        rows = rows.toarray()
    return torch.from_numpy(np.asarray(rows, dtype=np.float32)).to(device)


def _forward(module: nn.Module, X, device: torch.device, batch_size: int) -> torch.Tensor:
    n = X.shape[0]
    return torch.cat([module(_batch(X, slice(start, start + batch_size), device))
                      for start in range(0, max(n, 1), batch_size)])


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@contextlib.contextmanager
def _epoch_bar(description: str, total: int, *, enabled: bool
               ) -> Iterator[Callable[[str], None]]:
    """A function to call once per epoch with a status line; a no-op when disabled."""
    if not enabled:
        yield lambda status: None
        return
    with progress() as bar:
        task = bar.add_task(description, total=total, status="")
        yield lambda status: bar.update(task, advance=1, status=status)
