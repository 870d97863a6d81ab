"""A crash at any point leaves every verb working (issue 8, point 6).

``loopml train`` is killed with SIGKILL at many moments of its life (importing,
fitting, creating the MLflow run, saving the model, writing predictions and
the record); afterwards the project must still list, show, analyse and
diagnose its finished runs, and train again. A killed run must never appear
half-written: ``runs`` lists a run only once its record is complete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loopml import Project


def _loopml(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loopml.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _kill_after(seconds: float, *args: str, cwd: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "loopml.cli", *args], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_verbs_work_after_training_is_killed_at_any_moment(tmp_path: Path,
                                                           penguins_csv: Path) -> None:
    project = Project.init(tmp_path / "p", data=str(penguins_csv), target="species")
    first = project.train("linear")
    start = time.perf_counter()
    finished = _loopml("train", "-p", "p", "--arch", "gbt", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    whole = time.perf_counter() - start
    for k in range(1, 9):  # spread the kills over the life of a training
        _kill_after(whole * k / 9, "train", "-p", "p", "--arch", "gbt", cwd=tmp_path)

    listed = _loopml("runs", "-p", "p", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert runs[0]["run_id"] == first.run_id and len(runs) >= 2
    for run in runs:  # every listed run is whole: its model and predictions load
        reopened = Project.load(tmp_path / "p").get_run(run["run_id"])
        assert len(reopened.predictions()) > 0
        assert reopened.model().predict(project.dataset.X(project.dataset.ids[:3])).shape == (3,)
    for verb in (("show", first.run_id[:8]),
                 ("errors", first.run_id[:8], "--no-label-issues"),
                 ("diagnose", first.run_id[:8], "--folds", "2", "--no-curves"),
                 ("train", "--arch", "linear")):
        done = _loopml(*verb, "-p", "p", cwd=tmp_path)
        assert done.returncode == 0, f"{verb}: {done.stderr}"
