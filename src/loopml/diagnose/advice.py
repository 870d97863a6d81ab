"""Advice: what to try next, ranked, from one table of rules.

Each rule is a row: the action, when it applies (a score from the evidence,
or None), and why (a sentence with the numbers). The ranking is the scores'
order, so a reader can check every recommendation against this table, and a
new rule is one new row, not an ``if`` hidden somewhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from loopml.diagnose.evidence import Advice, AdviceAction, CurveSetting, Evidence, Verdict

if TYPE_CHECKING:
    from loopml.diagnose.diagnosis import Diagnosis

BIAS = (Verdict.high_bias, Verdict.both)
VARIANCE = (Verdict.high_variance, Verdict.both)


@dataclass(frozen=True)
class Rule:
    action: AdviceAction
    title: str
    score: Callable[[Diagnosis], float | None]
    why: Callable[[Diagnosis], str]
    evidence: Callable[[Diagnosis], Evidence]


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
    if curve is None or curve.best is None or curve.best_error is None:
        return ""
    return (f"; the {knob} curve's best val error is {curve.best_error:.4g} at {knob}="
            f"{curve.best:.4g}, against {curve.current_error:.4g} at {curve.current:.4g}")


def _setting(d: Diagnosis, knob: str) -> CurveSetting | None:
    curve = d.validation_curves.get(knob)
    return None if curve is None else curve.setting


def _bias_numbers(d: Diagnosis, knob: str | None = None) -> Evidence:
    """What ``_fits_worse`` (and the knob's curve note) cite."""
    numbers = Evidence(j_train=d.j_train, baseline_error=d.baseline_error,
                       avoidable_bias=d.avoidable_bias)
    return _with_curve(numbers, d, knob)


def _variance_numbers(d: Diagnosis, knob: str | None = None) -> Evidence:
    """What ``_generalizes_worse`` (and the knob's curve note) cite."""
    numbers = Evidence(j_train=d.j_train, j_cv=d.j_cv, variance=d.variance)
    return _with_curve(numbers, d, knob)


def _with_curve(numbers: Evidence, d: Diagnosis, knob: str | None) -> Evidence:
    curve = d.validation_curves.get(knob) if knob else None
    if curve is None:
        return numbers
    return replace(numbers, knob=knob, setting=curve.setting, current=curve.current,
                   current_error=curve.current_error, best=curve.best,
                   best_error=curve.best_error)


def _data_numbers(d: Diagnosis) -> Evidence:
    """The gap, and what the learning curve says about twice (or enough) data."""
    curve = d.learning_curve
    needed = None if curve is None else curve.extrapolation.examples_needed
    return replace(_variance_numbers(d), n_train=d.n_train,
                   gain_from_doubling=d.gain_from_doubling, examples_needed=needed)


def _reach_numbers(d: Diagnosis) -> Evidence:
    return Evidence(j_cv=d.j_cv, reach_error=d.reach_error)


RULES: list[Rule] = [
    Rule(AdviceAction.bigger_model, "Use a bigger model (raise size)",
         lambda d: _bias(d, 2.0 if _setting(d, "size") == CurveSetting.too_small else 1.0),
         lambda d: _fits_worse(d) + _curve_note(d, "size"),
         lambda d: _bias_numbers(d, "size")),
    Rule(AdviceAction.less_regularization, "Regularize less (lower reg)",
         lambda d: _bias(d, 2.0 if _setting(d, "reg") == CurveSetting.over_regularized
                         else 0.8),
         lambda d: _fits_worse(d) + _curve_note(d, "reg"),
         lambda d: _bias_numbers(d, "reg")),
    Rule(AdviceAction.more_features, "Add features (or richer ones)",
         lambda d: _bias(d, 0.7),
         lambda d: _fits_worse(d) + "; more informative inputs give it more to fit",
         _bias_numbers),
    Rule(AdviceAction.transfer_learning, "Start from a pretrained backbone",
         lambda d: _bias(d, 0.6) if d.modality in ("image", "text") else None,
         lambda d: _fits_worse(d) + "; a pretrained encoder brings features learned on far "
                                    "more data",
         _bias_numbers),
    Rule(AdviceAction.more_data, "Collect more data of the same kind",
         lambda d: _variance(d, 2.0 if d.more_data_helps else 0.3),
         lambda d: _generalizes_worse(d) + "; learning curve: " + d.learning_message,
         _data_numbers),
    Rule(AdviceAction.more_regularization, "Regularize more (raise reg)",
         lambda d: _variance(d, 2.0 if _setting(d, "reg") == CurveSetting.under_regularized
                             else 1.0),
         lambda d: _generalizes_worse(d) + _curve_note(d, "reg"),
         lambda d: _variance_numbers(d, "reg")),
    Rule(AdviceAction.smaller_model, "Use a smaller model (lower size)",
         lambda d: _variance(d, 1.0 if _setting(d, "size") == CurveSetting.too_big else 0.5),
         lambda d: _generalizes_worse(d) + _curve_note(d, "size"),
         lambda d: _variance_numbers(d, "size")),
    Rule(AdviceAction.fewer_features, "Use fewer features",
         lambda d: _variance(d, 0.4),
         lambda d: _generalizes_worse(d) + "; fewer inputs leave less to overfit",
         _variance_numbers),
    Rule(AdviceAction.error_analysis, "Look at the errors first",
         lambda d: 1.0 if d.verdict == Verdict.at_target else 0.2 * max(d.gap_to_reach, 0.0),
         lambda d: (f"val error {d.j_cv:.4g} is within reach of {d.reach_error:.4g}; what is "
                    "left is in specific examples" if d.verdict == Verdict.at_target else
                    "the groups of examples the model gets wrong show where the next point "
                    "of error is"),
         _reach_numbers),
]


def advise(diagnosis: Diagnosis) -> list[Advice]:
    """Every rule that applies, best first, each with the numbers it cites."""
    out = []
    for rule in RULES:
        score = rule.score(diagnosis)
        if score is not None:
            out.append(Advice(rule.action, rule.title, float(score), rule.why(diagnosis),
                              rule.evidence(diagnosis)))
    return sorted(out, key=lambda a: -a.score)


def cited(action: AdviceAction, diagnosis: Diagnosis) -> Evidence:
    """The numbers ``action``'s rule cites for ``diagnosis`` (for files stored without them)."""
    return next(rule.evidence(diagnosis) for rule in RULES if rule.action == action)
