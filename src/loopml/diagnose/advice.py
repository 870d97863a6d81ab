"""Advice: what to try next, ranked, from one table of rules.

Each rule is a row: the action, when it applies (a score from the evidence,
or None), and why (a sentence with the numbers). The ranking is the scores'
order, so a reader can check every recommendation against this table, and a
new rule is one new row, not an ``if`` hidden somewhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopml.diagnose.diagnosis import Diagnosis

BIAS = ("high_bias", "both")
VARIANCE = ("high_variance", "both")


@dataclass(frozen=True)
class Rule:
    action: str
    title: str
    score: Callable[[Diagnosis], float | None]
    why: Callable[[Diagnosis], str]


@dataclass
class Advice:
    action: str
    title: str
    score: float
    why: str

    def to_dict(self) -> dict:
        return {"action": self.action, "title": self.title, "score": self.score,
                "why": self.why}


def _bias(d: Diagnosis, weight: float) -> float | None:
    return d.avoidable_bias * weight if d.verdict in BIAS else None


def _variance(d: Diagnosis, weight: float) -> float | None:
    return d.variance * weight if d.verdict in VARIANCE else None


def _fits_worse(d: Diagnosis) -> str:
    return (f"train error {d.j_train:.4g} is {d.avoidable_bias:.4g} above the baseline "
            f"{d.baseline_error:.4g}: the model does not fit even the training data")


def _generalizes_worse(d: Diagnosis) -> str:
    return (f"val error {d.j_cv:.4g} is {d.variance:.4g} above train error {d.j_train:.4g}: "
            "the model fits its training examples much better than new ones")


def _curve_note(d: Diagnosis, knob: str) -> str:
    curve = d.validation_curves.get(knob)
    if not curve or curve.get("best") is None:
        return ""
    return (f"; the {knob} curve's best val error is {curve['best_error']:.4g} at {knob}="
            f"{curve['best']:.4g}, against {curve['current_error']:.4g} at {curve['current']:.4g}")


def _setting(d: Diagnosis, knob: str) -> str | None:
    curve = d.validation_curves.get(knob)
    return curve.get("setting") if curve else None


RULES: list[Rule] = [
    Rule("bigger_model", "Use a bigger model (raise size)",
         lambda d: _bias(d, 2.0 if _setting(d, "size") == "too small" else 1.0),
         lambda d: _fits_worse(d) + _curve_note(d, "size")),
    Rule("less_regularization", "Regularize less (lower reg)",
         lambda d: _bias(d, 2.0 if _setting(d, "reg") == "over-regularized" else 0.8),
         lambda d: _fits_worse(d) + _curve_note(d, "reg")),
    Rule("more_features", "Add features (or richer ones)",
         lambda d: _bias(d, 0.7),
         lambda d: _fits_worse(d) + "; more informative inputs give it more to fit"),
    Rule("transfer_learning", "Start from a pretrained backbone",
         lambda d: _bias(d, 0.6) if d.modality in ("image", "text") else None,
         lambda d: _fits_worse(d) + "; a pretrained encoder brings features learned on far "
                                    "more data"),
    Rule("more_data", "Collect more data of the same kind",
         lambda d: _variance(d, 2.0 if d.more_data_helps else 0.3),
         lambda d: _generalizes_worse(d) + "; learning curve: " + d.learning_message),
    Rule("more_regularization", "Regularize more (raise reg)",
         lambda d: _variance(d, 2.0 if _setting(d, "reg") == "under-regularized" else 1.0),
         lambda d: _generalizes_worse(d) + _curve_note(d, "reg")),
    Rule("smaller_model", "Use a smaller model (lower size)",
         lambda d: _variance(d, 1.0 if _setting(d, "size") == "too big" else 0.5),
         lambda d: _generalizes_worse(d) + _curve_note(d, "size")),
    Rule("fewer_features", "Use fewer features",
         lambda d: _variance(d, 0.4),
         lambda d: _generalizes_worse(d) + "; fewer inputs leave less to overfit"),
    Rule("error_analysis", "Look at the errors first",
         lambda d: 1.0 if d.verdict == "at_target" else 0.2 * max(d.gap_to_reach, 0.0),
         lambda d: (f"val error {d.j_cv:.4g} is within reach of {d.reach_error:.4g}; what is "
                    "left is in specific examples" if d.verdict == "at_target" else
                    "the groups of examples the model gets wrong show where the next point "
                    "of error is")),
]


def advise(diagnosis: Diagnosis) -> list[Advice]:
    """Every rule that applies, best first."""
    out = []
    for rule in RULES:
        score = rule.score(diagnosis)
        if score is not None:
            out.append(Advice(rule.action, rule.title, float(score), rule.why(diagnosis)))
    return sorted(out, key=lambda a: -a.score)
