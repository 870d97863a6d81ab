"""The cost of tracking: ``Project.train`` against the same estimator fitted plainly.

Both run in this script on the digits project's train split, with the same
estimator settings. The overhead of a tracked call is its wall time minus its own fit time; it is
what loopml adds per run: predictions
on train and val, metrics, the MLflow run (params, metrics, model artifact
with its schema) and the HTML report. The store already exists (one warm-up
run), so creating it is not counted.

Targets (issue 2): overhead <= 0.3 s per run; for a training that takes
>= 2 s, loopml's time <= 1.3x the plain fit.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml import Project

REPEATS = 3


def _plain_fit(estimator, project: Project) -> float:
    train = project.split.ids("train")
    X, y = project.dataset.X(train), project.dataset.y(train)
    start = time.perf_counter()
    clone(estimator).fit(X, y)
    return time.perf_counter() - start


def _tracked(project: Project, name: str, params: dict) -> tuple[float, float]:
    """Wall time of one tracked training, and the part of it spent outside the fit."""
    start = time.perf_counter()
    iteration = project.train(name, params=params)
    wall = time.perf_counter() - start
    return wall, wall - iteration.duration_s


def _measure(project: Project, name: str, params: dict) -> tuple[float, float, float]:
    """Median plain fit, median tracked wall time, median per-call overhead."""
    estimator = project.factory.make(name, **params)
    plain, walls, overheads = [], [], []
    for _ in range(REPEATS):  # interleaved, so drift in machine load hits both alike
        plain.append(_plain_fit(estimator, project))
        wall, overhead = _tracked(project, name, params)
        walls.append(wall)
        overheads.append(overhead)
    return statistics.median(plain), statistics.median(walls), statistics.median(overheads)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.init(Path(tmp) / "digits", data="digits", target="label")
        project.train("linear")  # warm-up: creates the MLflow store, imports everything
        X = project.dataset.X(project.split.ids("train"))
        y = project.dataset.y(project.split.ids("train"))
        start = time.perf_counter()
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
        sklearn_plain = time.perf_counter() - start

        quick_plain, quick_tracked, quick_overhead = _measure(project, "linear", {})
        long_plain, long_tracked, long_overhead = _measure(project, "cnn", {"verbose": False})
    ratio = long_tracked / long_plain
    return [
        {"name": "plain sklearn LogisticRegression pipeline fit (reference)",
         "value": f"{sklearn_plain:.3f} s"},
        {"name": "linear: plain fit / loopml train", "value":
         f"{quick_plain:.3f} s / {quick_tracked:.3f} s"},
        {"name": "per-run tracking overhead (linear)", "value": f"{quick_overhead:.3f} s",
         "target": "<= 0.3 s", "ok": quick_overhead <= 0.3},
        {"name": "cnn: plain fit / loopml train", "value":
         f"{long_plain:.2f} s / {long_tracked:.2f} s"},
        {"name": "per-run tracking overhead (cnn)", "value": f"{long_overhead:.3f} s",
         "target": "<= 0.3 s", "ok": long_overhead <= 0.3},
        {"name": "loopml train / plain fit (cnn, fit >= 2 s)", "value": f"{ratio:.3f}x",
         "target": "<= 1.3x", "ok": ratio <= 1.3 and long_plain >= 2.0},
    ]
