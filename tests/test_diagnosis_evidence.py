"""Typed diagnosis evidence: the verdict rule, the power-law reading, advice numbers, JSON edge."""

from __future__ import annotations

import json
import math
import shutil
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from loopml import LoopmlError, Project
from loopml.diagnose import (
    AdviceAction,
    CurvePoint,
    CurveSetting,
    Diagnosis,
    Evidence,
    LearningCurve,
    Reference,
    ValidationCurve,
    Verdict,
    advise,
    diagnose,
    extrapolate,
    judge,
)
from loopml.diagnose.advice import cited
from loopml.diagnose.view import show_diagnosis
from loopml.report import Report
from loopml.report.diagnosis import add_diagnosis_section

OLD_FILE = Path(__file__).parent / "data" / "diagnosis_old.json"  # written by loopml 0.x
SIZES = np.array([50, 100, 200, 400, 800], dtype=float)
A, B, C = 2.0, 0.5, 0.05  # e(n) = 2 n^-0.5 + 0.05


def _diagnosis(**overrides) -> Diagnosis:
    """A diagnosis from its numbers; the gaps follow from J_train, J_cv and the baseline."""
    base = dict(run_id="r", architecture="linear", metric="accuracy", modality="tabular",
                folds=5, n_train=400, baseline_error=0.02, baseline_source="human-level",
                baseline_estimated=False, baseline_note="", target_error=None, j_train=0.1,
                j_train_band=0.01, j_cv=0.11, j_cv_band=0.01, bias_band=0.01,
                variance_band=0.01, tolerance=0.02, majority_error=0.9, signal_band=0.02)
    base.update(overrides)
    base.setdefault("avoidable_bias", base["j_train"] - base["baseline_error"])
    base.setdefault("variance", base["j_cv"] - base["j_train"])
    return Diagnosis(**base)


# --- judge -------------------------------------------------------------------------------

def test_both_gaps_well_above_tolerance_and_bands_is_both() -> None:
    # bias 0.15 - 0.02 = 0.13, variance 0.35 - 0.15 = 0.20; tolerance 0.15 * 0.35 = 0.0525
    d = _diagnosis(j_train=0.15, j_cv=0.35, tolerance=0.0525, bias_band=0.03,
                   variance_band=0.04)
    assert judge(d) is Verdict.both
    assert d.verdict is Verdict.both  # judged on construction when not given
    assert d.verdict_text.startswith("high bias and high variance")


def test_a_gap_inside_its_band_is_not_well_above() -> None:
    # the same variance gap, but its band (0.25) is wider than the gap: only bias counts
    d = _diagnosis(j_train=0.15, j_cv=0.35, tolerance=0.0525, variance_band=0.25)
    assert judge(d) is Verdict.high_bias
    # and the bias gap inside a wide band leaves variance alone
    d = _diagnosis(j_train=0.15, j_cv=0.35, tolerance=0.0525, bias_band=0.2)
    assert judge(d) is Verdict.high_variance


def test_val_error_within_tolerance_of_the_baseline_is_at_target() -> None:
    d = _diagnosis(j_train=0.025, j_cv=0.035, tolerance=0.02)  # 0.035 <= 0.02 + 0.02
    assert judge(d) is Verdict.at_target
    assert judge(_diagnosis(j_train=0.025, j_cv=0.041, tolerance=0.02)) is not \
        Verdict.at_target


def test_at_target_wins_over_large_gaps_once_the_target_is_reached() -> None:
    # bias 0.13 and variance 0.18 are far above the 0.05 tolerance, but the scope's
    # target error (0.30) is within reach of J_cv: nothing else is worth doing first
    d = _diagnosis(j_train=0.15, j_cv=0.33, tolerance=0.05, target_error=0.30)
    assert d.reach_error == 0.30 and d.avoidable_bias > 0.1 and d.variance > 0.1
    assert judge(d) is Verdict.at_target
    assert judge(_diagnosis(j_train=0.15, j_cv=0.33, tolerance=0.05)) is Verdict.both
    assert advise(d)[0].action is AdviceAction.error_analysis


def test_a_stored_verdict_is_kept_and_a_wrong_one_is_refused() -> None:
    d = _diagnosis(verdict="high_variance")  # what a file holds: the member's string
    assert d.verdict is Verdict.high_variance
    with pytest.raises(ValueError, match="'overfit' is not a valid Verdict"):
        _diagnosis(verdict="overfit")


# --- extrapolate -------------------------------------------------------------------------

def _needed(target: float) -> float:
    return (A / (target - C)) ** (1 / B)


def test_extrapolate_recovers_a_known_power_law() -> None:
    errors = A * SIZES ** -B + C
    fit = extrapolate(SIZES, errors, target_error=0.08, tolerance=0.01)
    assert fit.fitted and not fit.flattened
    assert (fit.a, fit.b, fit.asymptote) == pytest.approx((A, B, C), rel=1e-3)
    assert fit.slope_per_doubling == pytest.approx(errors[-2] - errors[-1])
    assert fit.examples_needed == pytest.approx(_needed(0.08), rel=1e-3)  # 4,444
    low, high = fit.interval  # exact data: the fit is sure, and the interval is narrow
    assert low <= fit.examples_needed <= high
    assert (low, high) == pytest.approx((_needed(0.08), _needed(0.08)), rel=1e-3)
    assert "about 4,44" in fit.message and "against 800 now" in fit.message


def test_extrapolate_with_noise_stays_within_a_few_percent() -> None:
    rng = np.random.default_rng(0)
    errors = (A * SIZES ** -B + C) * (1 + 0.002 * rng.standard_normal(len(SIZES)))
    fit = extrapolate(SIZES, errors, target_error=0.08, tolerance=0.01, seed=0)
    assert fit.a == pytest.approx(A, rel=0.03)
    assert fit.b == pytest.approx(B, rel=0.03)
    assert fit.asymptote == pytest.approx(C, rel=0.05)
    assert fit.examples_needed == pytest.approx(_needed(0.08), rel=0.05)
    low, high = fit.interval
    assert low < _needed(0.08) < high and high - low > 10  # noise widens the interval


def test_a_target_below_the_asymptote_will_not_be_reached() -> None:
    fit = extrapolate(SIZES, A * SIZES ** -B + C, target_error=0.04, tolerance=0.01)
    assert fit.examples_needed == math.inf and fit.interval == (math.inf, math.inf)
    assert "will not reach the target error 0.04" in fit.message
    assert "levels off at 0.05" in fit.message


def test_flat_errors_have_flattened() -> None:
    fit = extrapolate(SIZES, np.full(len(SIZES), 0.1), target_error=0.05, tolerance=0.01)
    assert fit.flattened and fit.slope_per_doubling == 0.0
    assert fit.examples_needed == math.inf
    assert fit.message.endswith("and has already flattened")
    assert not extrapolate(SIZES[:3], np.full(3, 0.1), target_error=0.05,
                           tolerance=0.01).fitted  # three points are too few to fit


# --- advice evidence ---------------------------------------------------------------------

def _learning_curve(n_train: int, target: float) -> LearningCurve:
    errors = A * SIZES ** -B + C
    points = [CurvePoint(int(n), e / 2, 0.01, e, 0.01, 5)
              for n, e in zip(SIZES, errors, strict=True)]
    fit = extrapolate(SIZES, errors, target_error=target, tolerance=0.02)
    law = A * np.array([n_train, 2 * n_train], dtype=float) ** -B + C
    return LearningCurve(points, fit, 800, float(law[0] - law[1]))


def test_advice_items_carry_the_numbers_their_sentence_cites() -> None:
    reg = ValidationCurve("reg", [], 0.0, 0.12, 1.0, 0.07, CurveSetting.under_regularized)
    d = _diagnosis(j_train=0.01, j_cv=0.12, tolerance=0.02, n_train=400,
                   learning_curve=_learning_curve(400, 0.08), validation_curves={"reg": reg})
    d.advice = advise(d)
    assert d.verdict is Verdict.high_variance
    assert [a.action for a in d.advice[:2]] == [AdviceAction.more_data,
                                                AdviceAction.more_regularization]
    more_data, more_reg = d.advice[:2]
    assert all(isinstance(a.evidence, Evidence) for a in d.advice)
    assert more_data.evidence.gain_from_doubling == d.gain_from_doubling == pytest.approx(
        A * 400 ** -B - A * 800 ** -B)  # 0.0293: twice the data lowers val error this much
    assert more_data.evidence.examples_needed == pytest.approx(_needed(0.08), rel=1e-3)
    assert (more_data.evidence.n_train, more_data.evidence.variance) == (400, d.variance)
    assert more_data.score == pytest.approx(2.0 * d.variance)  # more data helps: weight 2
    assert f"{d.gain_from_doubling:.4g}" in more_data.why
    assert more_reg.evidence == Evidence(j_train=0.01, j_cv=0.12, variance=d.variance,
                                         knob="reg", setting=CurveSetting.under_regularized,
                                         current=0.0, current_error=0.12, best=1.0,
                                         best_error=0.07)
    assert more_reg.score == pytest.approx(2.0 * d.variance)


# --- the JSON edge -----------------------------------------------------------------------

def _full_diagnosis() -> Diagnosis:
    """Every kind of evidence: both curves (one not judged), a target, ranked advice."""
    reg_points = [CurvePoint(x, 0.01 * i, 0.002, 0.12 - 0.01 * i, 0.01, 5)
                  for i, x in enumerate([0.0001, 0.01, 1.0, 100.0])]
    d = _diagnosis(j_train=0.01, j_cv=0.12, tolerance=0.02, target_error=0.08,
                   learning_curve=_learning_curve(400, 0.08), seconds=1.5, n_fits=75,
                   reference_architecture="gbt", reference_error=0.05, reference_band=0.01,
                   validation_curves={
                       "reg": ValidationCurve("reg", reg_points, 0.0001, 0.12, 100.0, 0.09,
                                              CurveSetting.under_regularized),
                       "size": ValidationCurve("size", [], 2.0, 0.12)})
    d.advice = advise(d)
    return d


def test_save_then_load_gives_equal_typed_objects(tmp_path) -> None:
    d = _full_diagnosis()
    d.save(tmp_path)
    loaded = Diagnosis.load(tmp_path)
    assert loaded == d  # every number finite here, so == compares them all
    assert loaded.verdict is Verdict.high_variance
    assert loaded.validation_curves["reg"].setting is CurveSetting.under_regularized
    assert loaded.validation_curves["size"].setting is None
    assert [a.action for a in loaded.advice][:2] == [AdviceAction.more_data,
                                                     AdviceAction.more_regularization]
    assert loaded.advice[0].evidence.examples_needed == pytest.approx(_needed(0.08), rel=1e-3)
    stored = json.loads((tmp_path / "diagnosis.json").read_text())
    assert stored == loaded.to_json() == d.to_json()
    assert stored["advice"][0]["evidence"]["gain_from_doubling"] == d.gain_from_doubling


def test_infinity_and_nan_come_back_as_they_went(tmp_path) -> None:
    d = _diagnosis(j_train=0.01, j_cv=0.12, tolerance=0.02, target_error=0.04,
                   bias_band=float("nan"), learning_curve=_learning_curve(400, 0.04))
    d.advice = advise(d)
    d.save(tmp_path)
    loaded = Diagnosis.load(tmp_path)
    fit = loaded.learning_curve.extrapolation
    assert fit.examples_needed == math.inf and fit.interval == (math.inf, math.inf)
    assert loaded.advice[0].evidence.examples_needed == math.inf
    assert math.isnan(loaded.bias_band)
    assert loaded.learning_curve == d.learning_curve and loaded.advice == d.advice


def test_json_keeps_the_shape_of_earlier_versions() -> None:
    old = json.loads(OLD_FILE.read_text())
    new = _full_diagnosis().to_json()
    assert list(new)[:len(old)] == list(old)  # same keys, same order; new ones at the end
    assert {"majority_error", "signal_band", "reference_architecture", "reference_error",
            "reference_band"} <= set(list(new)[len(old):])
    assert list(new["learning_curve"]) == list(old["learning_curve"])
    assert list(new["learning_curve"]["extrapolation"]) == [
        *old["learning_curve"]["extrapolation"], "reliable"]
    assert list(new["learning_curve"]["points"][0]) == list(old["learning_curve"]["points"][0])
    assert list(new["validation_curves"]["reg"]) == list(old["validation_curves"]["reg"])
    assert list(new["validation_curves"]["reg"]["points"][0]) == list(
        old["validation_curves"]["reg"]["points"][0])
    assert set(new["advice"][0]) == set(old["advice"][0]) | {"evidence"}  # added, not renamed
    assert new["verdict"] == "high_variance" and type(new["verdict"]) is str
    assert new["validation_curves"]["reg"]["setting"] == "under-regularized"
    assert new["verdict_text"].startswith("high variance")
    no_curves = _diagnosis().to_json()
    assert no_curves["learning_curve"] == {} and no_curves["validation_curves"] == {}


@pytest.mark.slow
def test_a_real_diagnosis_round_trips(tmp_path: Path, penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    iteration = project.train("linear", report=False)
    d = diagnose(iteration, project.dataset, project.split, factory=project.factory,
                 reference=Reference(metric=project.scope.metric, target_performance=0.999),
                 folds=3)
    assert d.learning_curve is not None and set(d.validation_curves) == {"reg", "size"}
    d.save(tmp_path)
    loaded = Diagnosis.load(tmp_path)
    assert loaded.to_json() == d.to_json()
    assert loaded.verdict is d.verdict and loaded.advice == d.advice
    assert loaded.learning_curve.points == d.learning_curve.points
    assert loaded.validation_curves == d.validation_curves


def test_a_file_written_by_an_earlier_version_loads_and_renders(tmp_path) -> None:
    shutil.copy(OLD_FILE, tmp_path / "diagnosis.json")
    d = Diagnosis.load(tmp_path)
    assert d.verdict is Verdict.at_target and d.n_train == 194
    curve = d.learning_curve
    assert [p.x for p in curve.points] == [19, 48, 87, 136, 194]
    # null meant "never": the curve levels off above the error it should reach
    assert curve.extrapolation.examples_needed == math.inf
    assert curve.extrapolation.interval == (math.inf, math.inf)
    assert d.validation_curves["size"].setting is CurveSetting.well_set
    assert d.validation_curves["size"].best == 2.0
    (advice,) = d.advice
    assert advice.action is AdviceAction.error_analysis
    # stored before evidence was: none is made up on load, the rules can recompute it
    assert advice.evidence == Evidence()
    assert cited(advice.action, d) == Evidence(j_cv=d.j_cv, reach_error=d.baseline_error)
    old = json.loads(OLD_FILE.read_text())
    again = d.to_json()
    assert again["advice"][0].pop("evidence") == Evidence().to_dict()
    # the references were not measured then: unknown, and no verdict is made up from them
    assert math.isnan(d.majority_error) and d.reference_architecture == ""
    assert again["learning_curve"]["extrapolation"].pop("reliable") is True
    assert {k: again[k] for k in old} == old  # apart from added keys, written back as read
    report = Report("penguins")
    section = add_diagnosis_section(report, old)
    html = report.write(tmp_path / "report.html").read_text(encoding="utf-8")
    assert section.n_figures == 4  # errors, learning curve, reg, size
    assert "Verdict: at target" in html and "Look at the errors first" in html


def test_a_broken_diagnosis_file_says_which_key(tmp_path) -> None:
    old = json.loads(OLD_FILE.read_text())
    del old["j_cv"]
    (tmp_path / "diagnosis.json").write_text(json.dumps(old))
    with pytest.raises(LoopmlError, match=r"diagnosis.json has no 'j_cv' key"):
        Diagnosis.load(tmp_path)
    old = json.loads(OLD_FILE.read_text())
    old["advice"][0]["action"] = "buy_a_gpu"
    (tmp_path / "diagnosis.json").write_text(json.dumps(old))
    with pytest.raises(LoopmlError, match=r"'buy_a_gpu' is not a valid AdviceAction"):
        Diagnosis.load(tmp_path)
    (tmp_path / "diagnosis.json").write_text("{not json")
    with pytest.raises(LoopmlError, match=r"diagnosis.json is not readable"):
        Diagnosis.load(tmp_path)
    assert Diagnosis.load(tmp_path / "nowhere") is None


def test_the_references_show_in_the_report_and_the_terminal(tmp_path) -> None:
    d = _diagnosis(j_train=0.059, j_cv=0.062, baseline_error=0.0616, majority_error=0.0598,
                   signal_band=0.003, tolerance=0.009, baseline_estimated=True,
                   baseline_source="estimated (gbt)", reference_architecture="gbt",
                   reference_error=0.0616, reference_band=0.0027)
    d.advice = advise(d)
    assert d.verdict is Verdict.no_signal
    report = Report("caravan")
    add_diagnosis_section(report, d.to_json())
    html = report.write(tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Verdict: no signal: the model learned nothing beyond the class balance" in html
    assert "majority reference" in html and "reference (gbt)" in html
    assert "0.0598" in html and "0.0616" in html
    out = StringIO()
    show_diagnosis(d, Console(file=out, width=200))
    text = out.getvalue()
    assert "learned nothing beyond the class balance" in text
    assert "majority reference" in text and "0.0598" in text
    assert "reference (gbt)" in text and "0.0616 ± 0.0027" in text
    assert "Use a metric the majority class cannot win" in text
