"""The lift of an action and the ledger: real penguins, a real linear run, real MLflow."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from checks import penguins_with_a_harmful_action, refused, state_files
from loopml import Project
from loopml.grow.lift import GroupLift, LiftVerdict, SeedScores
from loopml.track import LIFT_FILE, run_dir


@pytest.fixture(scope="module")
def harmed(tmp_path_factory) -> tuple[Project, str, object]:
    """Penguins, one linear run, val Adelies tagged, 40 mislabelled rows added, lift measured."""
    project, record = penguins_with_a_harmful_action(tmp_path_factory.mktemp("lift"))
    seen: list[tuple[str, int, int]] = []
    lift = project.lift(record.action_id[:12], seeds=2,
                        progress=lambda step, done, total: seen.append((step, done, total)))
    assert seen[-1] == ("fits", 4, 4)
    return project, record.action_id, lift


def test_a_harmful_action_shows_a_loss_overall_and_in_its_group(harmed) -> None:
    project, action_id, lift = harmed
    val = project.split.ids("val")
    assert lift.action_id == action_id and lift.seeds == [project.scope.seed,
                                                          project.scope.seed + 1]
    # both sides are scored on the same val part; only the train part differs
    assert lift.n_val == len(val) == lift.overall.n_val
    assert lift.n_train_after - lift.n_train_before == 40
    assert lift.n_train_after == len(project.split.ids("train"))
    overall = lift.overall
    assert len(overall.before.values) == len(overall.after.values) == 2
    assert overall.after.mean < overall.before.mean - 0.03  # real numbers, clearly worse
    assert overall.verdict is LiftVerdict.LOSS and overall.gain < 0
    # the group the rows were mislabelled from lost most, and is flagged, not averaged away
    group = next(g for g in lift.groups if g.key == "trait:adelie_val")
    assert group.n_val == int((project.dataset.y(val) == "Adelie").sum())
    assert group.delta < overall.delta
    assert "trait:adelie_val" in [g.key for g in lift.worse]
    assert "worse beyond the spread: adelie_val" in lift.describe()


def test_the_lift_is_a_run_and_a_ledger_entry_but_not_a_candidate(harmed) -> None:
    project, action_id, lift = harmed
    entries = project.ledger()
    entry = next(e for e in entries if e.lift_run_id == lift.run_id)
    assert entry.action_id == action_id and entry.origin == "collect"
    assert entry.target_group == "trait:adelie_val" and entry.counts["train"] == 40
    assert entry.reference_run == project.runs()[0].run_id and entry.seeds == 2
    assert entry.lift.to_dict()["overall"] == lift.overall.to_dict()
    # the MLflow run's folder holds lift.json; it is not listed as a trained candidate
    folder = run_dir(project.state_dir, lift.run_id)
    stored = json.loads((folder / LIFT_FILE).read_text())
    assert stored["overall"]["verdict"] == "loss" and stored["worse"]
    assert [it.run_id for it in project.runs()] == [entry.reference_run]
    # an old lift run is whole: tidying never removes it as an interrupted run
    old = time.time() - 600
    os.utime(folder.parent, (old, old))
    assert lift.run_id not in [r.run_id for r in project.tracker.stale_runs()]
    Project.load(project.root)
    assert (folder / LIFT_FILE).exists()


def test_cli_lift_and_ledger_json(cli, harmed) -> None:
    project, action_id, _ = harmed
    before = len(project.ledger())
    result = cli("lift", action_id, "--seeds", "2", "-p", project.root, "--json")
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout)
    assert measured["overall"]["verdict"] == "loss" and "trait:adelie_val" in measured["worse"]
    result = cli("ledger", "-p", project.root, "--json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)["entries"]
    assert len(entries) == before + 1
    assert entries[-1]["lift_run_id"] == measured["run_id"]
    assert entries[-1]["lift"]["overall"]["delta"] < 0
    table = cli("ledger", "-p", project.root)
    assert table.exit_code == 0, table.output
    assert action_id in table.output and "adelie_val" in table.output


def test_bad_input_is_refused_and_nothing_is_written(cli, harmed) -> None:
    project, action_id, _ = harmed
    state = state_files(project.root, store=True)
    refused(cli("lift", "collect-nosuch", "-p", project.root), "no action 'collect-nosuch'",
             action_id)
    refused(cli("lift", action_id, "--seeds", "0", "-p", project.root), "seeds must be")
    refused(cli("lift", action_id, "--run", "ffffffff", "-p", project.root), "no run")
    assert state_files(project.root, store=True) == state
    ledger = project.state_dir / "ledger.json"
    good = ledger.read_bytes()
    try:
        ledger.write_text('{"entries": [{"action_id": 3}]}')
        state = state_files(project.root, store=True)
        refused(cli("ledger", "-p", project.root), "ledger.json is damaged")
        refused(cli("lift", action_id, "--seeds", "1", "-p", project.root),
                 "ledger.json is damaged")
        assert state_files(project.root, store=True) == state
    finally:
        ledger.write_bytes(good)


def test_an_action_without_train_examples_has_no_lift(cli, harmed) -> None:
    project, _, _ = harmed
    some = project.split.ids("train")[:6]
    rows = project.dataset.X(some).reset_index(drop=True)
    rows[project.dataset.target] = project.dataset.y(some)
    record = project.add_examples(rows, origin="collect", part="val")
    state = state_files(project.root, store=True)
    try:
        refused(cli("lift", record.action_id, "-p", project.root),
                 f"action {record.action_id} has no train examples", "6 in val")
        assert state_files(project.root, store=True) == state
    finally:
        project.drop_examples(record.action_id)


@pytest.mark.parametrize(("before", "after", "verdict"), [
    ((0.90, 0.92), (0.80, 0.82), LiftVerdict.LOSS),  # delta -0.10, spread 0.014
    ((0.80, 0.82), (0.90, 0.92), LiftVerdict.GAIN),
    ((0.80, 0.90), (0.84, 0.88), LiftVerdict.WITHIN_SPREAD),  # delta 0.01, spread 0.07
    ((0.80, 0.80), (0.80, 0.80), LiftVerdict.WITHIN_SPREAD),
])
def test_the_spread_rule(before, after, verdict) -> None:
    group = GroupLift("overall", "overall", 10, SeedScores(before), SeedScores(after), True)
    assert group.verdict is verdict
    # for an error metric (lower is better) the same numbers read the other way round
    flipped = GroupLift("overall", "overall", 10, SeedScores(before), SeedScores(after), False)
    assert flipped.gain == pytest.approx(-group.gain)
    expected = {LiftVerdict.GAIN: LiftVerdict.LOSS, LiftVerdict.LOSS: LiftVerdict.GAIN}
    assert flipped.verdict is expected.get(verdict, verdict)
    assert np.isclose(group.spread, max(np.std(before, ddof=1), np.std(after, ddof=1)))
