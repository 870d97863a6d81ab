"""The one place that runs work in parallel.

Locally that is joblib on the machine's cores; with a Ray address it is a Ray
cluster (``"local"`` starts one in this process). Callers hand over a function
and its tasks; each task must be picklable (give it a ``clone`` of an
estimator, never a shared fitted one). Results come back in task order, each
as soon as it and the ones before it are done, so callers can advance a
progress bar per result.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlparse

from joblib import Parallel, delayed

from loopml.errors import LoopmlError

CONNECT_TIMEOUT_S = 25.0
_state: dict[str, Any] = {"address": None, "started_here": False}


def parallel_map(func: Callable[..., Any], tasks: Iterable[Any], *, n_jobs: int | None = None,
                 ray_address: str | None = None) -> Iterator[Any]:
    """Yield ``func(task)`` for every task, in order.

    ``n_jobs=None`` or 1 runs in this process (no pickling, progress bars stay
    visible); -1 uses every core. ``ray_address`` ("local", "host:port",
    "ray://host:port" or "auto") runs the tasks on Ray instead.
    """
    tasks = list(tasks)
    if ray_address:
        yield from _ray_map(func, tasks, ray_address, n_jobs)
        return
    if n_jobs in (None, 1) or len(tasks) <= 1:
        yield from (func(task) for task in tasks)
        return
    yield from Parallel(n_jobs=n_jobs, return_as="generator")(delayed(func)(t) for t in tasks)


def _ray_map(func, tasks: list, address: str, n_jobs: int | None) -> Iterator[Any]:
    ray = _connect(address, n_jobs)
    remote = ray.remote(num_cpus=1)(func)
    refs = [remote.remote(task) for task in tasks]
    for ref in refs:
        yield ray.get(ref)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise LoopmlError("a Ray address was given, but Ray is not installed",
                          hint="pip install 'loopml[ray]'") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """The (host, port) to probe, or None where Ray finds the cluster itself ("auto")."""
    if address == "auto":
        return None
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname or not parsed.port:
        raise LoopmlError(f"Ray address '{address}' is not host:port",
                          hint="e.g. --ray 10.0.0.5:6379, ray://head:10001, auto or local")
    return parsed.hostname, parsed.port


def _probe(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at the address."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=5.0):
            pass
    except OSError as exc:
        raise LoopmlError(f"the Ray cluster at {address} does not answer ({exc.strerror or exc})",
                          hint="start it with 'ray start --head', or drop --ray / "
                               "ray_address to run on local cores") from None


def _connect(address: str, n_jobs: int | None):
    ray = _import_ray()
    if ray.is_initialized() and _state["address"] == address:
        return ray
    if ray.is_initialized():
        shutdown()
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False,
                               "include_dashboard": False}
    if address == "local":
        cpus = os.cpu_count() if n_jobs in (None, -1) else max(1, n_jobs)
        ray.init(num_cpus=cpus, **options)
    else:
        _probe(address)
        _init_within(ray, address, options)
    _state.update(address=address, started_here=True)
    return ray


def _init_within(ray, address: str, options: dict) -> None:
    """``ray.init`` can wait minutes on a half-open address; give it a deadline."""
    outcome: dict[str, BaseException | None] = {"error": None}

    def connect() -> None:
        try:
            ray.init(address=address, **options)
        except BaseException as exc:  # handed back to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise LoopmlError(f"the Ray cluster at {address} did not answer within "
                          f"{CONNECT_TIMEOUT_S:.0f} s",
                          hint="check the address and that the cluster is up")
    if outcome["error"] is not None:
        raise LoopmlError(f"cannot join the Ray cluster at {address}: "
                          f"{str(outcome['error']).splitlines()[0]}") from None


def shutdown() -> None:
    """Stop the Ray connection (and a local instance) this process started."""
    if _state["started_here"]:
        import ray

        ray.shutdown()
        _state.update(address=None, started_here=False)
