"""Augmentation matched to the test distortions: issue 11's acceptance, end to end.

Digits whose val and test images are seen through a camera (random shifts,
small rotations, blur: :mod:`camera`), train clean. A CNN trained on clean
digits misreads most of that val. ``augment --policy auto`` must measure the
distortions from the failing val examples and lift the CNN's val accuracy
by at least 5 points (mean over 3 seeds, beyond the seed spread); a policy
of mismatched transforms (contrast loss and sensor noise, which the camera
does not add) must lift it clearly less: less than half of auto's gain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camera import camera_digits
from loopml.grow.lift import LiftVerdict

#: the reference CNN: 16 channels in the first block (2 free cores: each fit takes seconds)
SIZE = 16
#: new examples per clean train example
FACTOR = 2
#: transforms the camera does not apply
MISMATCHED = "contrast,noise"


def _show(name: str, lift) -> None:
    o = lift.overall
    print(f"  {name}: val accuracy before {o.before.mean:.4f} ± {o.before.std:.4f} "
          f"{[round(v, 4) for v in o.before.values]}, after {o.after.mean:.4f} ± "
          f"{o.after.std:.4f} {[round(v, 4) for v in o.after.values]}; gain {o.gain:+.4f}, "
          f"spread {o.spread:.4f}: {o.verdict}")


@pytest.mark.slow
def test_auto_policy_matched_to_camera_distortions_lifts_a_cnn(tmp_path: Path, cli) -> None:
    project = camera_digits(tmp_path / "camera", seed=0)
    reference = project.train("cnn", size=SIZE, report=False)
    clean_val = reference.metrics["val_accuracy"]
    print(f"\ncamera digits: clean-trained cnn (size {SIZE}) val accuracy {clean_val:.4f}, "
          f"train {reference.metrics['train_accuracy']:.4f}")
    assert clean_val < 0.6  # the camera costs the clean model a lot

    auto_record, auto = project.augment(policy="auto", factor=FACTOR, seeds=3)
    print(f"auto policy ({auto.n_added} examples):")
    for step in auto.policy.steps:
        print(f"  {step.transform} {step.magnitude:g}: {'; '.join(step.reasons)}")
    print(f"  refused: {[(c.transform, c.label) for c in auto.preservation.refusals]}")
    _show("auto", auto.lift)
    steps = set(auto.policy.transforms)
    assert {"shift", "blur"} <= steps and not {"contrast", "noise"} & steps
    assert any("Laplacian variance" in r for s in auto.policy.steps for r in s.reasons)

    # the mismatched policy is lifted against the same clean train, not train + auto's copies
    project.drop_examples(auto_record.action_id)
    _, mismatched = project.augment(policy=MISMATCHED, factor=FACTOR, seeds=3)
    _show(MISMATCHED, mismatched.lift)

    a, m = auto.lift.overall, mismatched.lift.overall
    assert len(a.before.values) == len(m.before.values) == 3
    assert a.gain >= 0.05 and a.verdict is LiftVerdict.GAIN
    assert m.gain < a.gain / 2
    # the ledger keeps both, each with its lift
    ledger = project.ledger()
    assert [e.lift.overall.gain for e in ledger[-2:]] == pytest.approx([a.gain, m.gain])

    # the CLI plans the same policy, with the measured statistics as its reasons
    result = cli("augment", "--policy", "auto", "--factor", "1", "--no-lift", "--json",
                 "-p", project.root)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [s["transform"] for s in out["policy"]["steps"]] == auto.policy.transforms
    assert out["policy"]["measured"]["val"]["sharpness"] < \
        out["policy"]["measured"]["train"]["sharpness"]
