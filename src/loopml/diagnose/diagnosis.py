"""The Diagnosis of one iteration: bias and variance against a baseline.

The standard recipe: compare the baseline error (human-level, a competing
system, or an estimate), the training error J_train and the cross-validated
error J_cv. Avoidable bias = J_train - baseline; variance = J_cv - J_train.
Both come with 95% bands over k folds of train ∪ val (the test part is never
touched), and the learning and validation curves say which remedy the
evidence supports.

Two references frame every verdict: the majority-class (or mean) reference,
what a model that learned only the class balance scores on the same folds,
and a strong reference from another family (the estimated baseline when
loopml.yaml gives none). A model not beyond the first learned nothing from
its inputs (:attr:`Verdict.no_signal`), whatever its gaps say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from loopml.atomic import write_text_atomic
from loopml.diagnose.budget import Planning
from loopml.diagnose.curves import ValidationCurve
from loopml.diagnose.evidence import Advice, Verdict, number, optional_number
from loopml.diagnose.learning import LearningCurve
from loopml.exceptions import LoopmlError
from loopml.jsonable import json_ready
from loopml.metrics import METRICS

DIAGNOSIS_FILE = "diagnosis.json"
VERDICT_TEXT = {
    Verdict.high_bias: "high bias: the model underfits; it does not reach the baseline even "
                       "on its training data",
    Verdict.high_variance: "high variance: the model overfits; it does much better on its "
                           "training data than on new data",
    Verdict.both: "high bias and high variance: it underfits and overfits at once",
    Verdict.at_target: "at target: val error is within reach of the target",
    Verdict.no_signal: "no signal: the model learned nothing beyond the class balance",
}
#: a model must remove at least this share of the majority reference's error (and more
#: than the band of the per-fold gap) to count as having learned something
NO_SIGNAL_SHARE = 0.05
_TEXT = ("run_id", "architecture", "metric", "modality", "baseline_source", "baseline_note",
         "data_version", "split_version", "created")
_COUNTS = ("folds", "n_train", "n_fits")
_NUMBERS = ("baseline_error", "j_train", "j_train_band", "j_cv", "j_cv_band", "avoidable_bias",
            "bias_band", "variance", "variance_band", "tolerance", "seconds")
#: added after the first files were written: absent from an older file, they read as unknown
_REFERENCE_NUMBERS = ("majority_error", "signal_band", "reference_error", "reference_band")


@dataclass
class Diagnosis:
    """Evidence and verdict for one iteration (attributes read like the recipe).

    Left out, ``verdict`` is judged from the numbers (:func:`judge`) when the
    Diagnosis is made; given (as a member or its string), it is kept.

    ``majority_error`` is the cross-validated error of the majority-class (or
    mean) reference on the same folds; ``signal_band`` the 95% band of the
    per-fold gap between it and the model's val error. ``reference_error``
    (band ``reference_band``) is the val error of ``reference_architecture`` at
    its defaults, a family other than the diagnosed one; it is NaN and ""
    when loopml.yaml gives the baseline. All are NaN in files from before they
    were measured.
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
    majority_error: float = float("nan")
    signal_band: float = float("nan")
    reference_architecture: str = ""
    reference_error: float = float("nan")
    reference_band: float = float("nan")
    planning: Planning | None = None  # how the sweep was planned (None: an older file)

    def __post_init__(self) -> None:
        self.verdict = judge(self) if self.verdict is None else Verdict(self.verdict)

    @property
    def verdict_text(self) -> str:
        verdict = Verdict(self.verdict)
        if verdict is Verdict.no_signal:
            return (f"no signal: the model learned nothing beyond {self.majority_name}: val "
                    f"error {self.j_cv:.4g} is not below the {self.majority_label} reference's "
                    f"{self.majority_error:.4g}")
        if verdict is Verdict.at_target and self.j_cv < self.reach_error:
            return (f"at target: val error {self.j_cv:.4g} is already below the "
                    f"{self.reach_name} {self.reach_error:.4g}")
        return VERDICT_TEXT[verdict]

    @property
    def is_regression(self) -> bool:
        metric = METRICS.get(self.metric)
        return metric is not None and metric.task == "regression"

    @property
    def majority_name(self) -> str:
        """What the majority reference learned: the class balance, or the mean."""
        return "the mean" if self.is_regression else "the class balance"

    @property
    def majority_label(self) -> str:
        return "mean" if self.is_regression else "majority-class"

    @property
    def signal(self) -> float:
        """How far val error is below the majority reference (NaN: not measured)."""
        return self.majority_error - self.j_cv

    @property
    def learned_nothing(self) -> bool:
        """Val error is not beyond the majority reference by more than noise and a margin."""
        if not (np.isfinite(self.majority_error) and np.isfinite(self.j_cv)):
            return False
        band = self.signal_band if np.isfinite(self.signal_band) else 0.0
        return bool(self.signal <= max(band, NO_SIGNAL_SHARE * abs(self.majority_error)))

    @property
    def reference_learns(self) -> bool:
        """The strong reference is beyond the majority reference by more than noise."""
        if not (np.isfinite(self.reference_error) and np.isfinite(self.majority_error)):
            return False
        band = self.reference_band if np.isfinite(self.reference_band) else 0.0
        margin = max(band, NO_SIGNAL_SHARE * abs(self.majority_error))
        return bool(self.majority_error - self.reference_error > margin)

    @property
    def reach_name(self) -> str:
        """What ``reach_error`` is, in words: the scope's target, or which baseline."""
        if self.target_error is not None:
            return "target error"
        if self.reference_architecture and self.baseline_estimated:
            return f"{self.reference_architecture} reference"
        return "estimated baseline" if self.baseline_estimated else "baseline"

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
            elif f.name == "planning":
                out[f.name] = {} if value is None else value.to_dict()
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
        values.update({name: number(data.get(name)) for name in _REFERENCE_NUMBERS})
        lc = data["learning_curve"]
        d = cls(**values, baseline_estimated=bool(data["baseline_estimated"]),
                reference_architecture=str(data.get("reference_architecture") or ""),
                target_error=optional_number(data["target_error"]),
                verdict=Verdict(data["verdict"]),
                learning_curve=LearningCurve.from_dict(lc) if lc else None,
                validation_curves={str(k): ValidationCurve.from_dict(v)
                                   for k, v in data["validation_curves"].items()})
        d.advice = [Advice.from_dict(item) for item in data["advice"]]
        d.planning = Planning.from_dict(data["planning"]) if data.get("planning") else None
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
    """The verdict: no signal first, then at target, then which gap is well above.

    No signal comes before at target: when the baseline itself is no better
    than the class balance (a cheap model on a table with 5% positives,
    scored by accuracy), reaching it means nothing.
    """
    if d.learned_nothing:
        return Verdict.no_signal
    if d.j_cv <= d.reach_error + d.tolerance:
        return Verdict.at_target
    bias = d.avoidable_bias > max(d.tolerance, d.bias_band)
    variance = d.variance > max(d.tolerance, d.variance_band)
    if bias and variance:
        return Verdict.both
    if bias or variance:
        return Verdict.high_bias if bias else Verdict.high_variance
    return Verdict.high_bias if d.avoidable_bias >= d.variance else Verdict.high_variance
