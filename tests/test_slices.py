"""Slice discovery: planted slices are found, noise is not, slices survive JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from loopml.errors.slices import (
    Predicate,
    Slice,
    SliceSearch,
    _encode,
    find_slices,
    score_slice,
)
from loopml.exceptions import DataError


def _table(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """8 categorical columns of 3 to 7 levels and 2 numeric columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"c{i}": rng.choice([f"l{j}" for j in range(3 + i % 5)], n)
                          for i in range(8)})
    frame["x"] = rng.normal(size=n)
    frame["y"] = rng.exponential(size=n)
    return frame


def _errors(rng: np.random.Generator, planted: np.ndarray, base: float = 0.05,
            high: float = 0.6) -> np.ndarray:
    return (rng.random(len(planted)) < np.where(planted, high, base)).astype(float)


def _planted(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    cut = float(np.quantile(frame["x"], 0.8, method="lower"))
    cat = ((frame["c0"] == "l1") & (frame["c3"] == "l2")).to_numpy()
    num = ((frame["c2"] == "l0") & (frame["x"] >= cut)).to_numpy()
    return cat, num, cut


def test_planted_slices_come_out_on_top() -> None:
    frame = _table()
    cat, num, cut = _planted(frame)
    search = find_slices(frame, _errors(np.random.default_rng(1), cat | num))
    top = {stat.slice for stat in search.slices[:2]}
    assert top == {
        Slice((Predicate("c0", "eq", "l1"), Predicate("c3", "eq", "l2"))),
        Slice((Predicate("c2", "eq", "l0"), Predicate("x", "range", lo=cut))),
    }, [s.slice.describe() for s in search.slices]
    assert all(0.5 < s.error_rate < 0.7 for s in search.slices[:2])
    assert search.n_rows == len(frame) and search.n_tried > 100


def test_reported_stats_match_the_slice_masks() -> None:
    frame = _table()
    cat, num, _ = _planted(frame)
    errors = _errors(np.random.default_rng(2), cat | num)
    search = find_slices(frame, errors)
    for stat in search.slices:
        mask = stat.slice.mask(frame)
        assert stat.size == mask.sum() and stat.errors == errors[mask].sum()
        assert stat.error_rate_outside == pytest.approx(errors[~mask].mean())
        assert stat.score > 0 and stat.p_value < 0.05


@pytest.mark.parametrize("continuous", [False, True])
def test_pure_noise_reports_nothing(continuous: bool) -> None:
    frame = _table(n=5_000)
    rng = np.random.default_rng(3)
    errors = rng.exponential(size=len(frame)) ** 2 if continuous else _errors(
        rng, np.zeros(len(frame), bool), base=0.1)
    search = find_slices(frame, errors)
    assert search.slices == [], [s.slice.describe() for s in search.slices]
    assert search.n_tried > 0


def test_regression_errors_find_the_planted_slice() -> None:
    frame = _table(n=10_000)
    rng = np.random.default_rng(4)
    planted = ((frame["c1"] == "l0") & (frame["c5"] == "l1")).to_numpy()
    residuals = rng.normal(size=len(frame)) * np.where(planted, 3.0, 1.0)
    search = find_slices(frame, residuals**2)
    assert search.slices[0].slice == Slice((Predicate("c1", "eq", "l0"),
                                            Predicate("c5", "eq", "l1")))
    assert search.slices[0].error_rate > 5 * search.base_error / 2


@pytest.mark.parametrize("min_support", [0.05, 500])
def test_min_support_is_respected(min_support: float) -> None:
    frame = _table(n=10_000)
    tiny = ((frame["c0"] == "l0") & (frame["c6"] == "l1") & (frame["x"] > 1.5)).to_numpy()
    wide = (frame["c4"] == "l2").to_numpy()
    errors = _errors(np.random.default_rng(5), tiny | wide, high=0.9)
    search = find_slices(frame, errors, min_support=min_support)
    assert search.slices and all(s.size >= 500 for s in search.slices)
    assert search.slices[0].slice == Slice((Predicate("c4", "eq", "l2"),))


def test_boolean_column_gives_only_its_true_predicate() -> None:
    rng = np.random.default_rng(6)
    frame = _table(n=5_000)
    frame["low_contrast"] = rng.random(len(frame)) < 0.2
    frame["sharp"] = rng.random(len(frame)) < 0.7
    planted = frame["low_contrast"].to_numpy() | ~frame["sharp"].to_numpy()
    search = find_slices(frame, _errors(rng, planted, high=0.4), max_depth=1, k=20)
    preds = [p for s in search.slices for p in s.slice.predicates]
    assert Predicate("low_contrast", "eq", True) in preds
    assert all(p.value is True for p in preds if p.column in ("low_contrast", "sharp"))
    assert search.slices[0].slice.describe() == "low_contrast"


@pytest.mark.parametrize("column", ["sex", "x"])
def test_missing_values_give_a_missing_predicate(column: str) -> None:
    rng = np.random.default_rng(7)
    frame = _table(n=5_000)
    frame["sex"] = rng.choice(["female", "male"], len(frame))
    missing = rng.random(len(frame)) < 0.08
    frame[column] = frame[column].where(~missing)
    search = find_slices(frame, _errors(rng, missing))
    assert search.slices[0].slice == Slice((Predicate(column, "missing"),))
    assert search.slices[0].slice.describe() == f"{column} is missing"


def test_rare_levels_beyond_max_levels_are_not_sliced() -> None:
    rng = np.random.default_rng(8)
    n = 6_000
    weights = np.linspace(2, 1, 30)
    frame = pd.DataFrame({"city": rng.choice([f"city{i:02d}" for i in range(30)], n,
                                             p=weights / weights.sum())})
    counts = frame["city"].value_counts()
    rare = counts.index[-1]
    search = find_slices(frame, _errors(rng, (frame["city"] == rare).to_numpy(), high=0.9),
                         max_levels=10)
    assert all(p.value in set(counts.index[:10]) for s in search.slices for p in s.slice.predicates)


def test_quantile_bins_partition_rows_despite_ties() -> None:
    rng = np.random.default_rng(9)
    x = np.where(rng.random(2_000) < 0.7, 0.0, rng.integers(1, 17, 2_000)).astype(float)
    x[:50] = np.nan
    column = _encode(pd.Series(x), "pixel", bins=5, max_levels=20)
    frame = pd.DataFrame({"pixel": x})
    masks = np.stack([p.mask(frame) for p in column.predicates])
    assert (masks.sum(axis=0) == 1).all()          # every row in exactly one bin
    assert (masks.sum(axis=1) > 0).all()           # no empty bin
    assert column.predicates[0] == Predicate("pixel", "range", hi=1.0)
    assert column.predicates[-1] == Predicate("pixel", "missing")
    for code, predicate in enumerate(column.predicates):
        assert (masks[code] == (column.codes == code)).all(), predicate.describe()


def test_constant_columns_are_skipped() -> None:
    frame = pd.DataFrame({"k": ["a"] * 100, "b": [True] * 100, "z": np.ones(100)})
    search = find_slices(frame, np.r_[np.ones(10), np.zeros(90)])
    assert search == SliceSearch(slices=[], n_tried=0, n_rows=100, base_error=0.1)


def test_predicate_and_slice_round_trip_through_json() -> None:
    slc = Slice((Predicate("island", "eq", "Biscoe"), Predicate("age", "range", lo=60.0),
                 Predicate("sex", "missing"), Predicate("n_kids", "eq", 2)))
    back = Slice.from_dict(json.loads(json.dumps(slc.to_dict())))
    assert back == slc and back.key == slc.key and len(slc.key) == 12
    for p in slc.predicates:
        assert Predicate.from_dict(json.loads(json.dumps(p.to_dict()))) == p


def test_search_results_are_json_serialisable() -> None:
    frame = _table(n=5_000)
    cat, num, _ = _planted(frame)
    search = find_slices(frame, _errors(np.random.default_rng(10), cat | num), k=3)
    data = json.loads(json.dumps(search.to_dict()))
    assert len(data["slices"]) == len(search.slices) > 0
    first = data["slices"][0]
    assert Slice.from_dict(first["slice"]) == search.slices[0].slice
    assert first["key"] == search.slices[0].slice.key


def test_slice_equality_ignores_predicate_order() -> None:
    a, b = Predicate("island", "eq", "Biscoe"), Predicate("age", "range", lo=60.0)
    assert Slice((a, b)) == Slice((b, a))
    assert hash(Slice((a, b))) == hash(Slice((b, a))) and Slice((a, b)).key == Slice((b, a)).key
    assert Slice((a,)) != Slice((a, b))


def test_describe_reads_like_a_condition() -> None:
    assert Predicate("island", "eq", "Biscoe").describe() == "island = Biscoe"
    assert Predicate("bill_length_mm", "range", lo=4.2, hi=5.1).describe() \
        == "4.2 <= bill_length_mm < 5.1"
    assert Predicate("age", "range", lo=60).describe() == "age ≥ 60"
    assert Predicate("age", "range", hi=30.5).describe() == "age < 30.5"
    assert Predicate("sex", "missing").describe() == "sex is missing"
    assert Predicate("low_contrast", "eq", True).describe() == "low_contrast"
    slc = Slice((Predicate("sex", "missing"), Predicate("island", "eq", "Biscoe")))
    assert slc.describe() == "island = Biscoe AND sex is missing"


def test_mask_on_a_frame_without_the_column_raises_data_error() -> None:
    frame = pd.DataFrame({"island": ["Biscoe"], "bill_length_mm": [40.1]})
    with pytest.raises(DataError, match="'species'") as caught:
        Slice((Predicate("species", "eq", "Adelie"),)).mask(frame)
    assert "island" in caught.value.hint and "bill_length_mm" in caught.value.hint


def test_bad_predicates_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Predicate("x", "between", lo=1.0)
    with pytest.raises(ValueError, match="needs lo or hi"):
        Predicate("x", "range")
    frame = _table(n=100)
    with pytest.raises(ValueError, match="100 rows and errors has shape"):
        find_slices(frame, np.zeros(99))
    with pytest.raises(ValueError, match="non-negative"):
        find_slices(frame, -np.ones(100))
    with pytest.raises(ValueError, match="max_depth must be 1, 2 or 3"):
        find_slices(frame, np.ones(100), max_depth=4)


def test_score_slice_on_new_errors() -> None:
    frame = _table(n=5_000)
    cat, num, _ = _planted(frame)
    rng = np.random.default_rng(11)
    found = find_slices(frame, _errors(rng, cat | num)).slices[0]
    stored = Slice.from_dict(json.loads(json.dumps(found.slice.to_dict())))

    fixed = score_slice(stored, frame, _errors(rng, np.zeros(len(frame), bool)))
    assert fixed.size == found.size and fixed.error_rate < 0.15 and fixed.p_value > 1e-3

    still = _errors(rng, cat | num)
    again = score_slice(stored, frame, still)
    mask = stored.mask(frame)
    assert again.errors == still[mask].sum() and again.error_rate > 0.4
    assert again.score > 0 and again.p_value < 1e-10


def test_wide_numeric_table_is_searched_to_depth_three() -> None:
    rng = np.random.default_rng(12)
    frame = pd.DataFrame(rng.normal(size=(1_800, 64)), columns=[f"px{i}" for i in range(64)])
    planted = ((frame["px3"] > 0.85) & (frame["px40"] < -0.85)).to_numpy()
    search = find_slices(frame, _errors(rng, planted, base=0.05, high=0.9))
    assert {p.column for p in search.slices[0].slice.predicates} == {"px3", "px40"}


def test_the_one_significance_module_matches_scipys_reference_tests() -> None:
    """Slices, traits and clusters all ask loopml.errors.significance; its answers are
    Fisher's exact test and Welch's t-test as scipy computes them from the rows."""
    from scipy import stats

    from loopml.errors.significance import bonferroni, mask_p_values

    rng = np.random.default_rng(13)
    groups = rng.random((6, 400)) < np.linspace(0.05, 0.5, 6)[:, None]
    binary = (rng.random(400) < np.where(groups[2], 0.4, 0.1)).astype(float)
    for mask, p in zip(groups, mask_p_values(binary, groups), strict=True):
        e_in, e_out = binary[mask].sum(), binary[~mask].sum()
        table = [[e_in, mask.sum() - e_in], [e_out, (~mask).sum() - e_out]]
        assert p == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue,
                                  rel=1e-9)
    losses = rng.exponential(size=400) + np.where(groups[4], 0.5, 0.0)
    for mask, p in zip(groups, mask_p_values(losses, groups), strict=True):
        welch = stats.ttest_ind(losses[mask], losses[~mask], equal_var=False,
                                alternative="greater")
        assert p == pytest.approx(welch.pvalue, rel=1e-9)
    assert mask_p_values(losses, groups)[4] < 1e-6 < mask_p_values(losses, groups)[0]
    assert list(bonferroni(np.array([0.001, 0.2, 0.6]), 3)) == pytest.approx([0.003, 0.6, 1.0])
