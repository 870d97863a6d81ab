"""Advice: what to try next, ranked, from one table of rules.

Each rule is a row: the action, when it applies (a score from the evidence,
or None), and why (a sentence with the numbers). The ranking is the scores'
order, so a reader can check every recommendation against this table, and a
new rule is one new row, not an ``if`` hidden somewhere else.

A rule never contradicts the evidence it cites: a remedy that turns a knob
applies only where that knob's validation curve points its way (or was not
measured), "more data" only where the learning curve still falls (or was not
measured). A curve that says otherwise drops the rule, it does not just
lower its score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from loopml.diagnose.evidence import Advice, AdviceAction, CurveSetting, Evidence, Verdict
from loopml.metrics import MAJORITY_FRIENDLY, METRICS

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


def _bias(d: Diagnosis, weight: float | None) -> float | None:
    return None if weight is None or d.verdict not in BIAS else d.avoidable_bias * weight


def _variance(d: Diagnosis, weight: float | None) -> float | None:
    return None if weight is None or d.verdict not in VARIANCE else d.variance * weight


def _knob(d: Diagnosis, knob: str, wanted: CurveSetting, *, agrees: float,
          unmeasured: float) -> float | None:
    """A knob remedy's weight: ``agrees`` where the curve points its way, ``unmeasured``
    where there is no judged curve, None (dropped) where the curve says otherwise."""
    setting = _setting(d, knob)
    if setting is None:
        return unmeasured
    return agrees if setting is wanted else None


def _data_weight(d: Diagnosis) -> float | None:
    """More data: 2 where the learning curve still falls, 1 unmeasured, else dropped."""
    if d.learning_curve is None:
        return 1.0
    return 2.0 if d.more_data_helps else None


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
    """The gap, and what the learning curve says about twice (or enough) data.

    An extrapolation that is not reliable cites no count of examples needed.
    """
    curve = d.learning_curve
    fit = None if curve is None else curve.extrapolation
    needed = None if fit is None or not fit.reliable else fit.examples_needed
    return replace(_variance_numbers(d), n_train=d.n_train,
                   gain_from_doubling=d.gain_from_doubling, examples_needed=needed)


def _reach_numbers(d: Diagnosis) -> Evidence:
    return Evidence(j_cv=d.j_cv, reach_error=d.reach_error)


def _look_at_errors(d: Diagnosis) -> str:
    if d.verdict != Verdict.at_target:
        return ("the groups of examples the model gets wrong show where the next point of "
                "error is")
    where = ("is already below" if d.j_cv < d.reach_error else "is within reach of")
    return (f"val error {d.j_cv:.4g} {where} the {d.reach_name} {d.reach_error:.4g}; what "
            "is left is in specific examples")


# --- transfer learning: a pretrained backbone for images and text -------------------------

#: the backbone loopml ships (offline) for each modality it can transfer from
BACKBONES = {"text": "minilm", "image": "efficientnet-lite0"}


def _transfer_score(d: Diagnosis) -> float | None:
    """High bias (the inputs' raw form is hard to fit), or high variance while the
    learning curve still falls (too little data): a pretrained backbone's features
    help both. Only where loopml ships a backbone for the modality."""
    if d.modality not in BACKBONES:
        return None
    if d.verdict in BIAS:
        return _bias(d, 0.6)
    steep = d.learning_curve is not None and d.more_data_helps
    return _variance(d, 0.8) if steep else None


def _transfer_why(d: Diagnosis) -> str:
    backbone = BACKBONES[d.modality]
    command = f"loopml transfer --backbone {backbone} --mode freeze"
    if d.verdict in BIAS:
        return (_fits_worse(d) + f"; a pretrained {d.modality} encoder ({backbone}) brings "
                f"features learned on far more data: try `{command}`")
    return (_generalizes_worse(d) + f", and the learning curve still falls at {d.n_train} "
            f"training examples ({d.learning_message}); a pretrained {d.modality} encoder "
            f"({backbone}) needs far fewer: try `{command}`")


def _transfer_numbers(d: Diagnosis) -> Evidence:
    numbers = _bias_numbers(d) if d.verdict in BIAS else _data_numbers(d)
    return replace(numbers, backbone=BACKBONES[d.modality])


# --- no signal: the model learned nothing beyond the class balance (or the mean) ---------

def _no_signal(d: Diagnosis, score: float, *, classification: bool = False) -> float | None:
    if d.verdict != Verdict.no_signal or (classification and d.is_regression):
        return None
    return score


def _majority_numbers(d: Diagnosis) -> Evidence:
    return Evidence(j_cv=d.j_cv, metric=d.metric, majority_error=d.majority_error,
                    signal=d.signal)


def _not_beyond(d: Diagnosis) -> str:
    return (f"val error {d.j_cv:.4g} is not below the {d.majority_label} reference's "
            f"{d.majority_error:.4g} ({d.metric}, same folds)")


def _fair_metrics(d: Diagnosis) -> str:
    names = [m.name for m in METRICS.values()
             if m.task == "classification" and m.name not in MAJORITY_FRIENDLY]
    return ", ".join(names)


RULES: list[Rule] = [
    Rule(AdviceAction.try_reference, "Try the reference architecture",
         lambda d: _no_signal(d, 1.2) if d.reference_learns else None,
         lambda d: (_not_beyond(d) + f", but the {d.reference_architecture} reference "
                    f"reaches {d.reference_error:.4g}: the inputs do carry signal that "
                    f"{d.reference_architecture} finds"),
         lambda d: replace(_majority_numbers(d), reference_architecture=d.reference_architecture,
                           reference_error=d.reference_error)),
    Rule(AdviceAction.change_metric, "Use a metric the majority class cannot win",
         lambda d: _no_signal(d, 1.0, classification=True) if d.metric in MAJORITY_FRIENDLY
         else None,
         lambda d: (f"{d.metric} rewards predicting the majority class: the majority-class "
                    f"reference alone has val error {d.majority_error:.4g}, this model "
                    f"{d.j_cv:.4g}; {_fair_metrics(d)} show whether a model separates the "
                    "classes"),
         _majority_numbers),
    Rule(AdviceAction.balance_classes, "Weight the rare classes (class weights)",
         lambda d: _no_signal(d, 0.7, classification=True),
         lambda d: (_not_beyond(d) + ": it predicts what the class balance predicts; class "
                    "weights make a mistake on a rare class cost as much as the common ones "
                    "together"),
         _majority_numbers),
    Rule(AdviceAction.check_features, "Check the features",
         lambda d: _no_signal(d, 0.5),
         lambda d: (_not_beyond(d) + f": it learned nothing beyond {d.majority_name}; check "
                    "that the inputs are the intended columns, joined on the right keys, "
                    "and related to the target at all"),
         _majority_numbers),
    # --- high bias -------------------------------------------------------------------------
    Rule(AdviceAction.bigger_model, "Use a bigger model (raise size)",
         lambda d: _bias(d, _knob(d, "size", CurveSetting.too_small, agrees=2.0,
                                  unmeasured=1.0)),
         lambda d: _fits_worse(d) + _curve_note(d, "size"),
         lambda d: _bias_numbers(d, "size")),
    Rule(AdviceAction.less_regularization, "Regularize less (lower reg)",
         lambda d: _bias(d, _knob(d, "reg", CurveSetting.over_regularized, agrees=2.0,
                                  unmeasured=0.8)),
         lambda d: _fits_worse(d) + _curve_note(d, "reg"),
         lambda d: _bias_numbers(d, "reg")),
    Rule(AdviceAction.more_features, "Add features (or richer ones)",
         lambda d: _bias(d, 0.7),
         lambda d: _fits_worse(d) + "; more informative inputs give it more to fit",
         _bias_numbers),
    Rule(AdviceAction.transfer_learning, "Start from a pretrained backbone",
         _transfer_score, _transfer_why, _transfer_numbers),
    # --- high variance ---------------------------------------------------------------------
    Rule(AdviceAction.more_data, "Collect more data of the same kind",
         lambda d: _variance(d, _data_weight(d)),
         lambda d: _generalizes_worse(d) + "; learning curve: " + d.learning_message,
         _data_numbers),
    Rule(AdviceAction.more_regularization, "Regularize more (raise reg)",
         lambda d: _variance(d, _knob(d, "reg", CurveSetting.under_regularized, agrees=2.0,
                                      unmeasured=1.0)),
         lambda d: _generalizes_worse(d) + _curve_note(d, "reg"),
         lambda d: _variance_numbers(d, "reg")),
    Rule(AdviceAction.smaller_model, "Use a smaller model (lower size)",
         lambda d: _variance(d, _knob(d, "size", CurveSetting.too_big, agrees=1.0,
                                      unmeasured=0.5)),
         lambda d: _generalizes_worse(d) + _curve_note(d, "size"),
         lambda d: _variance_numbers(d, "size")),
    Rule(AdviceAction.fewer_features, "Use fewer features",
         lambda d: _variance(d, 0.4),
         lambda d: _generalizes_worse(d) + "; fewer inputs leave less to overfit",
         _variance_numbers),
    # --- any verdict with signal -----------------------------------------------------------
    Rule(AdviceAction.error_analysis, "Look at the errors first",
         lambda d: (None if d.verdict == Verdict.no_signal else 1.0
                    if d.verdict == Verdict.at_target else 0.2 * max(d.gap_to_reach, 0.0)),
         _look_at_errors,
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
