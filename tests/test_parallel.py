"""parallel.py: the same sweep on local cores (joblib) and on a Ray cluster."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from loopml import LoopmlError, Project
from loopml.parallel import parallel_map, shutdown

X, Y = load_digits(return_X_y=True)


def _fit_score(c: float) -> float:
    model = clone(LogisticRegression(max_iter=300)).set_params(C=c)
    return float(model.fit(X[:600], Y[:600]).score(X[600:900], Y[600:900]))


GRID = [0.001, 0.01, 0.1, 1.0]


def test_joblib_returns_results_in_task_order() -> None:
    sequential = [_fit_score(c) for c in GRID]
    assert list(parallel_map(_fit_score, GRID, n_jobs=2)) == sequential
    offset = 10
    assert list(parallel_map(lambda v: v + offset, [1, 2, 3], n_jobs=2)) == [11, 12, 13]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_that_does_not_answer_fails_fast() -> None:
    address = f"127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    with pytest.raises(LoopmlError, match=f"Ray cluster at {address} does not answer"):
        list(parallel_map(_fit_score, GRID, ray_address=address))
    assert time.perf_counter() - start < 30


def test_a_malformed_ray_address_is_refused() -> None:
    with pytest.raises(LoopmlError, match="not host:port"):
        list(parallel_map(_fit_score, GRID, ray_address="headnode"))


@pytest.fixture
def local_ray():
    yield "local"
    shutdown()


@pytest.mark.slow
def test_a_sweep_runs_on_a_local_ray_instance(local_ray: str, tmp_path: Path) -> None:
    """A real diagnosis sweep (loopml's own task function, as Ray workers import it)."""
    project = Project.init(tmp_path / "d", data="digits", target="label")
    iteration = project.train("linear", report=False)
    on_ray = project.diagnose(iteration.run_id, folds=3, curves=False, ray_address=local_ray)
    local = project.diagnose(iteration.run_id, folds=3, curves=False, n_jobs=2)
    assert on_ray.j_cv == pytest.approx(local.j_cv)
    assert on_ray.j_train == pytest.approx(local.j_train)
