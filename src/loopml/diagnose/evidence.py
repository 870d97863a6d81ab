"""The typed vocabulary of a diagnosis, and the two rules of its JSON edge.

Code that acts on a diagnosis (the autopilot, a report, a test) reads these
types, never strings inside dicts: a renamed verdict or a missing number
fails where it is read, instead of printing "none". JSON has no NaN or
infinity, so the edge writes them as null (:func:`finite`) and reads null
back as NaN (:func:`number`); a reader that knows a null stood for infinity
(examples a curve will never reach) says so itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    """What the gaps between baseline, J_train and J_cv say.

    ``no_signal`` comes first: a model whose val error is not beyond the
    majority-class (or mean) reference learned nothing from its inputs, and no
    gap to a baseline says anything useful about it.
    """

    high_bias = "high_bias"
    high_variance = "high_variance"
    both = "both"
    at_target = "at_target"
    no_signal = "no_signal"


class CurveSetting(StrEnum):
    """Where a knob sits on its validation curve, compared with the curve's best value."""

    well_set = "well set"
    under_regularized = "under-regularized"
    over_regularized = "over-regularized"
    too_small = "too small"
    too_big = "too big"


def number(value: Any) -> float:
    """A stored number as a float; null (written for NaN or infinity) reads as NaN."""
    return float("nan") if value is None else float(value)


def optional_number(value: Any) -> float | None:
    """A stored number that may be absent: null stays None."""
    return None if value is None else float(value)


@dataclass(frozen=True)
class Evidence:
    """The numbers an advice item's sentence cites; None where it cites nothing.

    Field names are the :class:`~loopml.diagnose.Diagnosis` attributes they copy,
    so ``advice.evidence.gain_from_doubling == diagnosis.gain_from_doubling``.
    ``knob``, ``setting``, ``current``, ``current_error``, ``best`` and
    ``best_error`` come from the validation curve the item relies on;
    ``examples_needed`` is infinite where more data will not reach the target,
    and None where the learning curve gives no reliable estimate.
    ``majority_error`` is the majority-class (or mean) reference's val error,
    ``signal`` how far J_cv is below it; ``reference_error`` the val error of
    ``reference_architecture``, the strong reference from another family;
    ``backbone`` the pretrained backbone a transfer-learning item names.
    """

    j_train: float | None = None
    j_cv: float | None = None
    baseline_error: float | None = None
    reach_error: float | None = None
    avoidable_bias: float | None = None
    variance: float | None = None
    n_train: int | None = None
    gain_from_doubling: float | None = None
    examples_needed: float | None = None
    knob: str | None = None
    setting: CurveSetting | None = None
    current: float | None = None
    current_error: float | None = None
    best: float | None = None
    best_error: float | None = None
    metric: str | None = None
    majority_error: float | None = None
    signal: float | None = None
    reference_architecture: str | None = None
    reference_error: float | None = None
    backbone: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The cited numbers only (NaN kept; ``json_ready`` writes it as null)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = str(value) if isinstance(value, StrEnum) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Read :meth:`to_dict`'s output; a cited number stored as null reads as NaN."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            if f.name in ("knob", "metric", "reference_architecture", "backbone"):
                values[f.name] = str(value)
            elif f.name == "setting":
                values[f.name] = None if value is None else CurveSetting(value)
            elif f.name == "n_train":
                values[f.name] = int(value)
            elif f.name == "examples_needed":  # only infinity is stored as null here
                values[f.name] = float("inf") if value is None else float(value)
            else:
                values[f.name] = number(value)
        return cls(**values)


class AdviceAction(StrEnum):
    """Every action the rules can recommend (the autopilot's vocabulary)."""

    bigger_model = "bigger_model"
    less_regularization = "less_regularization"
    more_features = "more_features"
    transfer_learning = "transfer_learning"
    more_data = "more_data"
    more_regularization = "more_regularization"
    smaller_model = "smaller_model"
    fewer_features = "fewer_features"
    error_analysis = "error_analysis"
    change_metric = "change_metric"
    try_reference = "try_reference"
    balance_classes = "balance_classes"
    check_features = "check_features"


@dataclass
class Advice:
    """One recommendation: what to do, how strongly, why, and the numbers behind it."""

    action: AdviceAction
    title: str
    score: float
    why: str
    evidence: Evidence = field(default_factory=Evidence)

    def to_dict(self) -> dict[str, Any]:
        return {"action": str(self.action), "title": self.title, "score": self.score,
                "why": self.why, "evidence": self.evidence.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Advice:
        """Read :meth:`to_dict`'s JSON; a file from before evidence was stored has none."""
        return cls(AdviceAction(data["action"]), str(data["title"]), number(data["score"]),
                   str(data["why"]), Evidence.from_dict(data.get("evidence") or {}))
