"""Synthesis on a small train share: lifted at the reference's share, and judged over seeds.

Issue 11's acceptance: "with 10% of digits' train part, CNN + synthesized
glyphs beats the CNN alone beyond seed spread (3 seeds)". The lift of a run
trained on a share of train must retrain at that share, or a 10% run's lift
would be measured at 100%, where glyphs add nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.grow.lift import FRACTION_TAG, Lift, LiftVerdict
from loopml.grow.synthesize import CANDIDATES
from loopml.project import Project
from loopml.track import LIFT_FILE, run_dir


def test_the_lift_of_a_run_on_a_train_share_retrains_on_that_share(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits")
    n_train = len(project.split.ids("train"))
    reference = project.train("linear", train_fraction=0.2, report=False)
    assert reference.tags[FRACTION_TAG] == "0.2"
    record, result = project.synthesize(count=3, seeds=2, run_id=reference.run_id)
    lift = result.lift
    assert lift.train_fraction == 0.2 and lift.reference_run == reference.run_id
    assert lift.n_train_before == round(0.2 * n_train)  # not the whole train part
    assert lift.n_train_after - lift.n_train_before == 30  # + every glyph
    # seed 0 draws the reference's own share, and the linear fit is deterministic:
    # the 'before' side reproduces the reference run's val accuracy exactly
    assert lift.overall.before.values[0] == pytest.approx(reference.metrics["val_accuracy"])
    assert "trained on 20% of train" in lift.describe()
    stored = json.loads((run_dir(project.state_dir, lift.run_id) / LIFT_FILE).read_text())
    assert stored["train_fraction"] == 0.2
    assert project.ledger()[-1].lift.train_fraction == 0.2
    # a lift.json written before the field existed still loads, as a whole-train lift
    del stored["train_fraction"]
    assert Lift.from_dict(stored).train_fraction is None
    # a run on the whole train part is lifted on the whole train part
    whole = project.train("linear", report=False)
    again = project.lift(record.action_id, run_id=whole.run_id, seeds=1)
    assert again.train_fraction is None and again.n_train_before == n_train


@pytest.mark.slow
def test_glyphs_lift_a_cnn_on_a_tenth_of_digits_beyond_the_seed_spread(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "d", data="digits")
    reference = project.train("cnn", train_fraction=0.1, report=False)
    record, result = project.synthesize(count=COUNT, seeds=3, run_id=reference.run_id)
    # the glyphs were screened by a model of the reference's own train rows, not all of train
    assert result.candidates == CANDIDATES and result.n_screen == reference_rows(reference)
    lift = result.lift
    _show(lift)
    assert lift.train_fraction == 0.1 and len(lift.seeds) == 3
    overall = lift.overall
    assert overall.after.mean > overall.before.mean + overall.spread
    assert overall.verdict is LiftVerdict.GAIN
    # and it holds over twice the seeds (without screening it did not: see COUNT)
    six = project.lift(record.action_id, run_id=reference.run_id, seeds=6)
    _show(six)
    assert six.overall.verdict is LiftVerdict.GAIN, six.describe()


def reference_rows(reference) -> int:
    stored = reference.predictions()
    return int((stored["part"] == "train").sum())


def _show(lift: Lift) -> None:
    overall = lift.overall
    print(f"\nsynthesis lift, cnn on 10% of digits' train ({lift.n_train_before} rows) "
          f"+ {lift.n_train_after - lift.n_train_before} glyphs, seeds {lift.seeds}:")
    print(f"  val accuracy before {overall.before.mean:.4f} ± {overall.before.std:.4f} "
          f"per seed {[round(v, 4) for v in overall.before.values]}")
    print(f"  val accuracy after  {overall.after.mean:.4f} ± {overall.after.std:.4f} "
          f"per seed {[round(v, 4) for v in overall.after.values]}")
    print(f"  delta {overall.delta:+.4f}, spread {overall.spread:.4f}: {overall.verdict}")


#: glyphs per class. Without screening (each glyph kept) it was fragile (cnn, 10% share,
#: seeds 0-2, val accuracy before 0.9346 ± 0.0119): count 10 +0.0074, 20 +0.0148 (the only
#: gain), 30 +0.0098, 50 +0.0012, 100 -0.0074; over seeds 0-5 (before 0.9463 ± 0.0150)
#: count 20 +0.0074, 50 -0.0117, within the spread. An SVC trained on real digits read only
#: ~54% of the glyphs as their class, and an optdigits-style renderer, shear and stronger
#: elastic distortion did no better (shear -0.0130, elastic + erode/dilate -0.0154 over
#: seeds 0-5). Screening (draw CANDIDATES per glyph kept, keep those a model of the
#: reference's train rows reads most surely) lifts count 20 by +0.0284 over seeds 0-2
#: (after 0.9630 ± 0.0111, spread 0.0119) and +0.0228 over seeds 0-5 (after 0.9691 ±
#: 0.0109, spread 0.0150); other glyph seeds (a scratch copy of the lift): +0.0160 and
#: +0.0216 over seeds 0-5. Count 30 with 10 candidates did worse (+0.0111 to +0.0123).
COUNT = 20
