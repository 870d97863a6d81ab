"""`loopml diagnose` on digits' best run (the CNN): the default budget against ``--full``.

``loopml run`` trains linear, gbt, mlp and cnn on digits; the CNN wins. An
autopilot diagnoses that run every turn, so the default diagnosis must be quick
and still say what the complete sweep says. Target (issue 9, point 8): under
90 s on 2 cores, bands from at least 3 folds, and the same verdict and top
advice as ``--full`` (the complete sweep: 5 folds, every learning size, the
whole grids; about 7 minutes).

Run alone with ``python bench/bench_diagnose.py`` (it asserts the agreement), or
in ``make bench``. Timings depend on the machine being otherwise idle.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from loopml import Project
from loopml.diagnose import Diagnosis

N_JOBS = 2
TARGET_S = 90.0


def _diagnose(project: Project, run_id: str, **options) -> tuple[Diagnosis, float]:
    start = time.perf_counter()
    d = project.diagnose(run_id, n_jobs=N_JOBS, **options)
    return d, time.perf_counter() - start


def _line(name: str, d: Diagnosis, seconds: float) -> str:
    top = d.advice[0].action if d.advice else "none"
    planning = d.planning
    left = f", left out: {', '.join(planning.left_out)}" if planning and planning.left_out else ""
    return (f"{name:>6}: {seconds:6.1f} s, {d.n_fits} fits ({d.folds} folds), verdict "
            f"{d.verdict}, top advice {top}{left}")


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.init(Path(tmp) / "digits", data="digits", target="label")
        iteration = project.train("cnn", params={"verbose": False}, report=False)
        fast, fast_s = _diagnose(project, iteration.run_id)
        full, full_s = _diagnose(project, iteration.run_id, full=True)
    print(_line("budget", fast, fast_s))
    print(_line("full", full, full_s))
    same_verdict = fast.verdict is full.verdict
    same_advice = bool(fast.advice and full.advice
                       and fast.advice[0].action is full.advice[0].action)
    return [
        {"name": "digits cnn: diagnose (budget)",
         "value": f"{fast_s:.0f} s, {fast.n_fits} fits, {fast.folds} folds",
         "target": f"< {TARGET_S:.0f} s, >= 3 folds",
         "ok": fast_s < TARGET_S and fast.folds >= 3},
        {"name": "digits cnn: diagnose --full",
         "value": f"{full_s:.0f} s, {full.n_fits} fits, {full.folds} folds",
         "target": "the complete sweep", "ok": None},
        {"name": "verdict (budget / full)", "value": f"{fast.verdict} / {full.verdict}",
         "target": "the same", "ok": same_verdict},
        {"name": "top advice (budget / full)",
         "value": f"{fast.advice[0].action if fast.advice else '-'} / "
                  f"{full.advice[0].action if full.advice else '-'}",
         "target": "the same", "ok": same_advice},
    ]


if __name__ == "__main__":
    rows = run()
    for row in rows:
        print(f"{row['name']}: {row['value']} (target {row['target']})")
    assert all(row["ok"] is not False for row in rows), rows
