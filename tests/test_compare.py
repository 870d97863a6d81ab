"""The compare engine: candidates at shares of the train part over seeds, and its advice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checks import state_files
from loopml.exceptions import LoopmlError
from loopml.grow.compare import Candidate, Cell, compare_candidates, recommend
from loopml.project import Project


@pytest.fixture
def penguins(tmp_path: Path, penguins_csv: Path) -> Project:
    return Project.init(tmp_path / "peng", data=str(penguins_csv), target="species")


def test_linear_against_gbt_on_penguins(penguins: Project) -> None:
    p = penguins
    before = state_files(p.root, store=True)
    heard = []
    result = compare_candidates(p.dataset, p.split, p.factory,
                                [Candidate("linear", "linear"),
                                 Candidate("gbt", "gbt", {"size": 8})],
                                metric=p.scope.metric, seeds=3,
                                progress=lambda *event: heard.append(event))
    assert state_files(p.root, store=True) == before  # nothing recorded: no run, no file
    assert heard[0] == ("fits", 0, 18) and heard[-1] == ("fits", 18, 18)
    n_train = len(p.split.ids("train"))
    assert result.fractions == [0.1, 0.3, 1.0] and result.seeds == [0, 1, 2]
    assert result.n_val == len(p.split.ids("val"))
    full = result.cell("linear", 1.0)
    assert full.n_train == n_train and len(full.scores) == 3
    assert result.cell("gbt", 0.1).n_train == round(0.1 * n_train)
    for cell in result.cells:
        assert cell.std >= 0 and cell.cost > 0
        assert cell.mean > 0.9 or cell.fraction < 1  # penguin species are easy to tell apart
    # 24 rows: gbt's leaves need more examples than that, the linear model does not
    small_linear, small_gbt = result.cell("linear", 0.1), result.cell("gbt", 0.1)
    assert small_linear.mean - small_gbt.mean > max(small_linear.std, small_gbt.std)
    assert result.recommendation(0.1).label == "linear"
    rows = result.rows()
    assert len(rows) == 6 and set(rows[0]) == {"candidate", "fraction", "n_train",
                                               f"val {result.metric}", "std", "fit s"}
    document = json.loads(json.dumps(result.to_dict()))
    assert len(document["cells"]) == 6 and set(document["recommendations"]) == {
        "0.1", "0.3", "1.0"}
    advice = result.recommendation()
    assert advice.sentence.startswith(f"at your data size ({n_train} train rows)")
    assert advice.label in {"linear", "gbt"} and advice.label in advice.within_spread
    figure = result.figure()
    assert [t.name for t in figure.data] == ["linear", "gbt"]
    assert list(figure.data[0].x) == sorted(figure.data[0].x) and figure.data[0].error_y.array
    print(*(f"{r['candidate']:>6} {r['fraction']:.0%} n={r['n_train']}: "
            f"{r[f'val {result.metric}']:.4f} ± {r['std']:.4f} ({r['fit s']} s)" for r in rows),
          advice.sentence, sep="\n")


def _cell(label: str, scores: tuple[float, ...], seconds: float, n: int = 400) -> Cell:
    return Cell(label, 1.0, n, scores, (seconds,) * len(scores))


def test_within_the_spread_the_cheaper_candidate_is_recommended() -> None:
    freeze = _cell("freeze", (0.90, 0.88, 0.92), 3.0)       # 0.90 ± 0.02
    finetune = _cell("finetune", (0.91, 0.90, 0.92), 30.0)  # 0.91 ± 0.01: within 0.02
    advice = recommend([finetune, freeze], metric="accuracy", greater_is_better=True,
                       n_seeds=3)
    assert (advice.label, advice.best) == ("freeze", "finetune")
    assert set(advice.within_spread) == {"freeze", "finetune"}
    assert advice.sentence == (
        "at your data size (400 train rows), freeze is within the spread of finetune (val "
        "accuracy 0.9000 ± 0.0200 against 0.9100 ± 0.0100 over 3 seeds) at a tenth of the "
        "cost (3 s against 30 s per fit): use freeze")


def test_beyond_the_spread_the_better_candidate_is_recommended() -> None:
    cheap = _cell("scratch", (0.80, 0.81, 0.79), 1.0)   # 0.80 ± 0.01
    dear = _cell("freeze", (0.90, 0.89, 0.91), 20.0)    # 0.90 ± 0.01: 0.10 beyond
    advice = recommend([cheap, dear], metric="accuracy", greater_is_better=True, n_seeds=3)
    assert (advice.label, advice.best, advice.within_spread) == ("freeze", "freeze",
                                                                 ("freeze",))
    assert "freeze is best beyond the spread over 3 seeds" in advice.sentence
    assert "scratch's 0.8000 ± 0.0100" in advice.sentence


def test_a_noisy_candidate_that_saves_little_is_not_preferred_to_the_best() -> None:
    # measured on a tenth of the reviews (H200): fine-tuning is "within" lp-ft's spread
    # only because its own spread is wide, and it saves 3% of the time
    finetune = _cell("finetune", (0.7196, 0.7623, 0.8064), 2.84)  # 0.763 ± 0.043
    lp_ft = _cell("lp-ft", (0.7944, 0.7984, 0.8037), 2.93)        # 0.799 ± 0.005
    freeze = _cell("freeze", (0.7891, 0.7917, 0.7944), 2.69)      # 0.792 ± 0.003: beyond
    advice = recommend([finetune, lp_ft, freeze], metric="accuracy", greater_is_better=True,
                       n_seeds=3)
    assert (advice.label, advice.best) == ("lp-ft", "lp-ft")
    assert advice.within_spread == ("finetune", "lp-ft")
    assert "within its spread but not half as costly: finetune (0.7628" in advice.sentence
    assert advice.sentence.endswith("use lp-ft")
    # the same candidate at a third of the cost is worth its possibly lower score
    cheap = _cell("finetune", (0.7196, 0.7623, 0.8064), 0.9)
    assert recommend([cheap, lp_ft], metric="accuracy", greater_is_better=True,
                     n_seeds=3).label == "finetune"


def test_lower_is_better_metrics_and_a_cheapest_best() -> None:
    # rmse: the lower mean is best; it is also the cheaper one, the other within its spread
    a = _cell("a", (1.0, 1.2, 0.8), 1.0)  # 1.0 ± 0.2
    b = _cell("b", (1.1, 1.2, 1.0), 5.0)  # 1.1 ± 0.1: within 0.2
    advice = recommend([b, a], metric="rmse", greater_is_better=False, n_seeds=3)
    assert (advice.label, advice.best) == ("a", "a")
    assert "cheapest of those within its spread (b)" in advice.sentence
    small = Cell("a", 0.1, 40, (1.0,), (1.0,))
    assert recommend([small], metric="rmse", greater_is_better=False,
                     n_seeds=1).sentence.startswith("at 10% of your data (40 train rows)")


@pytest.mark.parametrize("kwargs, message", [
    (dict(fractions=(0.0, 1.0)), "train fractions must be in (0, 1]"),
    (dict(seeds=0), "seeds must be a whole number"),
    (dict(candidates=[Candidate("x", "linear"), Candidate("x", "gbt")]), "'x' given more"),
    (dict(candidates=[]), "no candidates"),
])
def test_bad_options_are_refused_before_any_fit(penguins: Project, kwargs, message) -> None:
    p = penguins
    options = {"candidates": [Candidate("linear", "linear")], "metric": p.scope.metric, **kwargs}
    candidates = options.pop("candidates")
    before = state_files(p.root, store=True)
    with pytest.raises(LoopmlError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")) as caught:
        compare_candidates(p.dataset, p.split, p.factory, candidates, **options)
    assert caught.value.hint
    assert state_files(p.root, store=True) == before
