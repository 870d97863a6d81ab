"""Every advice rule agrees with the curve or figure it cites, and the opposite one drops it.

Each test builds a Diagnosis from the numbers a rule reads (a validation
curve's setting, the learning curve, the references), then checks that the
recommendation follows them, and that the curve saying the opposite removes
the rule instead of merely ranking it lower.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from loopml.diagnose import (
    RULES,
    AdviceAction,
    CurvePoint,
    CurveSetting,
    Diagnosis,
    Evidence,
    LearningCurve,
    ValidationCurve,
    Verdict,
    advise,
    extrapolate,
)
from test_diagnosis_evidence import _diagnosis

A = AdviceAction
S = CurveSetting
SIZES = np.array([50, 100, 200, 400, 800], dtype=float)

# high bias: train error 0.10 against a baseline of 0.02; high variance: 0.01 against 0.12
BIAS = dict(j_train=0.1, j_cv=0.11)
VARIANCE = dict(j_train=0.01, j_cv=0.12)


def _curve(knob: str, setting: S, *, current: float, best: float) -> dict[str, ValidationCurve]:
    xs = sorted({current, best, 1.0, 4.0, 16.0})
    points = [CurvePoint(x, 0.05, 0.01, 0.12 if x != best else 0.06, 0.01, 5) for x in xs]
    return {knob: ValidationCurve(knob, points, current, 0.12, best, 0.06, setting)}


def _actions(d: Diagnosis) -> list[AdviceAction]:
    return [a.action for a in advise(d)]


def _item(d: Diagnosis, action: AdviceAction):
    return next(a for a in advise(d) if a.action is action)


def test_every_rule_has_a_test_here() -> None:
    tested = {A.bigger_model, A.smaller_model, A.more_regularization, A.less_regularization,
              A.more_data, A.more_features, A.fewer_features, A.transfer_learning,
              A.error_analysis, A.change_metric, A.balance_classes, A.check_features,
              A.try_reference}
    assert {rule.action for rule in RULES} == tested


# --- size: bigger and smaller model --------------------------------------------------------

def test_bigger_model_follows_a_size_curve_that_says_too_small() -> None:
    d = _diagnosis(**BIAS, validation_curves=_curve("size", S.too_small, current=1, best=16))
    assert d.verdict is Verdict.high_bias
    item = _item(d, A.bigger_model)
    assert item.score == pytest.approx(2.0 * d.avoidable_bias)
    assert item.evidence.setting is S.too_small and item.evidence.best == 16
    assert "best val error is 0.06 at size=16, against 0.12 at 1" in item.why


@pytest.mark.parametrize("setting, best", [(S.too_big, 1), (S.well_set, 4)])
def test_no_bigger_model_when_the_size_curve_says_too_big_or_well_set(setting, best) -> None:
    d = _diagnosis(**BIAS, validation_curves=_curve("size", setting, current=4, best=best))
    assert d.verdict is Verdict.high_bias
    assert A.bigger_model not in _actions(d)
    assert A.more_features in _actions(d)  # the bias remedies that cite no curve remain


def test_bigger_model_without_a_size_curve_keeps_its_plain_weight() -> None:
    d = _diagnosis(**BIAS)
    assert _item(d, A.bigger_model).score == pytest.approx(1.0 * d.avoidable_bias)


def test_smaller_model_follows_a_size_curve_that_says_too_big() -> None:
    d = _diagnosis(**VARIANCE, validation_curves=_curve("size", S.too_big, current=16, best=1))
    assert d.verdict is Verdict.high_variance
    item = _item(d, A.smaller_model)
    assert item.score == pytest.approx(1.0 * d.variance)
    assert (item.evidence.current, item.evidence.best) == (16, 1)


@pytest.mark.parametrize("setting, current, best", [
    (S.too_small, 1, 16),  # best at a larger size than the current one
    (S.well_set, 16, 16),  # best at the current size, the largest on the curve
])
def test_no_smaller_model_when_the_size_curve_is_best_at_a_larger_size(setting, current,
                                                                      best) -> None:
    d = _diagnosis(**VARIANCE, validation_curves=_curve("size", setting, current=current,
                                                        best=best))
    assert d.verdict is Verdict.high_variance
    assert A.smaller_model not in _actions(d)


# --- reg: more and less regularization -----------------------------------------------------

def test_more_regularization_follows_a_reg_curve_that_says_under_regularized() -> None:
    d = _diagnosis(**VARIANCE, validation_curves=_curve("reg", S.under_regularized,
                                                        current=1, best=16))
    item = _item(d, A.more_regularization)
    assert item.score == pytest.approx(2.0 * d.variance)
    assert item.evidence.setting is S.under_regularized


@pytest.mark.parametrize("setting, best", [(S.well_set, 4), (S.over_regularized, 1)])
def test_no_more_regularization_when_reg_is_well_set_or_too_strong(setting, best) -> None:
    d = _diagnosis(**VARIANCE, validation_curves=_curve("reg", setting, current=4, best=best))
    assert d.verdict is Verdict.high_variance
    assert A.more_regularization not in _actions(d)
    assert A.fewer_features in _actions(d)


def test_less_regularization_follows_a_reg_curve_that_says_over_regularized() -> None:
    d = _diagnosis(**BIAS, validation_curves=_curve("reg", S.over_regularized, current=16,
                                                    best=1))
    item = _item(d, A.less_regularization)
    assert item.score == pytest.approx(2.0 * d.avoidable_bias)
    assert advise(d)[0].action is A.less_regularization


@pytest.mark.parametrize("setting, best", [(S.under_regularized, 16), (S.well_set, 4)])
def test_no_less_regularization_when_reg_is_too_weak_or_well_set(setting, best) -> None:
    d = _diagnosis(**BIAS, validation_curves=_curve("reg", setting, current=4, best=best))
    assert d.verdict is Verdict.high_bias
    assert A.less_regularization not in _actions(d)


# --- more data: only while the learning curve still falls ----------------------------------

def _learning(errors: np.ndarray, *, n_train: int = 800, target: float = 0.02,
              tolerance: float = 0.02) -> LearningCurve:
    points = [CurvePoint(int(n), 0.01, 0.005, float(e), 0.01, 5)
              for n, e in zip(SIZES, errors, strict=True)]
    fit = extrapolate(SIZES, errors, target_error=target, tolerance=tolerance)
    gain = float(fit.a * n_train ** -fit.b - fit.a * (2 * n_train) ** -fit.b)
    return LearningCurve(points, fit, int(SIZES[-1]), gain)


def test_more_data_when_the_learning_curve_still_falls() -> None:
    falling = 4.0 * SIZES ** -0.5 + 0.01  # 0.58 to 0.15: doubling still gains 0.04
    d = _diagnosis(**VARIANCE, n_train=800, learning_curve=_learning(falling))
    assert d.more_data_helps and d.gain_from_doubling > d.tolerance
    item = _item(d, A.more_data)
    assert item.score == pytest.approx(2.0 * d.variance)
    assert item.evidence.gain_from_doubling == d.gain_from_doubling
    assert f"{d.gain_from_doubling:.4g}" in item.why


def test_no_more_data_when_the_learning_curve_has_flattened() -> None:
    flat = np.array([0.13, 0.125, 0.122, 0.121, 0.12])
    d = _diagnosis(**VARIANCE, n_train=800, learning_curve=_learning(flat))
    assert d.learning_curve.extrapolation.flattened and not d.more_data_helps
    assert d.verdict is Verdict.high_variance
    assert A.more_data not in _actions(d)
    assert _actions(d)[0] is A.more_regularization  # the plain-weight variance remedy leads


def test_more_data_without_a_learning_curve_keeps_its_plain_weight() -> None:
    d = _diagnosis(**VARIANCE)
    assert _item(d, A.more_data).score == pytest.approx(1.0 * d.variance)


# --- remedies that cite no curve: the verdict alone ----------------------------------------

def test_feature_remedies_follow_the_verdict_and_transfer_needs_images_or_text() -> None:
    bias, variance = _diagnosis(**BIAS), _diagnosis(**VARIANCE)
    assert A.more_features in _actions(bias) and A.more_features not in _actions(variance)
    assert A.fewer_features in _actions(variance) and A.fewer_features not in _actions(bias)
    assert A.transfer_learning not in _actions(bias)  # tabular
    image = _diagnosis(**BIAS, modality="image")
    assert _item(image, A.transfer_learning).score == pytest.approx(0.6 * image.avoidable_bias)


@pytest.mark.parametrize("modality, backbone", [("text", "minilm"),
                                                ("image", "efficientnet-lite0")])
def test_transfer_names_the_backbone_of_the_modality_and_the_command(modality,
                                                                      backbone) -> None:
    bias = _item(_diagnosis(**BIAS, modality=modality), A.transfer_learning)
    assert bias.evidence.backbone == backbone and bias.evidence.avoidable_bias is not None
    assert f"pretrained {modality} encoder ({backbone})" in bias.why
    assert f"try `loopml transfer --backbone {backbone} --mode freeze`" in bias.why
    # little data: high variance and a learning curve that still falls (steep)
    falling = 4.0 * SIZES ** -0.5 + 0.01
    steep = _diagnosis(**VARIANCE, modality=modality, n_train=800,
                       learning_curve=_learning(falling))
    item = _item(steep, A.transfer_learning)
    assert item.score == pytest.approx(0.8 * steep.variance)
    assert item.evidence.backbone == backbone
    assert item.evidence.gain_from_doubling == steep.gain_from_doubling
    assert "the learning curve still falls at 800 training examples" in item.why
    assert f"--backbone {backbone} --mode freeze" in item.why
    assert Evidence.from_dict(item.evidence.to_dict()) == item.evidence
    # a flattened curve (or none measured) is no case for it on high variance
    flat = np.array([0.13, 0.125, 0.122, 0.121, 0.12])
    assert A.transfer_learning not in _actions(_diagnosis(**VARIANCE, modality=modality,
                                                          learning_curve=_learning(flat)))
    assert A.transfer_learning not in _actions(_diagnosis(**VARIANCE, modality=modality))
    assert A.transfer_learning not in _actions(_diagnosis(**VARIANCE, n_train=800,
                                                          learning_curve=_learning(falling)))


# --- at target: no "within reach" below the reference ---------------------------------------

def test_below_the_reference_is_said_so_not_within_reach() -> None:
    d = _diagnosis(j_train=0.005, j_cv=0.012, baseline_error=0.02)
    assert d.verdict is Verdict.at_target and d.j_cv < d.reach_error
    item = advise(d)[0]
    assert item.action is A.error_analysis
    assert "val error 0.012 is already below the baseline 0.02" in item.why
    assert "within reach" not in item.why and "within reach" not in d.verdict_text
    assert d.verdict_text == "at target: val error 0.012 is already below the baseline 0.02"
    above = _diagnosis(j_train=0.02, j_cv=0.03, baseline_error=0.02)  # above, within tolerance
    assert above.verdict is Verdict.at_target
    assert "is within reach of the baseline 0.02" in advise(above)[0].why
    target = _diagnosis(j_train=0.005, j_cv=0.012, target_error=0.05)
    assert "already below the target error 0.05" in advise(target)[0].why


# --- no signal: not beyond the majority reference ------------------------------------------

def test_no_signal_comes_before_at_target_and_says_so_in_words() -> None:
    # a cheap baseline no better than the class balance: J_cv "reaches" it, yet learned nothing
    d = _diagnosis(j_train=0.059, j_cv=0.062, baseline_error=0.061, majority_error=0.060,
                   signal_band=0.003, tolerance=0.009)
    assert d.j_cv <= d.reach_error + d.tolerance  # what used to read "at target"
    assert d.verdict is Verdict.no_signal
    assert "learned nothing beyond the class balance" in d.verdict_text
    assert "at target" not in d.verdict_text
    assert A.error_analysis not in _actions(d)
    assert not {A.more_data, A.bigger_model, A.more_regularization} & set(_actions(d))


def test_a_model_beyond_the_majority_by_more_than_its_band_has_signal() -> None:
    d = _diagnosis(j_train=0.03, j_cv=0.04, baseline_error=0.035, majority_error=0.060,
                   signal_band=0.005, tolerance=0.009)
    assert d.signal == pytest.approx(0.02) and d.verdict is Verdict.at_target
    # the same gap inside a wider band is noise
    noisy = _diagnosis(j_train=0.03, j_cv=0.04, baseline_error=0.035, majority_error=0.060,
                       signal_band=0.025, tolerance=0.009)
    assert noisy.verdict is Verdict.no_signal
    # unknown (a file from before the reference was measured): never judged no signal
    assert _diagnosis(majority_error=float("nan")).verdict is Verdict.high_bias


def test_regression_no_signal_speaks_of_the_mean() -> None:
    d = _diagnosis(metric="rmse", j_train=8.9, j_cv=9.1, baseline_error=3.0, tolerance=1.4,
                   majority_error=9.2, signal_band=0.5)
    assert d.verdict is Verdict.no_signal
    assert "learned nothing beyond the mean" in d.verdict_text
    assert "mean reference" in d.verdict_text
    actions = _actions(d)
    assert actions == [A.check_features]  # no class to balance, no majority-class metric
    assert "beyond the mean" in advise(d)[0].why


def _no_signal(**overrides) -> Diagnosis:
    base = dict(j_train=0.059, j_cv=0.062, baseline_error=0.061, majority_error=0.060,
                signal_band=0.003, tolerance=0.009)
    return _diagnosis(**{**base, **overrides})


def test_change_metric_only_for_a_metric_the_majority_wins() -> None:
    d = _no_signal()
    item = advise(d)[0]
    assert item.action is A.change_metric
    assert item.evidence == Evidence(j_cv=0.062, metric="accuracy", majority_error=0.060,
                                     signal=d.signal)
    assert "majority-class reference alone has val error 0.06" in item.why
    assert "balanced_accuracy" in item.why
    balanced = _no_signal(metric="balanced_accuracy", majority_error=0.5, j_cv=0.5,
                          j_train=0.49, baseline_error=0.5, tolerance=0.075)
    assert balanced.verdict is Verdict.no_signal
    assert A.change_metric not in _actions(balanced)
    assert {A.balance_classes, A.check_features} <= set(_actions(balanced))


def test_balance_and_check_features_cite_the_majority_reference() -> None:
    d = _no_signal()
    for action in (A.balance_classes, A.check_features):
        item = _item(d, action)
        assert item.evidence.majority_error == 0.060 and item.evidence.j_cv == 0.062
        assert "not below the majority-class reference's 0.06" in item.why
    assert A.balance_classes not in _actions(_diagnosis(**BIAS))  # only without signal


def test_try_reference_only_when_the_reference_learns() -> None:
    learns = _no_signal(reference_architecture="gbt", reference_error=0.045,
                        reference_band=0.004)
    assert learns.reference_learns
    item = advise(learns)[0]
    assert item.action is A.try_reference
    assert item.evidence.reference_architecture == "gbt"
    assert item.evidence.reference_error == 0.045
    assert "the gbt reference reaches 0.045" in item.why
    also_nothing = _no_signal(reference_architecture="gbt", reference_error=0.0616,
                              reference_band=0.0027)  # Caravan on accuracy: gbt learns nothing
    assert not also_nothing.reference_learns
    assert A.try_reference not in _actions(also_nothing)


def test_new_evidence_fields_round_trip() -> None:
    item = _item(_no_signal(reference_architecture="gbt", reference_error=0.045), A.try_reference)
    assert Evidence.from_dict(item.evidence.to_dict()) == item.evidence


# --- extrapolations that are no estimate ----------------------------------------------------

def test_an_unbounded_interval_is_no_reliable_estimate() -> None:
    rng = np.random.default_rng(3)
    errors = 0.3 * SIZES ** -0.3 + 0.05 + 0.004 * rng.standard_normal(len(SIZES))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing from numpy or scipy may leak
        fit = extrapolate(SIZES, errors, target_error=0.09, tolerance=0.005)
    # a point estimate of about a thousand examples, but the interval has no upper end
    assert 800 < fit.examples_needed < 2000 and fit.interval[1] == np.inf
    assert not fit.reliable
    assert fit.message.startswith("no reliable estimate of the examples that would reach "
                                  "the target error 0.09 (the 80% interval of the examples "
                                  "needed is unbounded)")
    assert not re.search(r"\d{1,3}(,\d{3})+|to unbounded|nan", fit.message)
    assert extrapolate(SIZES, errors, target_error=0.09, tolerance=0.005).to_dict()[
        "reliable"] is False


def test_a_need_far_beyond_the_data_is_no_reliable_estimate() -> None:
    errors = 2.0 * SIZES ** -0.5 + 0.05  # exact: a narrow interval, but 400x the data
    fit = extrapolate(SIZES, errors, target_error=0.0505, tolerance=0.001)
    assert fit.examples_needed > 100 * SIZES[-1] and fit.interval[1] < np.inf
    assert not fit.reliable
    assert "over 100 times today's 800 examples" in fit.message
    reachable = extrapolate(SIZES, errors, target_error=0.08, tolerance=0.001)
    assert reachable.reliable and "about 4,44" in reachable.message


def test_more_data_advice_cites_no_count_from_an_unreliable_extrapolation() -> None:
    errors = 2.0 * SIZES ** -0.5 + 0.05
    curve = _learning(errors, n_train=400, target=0.0505, tolerance=0.001)
    d = _diagnosis(j_train=0.01, j_cv=0.12, n_train=400, tolerance=0.02, baseline_error=0.0505,
                   learning_curve=curve)
    item = _item(d, A.more_data)
    assert item.evidence.examples_needed is None
    assert "no reliable estimate" in item.why
    assert not re.search(r"about [\d,]+ training examples", item.why)


def test_slow_draws_overflow_silently() -> None:
    # a slowly falling, noisy curve: some draws need more examples than a float holds,
    # which numpy used to report as "overflow encountered in scalar power"
    rng = np.random.default_rng(7)
    errors = 0.3 * SIZES ** -0.1 + 0.01 * rng.standard_normal(len(SIZES))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = extrapolate(SIZES, errors, target_error=0.05, tolerance=0.005)
    assert fit.fitted and "nan" not in fit.message
    assert not fit.reliable and fit.message.startswith("no reliable estimate")
