"""The Diagnosis of one iteration: bias and variance against a baseline.

The standard recipe: compare the baseline error (human-level, a competing
system, or an estimate), the training error J_train and the cross-validated
error J_cv. Avoidable bias = J_train - baseline; variance = J_cv - J_train.
Both come with 95% bands over k folds of train ∪ val (the test part is never
touched), and the learning and validation curves say which remedy the
evidence supports.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from loopml.atomic import write_text_atomic
from loopml.diagnose.curves import ValidationCurve
from loopml.diagnose.evidence import Advice, Verdict, number, optional_number
from loopml.diagnose.learning import LearningCurve
from loopml.exceptions import LoopmlError
from loopml.jsonable import json_ready

DIAGNOSIS_FILE = "diagnosis.json"
VERDICT_TEXT = {
    Verdict.high_bias: "high bias: the model underfits; it does not reach the baseline even "
                       "on its training data",
    Verdict.high_variance: "high variance: the model overfits; it does much better on its "
                           "training data than on new data",
    Verdict.both: "high bias and high variance: it underfits and overfits at once",
    Verdict.at_target: "at target: val error is within reach of the target",
}
_TEXT = ("run_id", "architecture", "metric", "modality", "baseline_source", "baseline_note",
         "data_version", "split_version", "created")
_COUNTS = ("folds", "n_train", "n_fits")
_NUMBERS = ("baseline_error", "j_train", "j_train_band", "j_cv", "j_cv_band", "avoidable_bias",
            "bias_band", "variance", "variance_band", "tolerance", "seconds")


@dataclass
class Diagnosis:
    """Evidence and verdict for one iteration (attributes read like the recipe).

    Left out, ``verdict`` is judged from the numbers (:func:`judge`) when the
    Diagnosis is made; given (as a member or its string), it is kept.
    """

    run_id: str
    architecture: str
    metric: str
    modality: str
    folds: int
    n_train: int
    baseline_error: float
    baseline_source: str
    baseline_estimated: bool
    baseline_note: str
    target_error: float | None
    j_train: float
    j_train_band: float
    j_cv: float
    j_cv_band: float
    avoidable_bias: float
    bias_band: float
    variance: float
    variance_band: float
    tolerance: float
    verdict: Verdict | None = None
    learning_curve: LearningCurve | None = None
    validation_curves: dict[str, ValidationCurve] = field(default_factory=dict)
    advice: list[Advice] = field(default_factory=list)
    data_version: str = ""
    split_version: str = ""
    created: str = ""
    seconds: float = 0.0
    n_fits: int = 0

    def __post_init__(self) -> None:
        self.verdict = judge(self) if self.verdict is None else Verdict(self.verdict)

    @property
    def verdict_text(self) -> str:
        return VERDICT_TEXT[Verdict(self.verdict)]

    @property
    def reach_error(self) -> float:
        return self.target_error if self.target_error is not None else self.baseline_error

    @property
    def gap_to_reach(self) -> float:
        return self.j_cv - self.reach_error

    @property
    def gain_from_doubling(self) -> float:
        """Expected fall in val error from twice this iteration's training data (NaN: unknown)."""
        curve = self.learning_curve
        return float("nan") if curve is None else curve.gain_from_doubling

    @property
    def more_data_helps(self) -> bool:
        gain = self.gain_from_doubling
        if np.isfinite(gain):
            return gain > self.tolerance
        return self.learning_curve is not None and not self.learning_curve.extrapolation.flattened

    @property
    def learning_message(self) -> str:
        if self.learning_curve is None:
            return "not computed"
        message = self.learning_curve.extrapolation.message
        gain = self.gain_from_doubling
        if not np.isfinite(gain):
            return message
        return (f"doubling the training data from {self.n_train} to {2 * self.n_train} "
                f"examples should lower val error by about {gain:.4g}; {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (NaN kept), keyed as ``diagnosis.json`` is, with ``verdict_text``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "verdict":
                out.update(verdict=str(value), verdict_text=self.verdict_text)
            elif f.name == "learning_curve":
                out[f.name] = {} if value is None else value.to_dict()
            elif f.name == "validation_curves":
                out[f.name] = {knob: curve.to_dict() for knob, curve in value.items()}
            elif f.name == "advice":
                out[f.name] = [item.to_dict() for item in value]
            else:
                out[f.name] = value
        return out

    def to_json(self) -> dict[str, Any]:
        """:meth:`to_dict` with NaN and infinity as None, as JSON needs."""
        return json_ready(self.to_dict())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Diagnosis:
        """The typed Diagnosis from :meth:`to_json`'s output (or a file of an older loopml).

        Unknown keys are ignored; a missing key or an unknown verdict, action or
        curve setting raises ``KeyError`` or ``ValueError``. Advice stored by a
        loopml that did not record evidence numbers has none (``Evidence()``):
        :func:`loopml.diagnose.advice.cited` recomputes them from the rules.
        """
        values: dict[str, Any] = {name: str(data[name]) for name in _TEXT}
        values.update({name: int(data[name]) for name in _COUNTS})
        values.update({name: number(data[name]) for name in _NUMBERS})
        lc = data["learning_curve"]
        d = cls(**values, baseline_estimated=bool(data["baseline_estimated"]),
                target_error=optional_number(data["target_error"]),
                verdict=Verdict(data["verdict"]),
                learning_curve=LearningCurve.from_dict(lc) if lc else None,
                validation_curves={str(k): ValidationCurve.from_dict(v)
                                   for k, v in data["validation_curves"].items()})
        d.advice = [Advice.from_dict(item) for item in data["advice"]]
        return d

    def save(self, directory: Path) -> Path:
        return write_text_atomic(directory / DIAGNOSIS_FILE,
                                 json.dumps(self.to_json(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Diagnosis | None:
        """The diagnosis stored in ``directory``, or None when there is none."""
        path = Path(directory) / DIAGNOSIS_FILE
        if not path.exists():
            return None
        hint = "run loopml diagnose on that run again to rewrite it"
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoopmlError(f"{path} is not readable: {exc}", hint=hint) from None
        try:
            return cls.from_json(data)
        except KeyError as exc:
            raise LoopmlError(f"{path} has no {exc.args[0]!r} key", hint=hint) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise LoopmlError(f"{path} does not hold a diagnosis: {exc}", hint=hint) from None


def judge(d: Diagnosis) -> Verdict:
    """The verdict: at target first, then which gap is well above the tolerance."""
    if d.j_cv <= d.reach_error + d.tolerance:
        return Verdict.at_target
    bias = d.avoidable_bias > max(d.tolerance, d.bias_band)
    variance = d.variance > max(d.tolerance, d.variance_band)
    if bias and variance:
        return Verdict.both
    if bias or variance:
        return Verdict.high_bias if bias else Verdict.high_variance
    return Verdict.high_bias if d.avoidable_bias >= d.variance else Verdict.high_variance
