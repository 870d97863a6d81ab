"""The architecture registry: names to families, and which fit a dataset.

Families load lazily, so a verb that never trains (``loopml runs``) never
pays for importing torch.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.exceptions import LoopmlError

if TYPE_CHECKING:
    from loopml.data.dataset import Dataset
    from loopml.models.base import Architecture

_FAMILIES = {
    "linear": "loopml.models.sklearn_families:LinearModel",
    "gbt": "loopml.models.sklearn_families:GradientBoosting",
    "mlp": "loopml.models.torch_families:MLP",
    "cnn": "loopml.models.torch_families:CNN",
    "transfer": "loopml.models.transfer:Transfer",
}
#: families trained only when named: too slow for ``loopml run``'s default list
_OPT_IN = ("transfer",)
ALIASES = {"logistic": "linear", "ridge": "linear", "lightgbm": "gbt", "boosting": "gbt"}


def architecture_names() -> list[str]:
    return list(_FAMILIES)


def get_architecture(name: str) -> type[Architecture]:
    """The family class for a name or alias, or a LoopmlError that lists them."""
    key = ALIASES.get(name, name)
    if key not in _FAMILIES:
        options = [*_FAMILIES, *ALIASES]
        close = difflib.get_close_matches(name, options, n=1)
        raise LoopmlError(f"unknown architecture '{name}'" +
                          (f"; did you mean '{close[0]}'?" if close else ""),
                          hint=f"choose one of {', '.join(_FAMILIES)}")
    module, _, cls = _FAMILIES[key].partition(":")
    return getattr(importlib.import_module(module), cls)


def unsupported_reason(name: str, dataset: Dataset) -> str | None:
    """Why a family cannot train on this dataset, or None when it can."""
    family = get_architecture(name)
    if dataset.task not in family.tasks:
        return f"'{family.name}' does not do {dataset.task}"
    if family.input_kind == "image":
        has_images = "image" in dataset.features.values()
        if not has_images and dataset.image_shape is None:
            return f"'{family.name}' needs images (an image column or a pixel table)"
    if family.input_kind == "pretrained" and dataset.image_shape is None and \
            not {"text", "image"} & set(dataset.features.values()):
        return f"'{family.name}' needs a text column or images"
    return None


def default_candidates(dataset: Dataset) -> list[str]:
    """The families ``loopml run`` tries when the scope names none."""
    return [n for n in _FAMILIES
            if n not in _OPT_IN and unsupported_reason(n, dataset) is None]


def make_architecture(name: str, dataset: Dataset, *, size: float | None = None,
                      reg: float | None = None, seed: int = 0, image_size: int = 32,
                      balance: bool = False, **params) -> Architecture:
    """An unfitted estimator of a family, wired to the dataset's columns.

    Stages do not call this directly: they are handed an :class:`EstimatorFactory`
    that the project built once, so every estimator of a project gets the same
    seed, image size, class weighting and columns. ``class_weight="balanced"``
    (scikit-learn's spelling, which users try) is read as ``balance=True``.
    """
    reason = unsupported_reason(name, dataset)
    if reason:
        raise LoopmlError(f"cannot train {reason}",
                          hint=f"try one of {', '.join(default_candidates(dataset))}")
    family = get_architecture(name)
    if "class_weight" in params:
        balance = _class_weight_as_balance(params.pop("class_weight"))
    if not isinstance(balance, bool):
        raise LoopmlError(f"balance must be true or false, not {balance!r}",
                          hint="e.g. --param balance=true")
    estimator = family(task=dataset.task, features=dict(dataset.features),
                       image_shape=dataset.image_shape, image_size=image_size,
                       random_state=seed, balance=balance)
    knobs = {k: v for k, v in (("size", size), ("reg", reg)) if v is not None}
    valid = estimator.get_params()
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise LoopmlError(f"architecture '{family.name}' has no parameter(s) {unknown}",
                          hint=f"its parameters are {', '.join(sorted(valid))}")
    estimator.set_params(**knobs, **params)
    check_data = getattr(estimator, "check_data", None)  # params that depend on the data
    if check_data is not None:
        check_data(dict(dataset.features), dataset.image_shape)
    return estimator


def _class_weight_as_balance(value: Any) -> bool:
    """scikit-learn's ``class_weight`` in loopml's terms: "balanced" or none."""
    if value in ("balanced", True):
        return True
    if value in (None, "none", "None", False):
        return False
    raise LoopmlError(f"class_weight={value!r} is not supported; loopml weights classes "
                      "only as scikit-learn's 'balanced' (inversely to their frequency)",
                      hint="use --param class_weight=balanced (or balance=true), or leave "
                           "it out")


#: settings an iteration records that the factory sets itself, from the data and scope
_WIRED = ("task", "features", "image_shape", "cache_dir")


@dataclass(frozen=True)
class EstimatorFactory:
    """The one place that turns an architecture name into an estimator for a project.

    Built once per project (``Project.factory``) from its dataset and scope,
    then handed to every stage that fits models (training, diagnosis sweeps,
    label checks), so none of them can forget an option such as ``image_size``.

    >>> factory = EstimatorFactory(dataset, seed=0, image_size=32)  # doctest: +SKIP
    >>> factory.make("gbt", size=16)  # doctest: +SKIP
    GradientBoosting(size=16, ...)
    """

    dataset: Dataset
    seed: int = 0
    image_size: int = 32
    #: weight classes inversely to their frequency (the scope's ``balance``)
    balance: bool = False
    #: a folder for caches that outlive the process (embeddings); None: memory only
    cache_dir: Path | None = None

    def make(self, name: str, *, size: float | None = None, reg: float | None = None,
             seed: int | None = None, quiet: bool = False, **params: Any) -> Architecture:
        """An unfitted estimator; ``quiet`` turns progress bars off (for sweeps in workers).

        ``balance`` (or ``class_weight``) in ``params`` overrides the factory's.
        """
        balance = params.pop("balance", self.balance)
        estimator = make_architecture(name, self.dataset, size=size, reg=reg,
                                      seed=self.seed if seed is None else seed,
                                      image_size=self.image_size, balance=balance, **params)
        if quiet and "verbose" in estimator.get_params():
            estimator.set_params(verbose=False)
        if self.cache_dir is not None and "cache_dir" in estimator.get_params():
            estimator.set_params(cache_dir=str(self.cache_dir))
        return estimator

    def like(self, architecture: str, params: dict[str, Any], *, quiet: bool = True
             ) -> Architecture:
        """An unfitted estimator with the settings a stored iteration recorded."""
        estimator = self.make(architecture, quiet=quiet)
        valid = estimator.get_params()
        settings = {k: v for k, v in params.items()
                    if k in valid and k not in _WIRED and not (quiet and k == "verbose")}
        return estimator.set_params(**settings)

    def candidates(self) -> list[str]:
        """The families that can train on this data."""
        return default_candidates(self.dataset)

    def supports(self, name: str) -> bool:
        return unsupported_reason(name, self.dataset) is None
