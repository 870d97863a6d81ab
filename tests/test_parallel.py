"""parallel_map: the same sweep of real sklearn fits, in process, on joblib and on Ray."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from checks import free_port
from loopml import LoopmlError
from loopml.parallel import parallel_map, shutdown

CS = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def sweep_tasks(digits, estimator=None) -> list[tuple]:
    """One task per C: a clone to fit, the train half and the val half."""
    X, y = digits
    base = estimator or LogisticRegression(max_iter=300)
    return [(clone(base).set_params(C=c), X[:400], y[:400], X[400:], y[400:]) for c in CS]


def fit_and_score(task: tuple) -> float:
    """What a sweep task does: fit the clone, return a small result (val accuracy)."""
    estimator, X_train, y_train, X_val, y_val = task
    return float(estimator.fit(X_train, y_train).score(X_val, y_val))


def test_joblib_returns_the_sequential_results_in_order(digits) -> None:
    tasks = sweep_tasks(digits)
    sequential = list(parallel_map(fit_and_score, tasks))
    assert list(parallel_map(fit_and_score, tasks, n_jobs=2)) == sequential
    assert len(set(sequential)) > 1  # C matters, so a reordering would show
    assert sequential == sorted(sequential, key=sequential.index)


def test_joblib_runs_closures(digits) -> None:
    """Callers pass lambdas that capture data; loky pickles them with cloudpickle."""
    X, y = digits
    tasks = [clone(LogisticRegression(max_iter=300)).set_params(C=c) for c in CS[:3]]
    scores = list(parallel_map(lambda est: est.fit(X[:400], y[:400]).score(X[400:], y[400:]),
                               tasks, n_jobs=2))
    assert scores == [fit_and_score(t) for t in sweep_tasks(digits)[:3]]


def test_results_stream_before_the_sweep_ends() -> None:
    """The first result arrives while a slow last task still runs."""
    start = time.perf_counter()
    results = parallel_map(time.sleep, [0.0, 0.0, 3.0], n_jobs=2)
    next(results)
    assert time.perf_counter() - start < 2.5
    assert list(results) == [None, None]


def test_importing_loopml_does_not_import_ray() -> None:
    code = "import sys, loopml, loopml.parallel; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)



def test_a_dead_ray_address_fails_fast_with_a_hint() -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{free_port()}"
    start = time.perf_counter()
    with pytest.raises(LoopmlError) as raised:
        parallel_map(fit_and_score, [1, 2], ray_address=address)
    assert time.perf_counter() - start < 30
    assert address in raised.value.message
    assert "ray start --head" in raised.value.hint


def test_a_ray_address_that_is_no_address_is_a_loopml_error() -> None:
    pytest.importorskip("ray")
    with pytest.raises(LoopmlError, match="not host:port"):
        parallel_map(fit_and_score, [1], ray_address="my-cluster")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[object]:
    """A local Ray instance with 2 CPUs, started by parallel_map, stopped at the end."""
    ray = pytest.importorskip("ray")
    list(parallel_map(abs, [-1, -2], n_jobs=2, ray_address="local"))
    yield ray
    shutdown()
    assert not ray.is_initialized()


@pytest.mark.slow
def test_ray_local_returns_the_sequential_results_in_order(digits, local_ray) -> None:
    tasks = sweep_tasks(digits)
    sequential = [fit_and_score(t) for t in tasks]
    assert local_ray.cluster_resources()["CPU"] == 2
    job = local_ray.get_runtime_context().get_job_id()
    assert list(parallel_map(fit_and_score, tasks, n_jobs=2, ray_address="local")) == sequential
    X, y = digits
    closure = list(parallel_map(lambda t: t[0].fit(X[:400], y[:400]).score(X[400:], y[400:]),
                                tasks, ray_address="local"))
    assert closure == sequential
    assert local_ray.get_runtime_context().get_job_id() == job  # reused, not restarted


def fail_on_two(task: int) -> int:
    if task == 2:
        raise LoopmlError("task 2 is bad", hint="fix it")
    return task


@pytest.mark.slow
def test_ray_reraises_what_a_task_raised(local_ray) -> None:
    results = parallel_map(fail_on_two, [0, 1, 2, 3], ray_address="local")
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(LoopmlError, match="task 2 is bad") as raised:
        next(results)
    assert raised.value.hint == "fix it"


@pytest.mark.slow
def test_ray_streams_results_before_the_sweep_ends(local_ray) -> None:
    start = time.perf_counter()
    results = parallel_map(time.sleep, [0.0, 0.0, 2.0], ray_address="local")
    next(results)
    assert time.perf_counter() - start < 1.5
    assert list(results) == [None, None]


@pytest.mark.slow
def test_a_diagnosis_sweep_gives_the_same_numbers_on_ray(local_ray, tmp_path) -> None:
    from loopml import Project

    project = Project.init(tmp_path / "d", data="digits", target="label")
    iteration = project.train("linear", report=False)
    on_ray = project.diagnose(iteration.run_id, folds=3, curves=False, ray_address="local")
    local = project.diagnose(iteration.run_id, folds=3, curves=False, n_jobs=2)
    assert on_ray.j_cv == pytest.approx(local.j_cv)
    assert on_ray.j_train == pytest.approx(local.j_train)
