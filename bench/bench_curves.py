"""Learning + validation curves: loopml's sweep engine against scikit-learn's.

Both sides fit the same points in this script: the same estimator (loopml's
logistic regression on digits), the same folds (passed to scikit-learn as
explicit index pairs), the same training sizes, the same reg and size grids,
and the same n_jobs. scikit-learn's side is ``learning_curve`` plus one
``validation_curve`` per knob; loopml's is one ``score_points`` call over the
same points. Target (issue 3): loopml's time <= 1.2x scikit-learn's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from sklearn.model_selection import learning_curve, validation_curve

from loopml import Project
from loopml.diagnose.curves import Folds, score_points
from loopml.diagnose.sweep import plan
from loopml.models import get_architecture
from loopml.models.registry import EstimatorFactory

N_JOBS = 2
FOLDS = 5


def _sklearn(estimator, X, y, cv, sizes, grids) -> float:
    start = time.perf_counter()
    learning_curve(estimator, X, y, train_sizes=sizes, cv=cv, n_jobs=N_JOBS,
                   scoring="accuracy")
    for knob, values in grids.items():
        validation_curve(estimator, X, y, param_name=knob, param_range=values, cv=cv,
                         n_jobs=N_JOBS, scoring="accuracy")
    return time.perf_counter() - start


def _loopml(estimator, project: Project, folds: Folds, points) -> float:
    start = time.perf_counter()
    score_points(estimator, project.dataset, folds, points, metric="accuracy", seed=0,
                 n_jobs=N_JOBS)
    return time.perf_counter() - start


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.init(Path(tmp) / "digits", data="digits", target="label")
        dataset, split = project.dataset, project.split
        estimator = EstimatorFactory(dataset).make("linear")
        folds = Folds.make(dataset, split, k=FOLDS, seed=0)
        sweep = plan(get_architecture("linear"), folds, folds.max_train, curves=True)
        points = [p for group in sweep.learning.values() for p in group]
        points += [p for curve in sweep.curves.values() for g in curve.values() for p in g]
        sizes = sorted(sweep.learning)
        grids = {knob: [dict(g[0].overrides)[knob] for g in curve.values()]
                 for knob, curve in sweep.curves.items()}
        pool = split.ids("train").append(split.ids("val"))
        X, y = dataset.X(pool), dataset.y(pool)
        cv = [(pool.get_indexer(a), pool.get_indexer(b)) for a, b in folds.pairs]
        _sklearn(estimator, X, y, cv, sizes[:1], {})  # warm both worker pools
        sk = _sklearn(estimator, X, y, cv, sizes, grids)
        ours = _loopml(estimator, project, folds, points)
    ratio = ours / sk
    return [
        {"name": f"fits per side ({len(sizes)} sizes + "
                 + " + ".join(f"{len(v)} {k}" for k, v in grids.items())
                 + f") x {FOLDS} folds", "value": str(len(points))},
        {"name": "scikit-learn learning_curve + validation_curve", "value": f"{sk:.2f} s"},
        {"name": "loopml score_points (same points)", "value": f"{ours:.2f} s"},
        {"name": "loopml / scikit-learn", "value": f"{ratio:.3f}x", "target": "<= 1.2x",
         "ok": ratio <= 1.2},
    ]
