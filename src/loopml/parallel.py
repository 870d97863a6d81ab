"""The one place that runs work in parallel.

Callers hand over a function and its tasks; each task must be picklable (give
it a ``clone`` of an estimator, never a shared fitted one). The same sweep runs

- in this process (``n_jobs`` None or 1),
- on local cores through joblib (``n_jobs`` 2, -1, ...), or
- on Ray (``ray_address``): ``"local"`` starts a Ray instance inside this
  process; ``"host:port"``, ``"ray://host:port"`` or ``"auto"`` joins a running
  cluster. Every node of that cluster must have loopml (same version) and its
  dependencies installed, because tasks name loopml functions by reference.

Ray is imported only when an address is given, so ``import loopml`` stays fast
and works without it. One Ray connection lives per process: the instance we
start or join is reused by later calls (starting Ray costs seconds) until
:func:`shutdown`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from joblib import Parallel, delayed, parallel_config

from loopml.exceptions import LoopmlError

LOCAL = "local"
PROBE_TIMEOUT_S = 5.0  # TCP connect to the cluster's port before handing it to Ray
CONNECT_TIMEOUT_S = 20.0  # ray.init on a port that answers but never speaks Ray
PARENT_POLL_S = 1.0  # how often a worker checks that the loopml process is still there
_HINT = "start it with `ray start --head`, or drop --ray / ray_address to run on local cores"
# Recent Ray starts clusters with token auth; a driver given an explicit address sends
# its token only under RAY_AUTH_MODE=token, else ray.init retries until it times out.
_AUTH_HINT = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token "
              "(and RAY_AUTH_TOKEN, or the token in ~/.ray/auth_token)")
_RAY_OPTIONS = {"log_to_driver": False, "logging_level": logging.ERROR}

_DONE = object()  # end of the task iterator
# The address we started or joined ("local" for our own instance); None: we hold no Ray.
_session: dict[str, str | None] = {"address": None}


def parallel_map(func: Callable[[Any], Any], tasks: Iterable[Any], *, n_jobs: int | None = None,
                 ray_address: str | None = None) -> Iterator[Any]:
    """Yield ``func(task)`` for every task, in order, running up to ``n_jobs`` at once.

    Results stream: each is yielded as soon as it and all earlier ones are done,
    so callers can advance a progress bar per result.

    ``n_jobs=None`` or 1 runs in this process (no pickling, progress bars stay
    visible); -1 uses every core. With ``ray_address``, ``n_jobs`` sets the CPUs
    of a ``"local"`` instance (default: every core) and, on a cluster, caps the
    tasks in flight (default: no cap, the cluster schedules them all).

    A bad or dead ``ray_address`` raises :class:`LoopmlError` here, at the call,
    within ``PROBE_TIMEOUT_S + CONNECT_TIMEOUT_S`` seconds; it never hangs.

    >>> list(parallel_map(abs, [-1, 2, -3], n_jobs=2))
    [1, 2, 3]
    """
    tasks = list(tasks)
    if ray_address is not None and tasks:
        return _ray_map(func, tasks, n_jobs=n_jobs, address=ray_address)
    if n_jobs in (None, 1) or len(tasks) <= 1:
        return (func(task) for task in tasks)
    return _joblib_map(func, tasks, n_jobs)


def _joblib_map(func: Callable[[Any], Any], tasks: list[Any], n_jobs: int) -> Iterator[Any]:
    # One thread per worker: LightGBM and torch otherwise each take every core, and
    # k workers x k threads on k cores spin against each other (5x slower, measured).
    # Workers watch their parent: a SIGKILLed loopml must not leave them running.
    with parallel_config(backend="loky", inner_max_num_threads=1,
                         initializer=exit_with_parent, initargs=(os.getpid(),)):
        yield from Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(func)(t) for t in tasks)


def exit_with_parent(parent: int, *, every_s: float = PARENT_POLL_S) -> None:
    """Run in each worker: exit as soon as ``parent`` (the loopml process) is gone.

    A worker busy in a fit never reads its task queue, so it would not notice
    a killed parent until the fit ends, and an idle one waits minutes for its
    idle timeout; a daemon thread polling the parent pid ends it within
    ``every_s`` seconds instead (``os.getppid`` changes when the parent dies).
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    if os.getppid() != parent:  # it died while this worker started
        os._exit(1)
    threading.Thread(target=watch, name="loopml-exit-with-parent", daemon=True).start()


def shutdown() -> None:
    """Stop the Ray instance we started (or leave the cluster we joined).

    A Ray connection that this module did not make is left alone.
    """
    if _session["address"] is None:
        return
    _session["address"] = None
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def _ray_map(func: Callable[[Any], Any], tasks: list[Any], *, n_jobs: int | None,
             address: str) -> Iterator[Any]:
    """Connect now (so address errors raise at the call), then stream results."""
    ray = _import_ray()
    _connect(ray, address, n_jobs)
    window = n_jobs if n_jobs is not None and n_jobs > 0 else len(tasks)
    # The function goes to the object store once: closures often capture the
    # whole dataset, and every task then reads that one copy.
    return _ray_results(ray, ray.put(func), tasks, window)


def _ray_results(ray: ModuleType, func_ref: Any, tasks: list[Any], window: int
                 ) -> Iterator[Any]:
    """Keep up to ``window`` tasks in flight; yield their results in task order."""
    call = ray.remote(_call)
    todo, pending = iter(tasks), deque()
    try:
        while True:
            while len(pending) < window and (task := next(todo, _DONE)) is not _DONE:
                pending.append(call.remote(func_ref, task))
            if not pending:
                return
            try:
                yield ray.get(pending.popleft())
            except ray.exceptions.RayTaskError as error:
                # Re-raise what the task raised, as joblib does, so a LoopmlError stays one.
                raise (error.cause or error) from error
    finally:
        for ref in pending:  # the caller stopped early, or a task failed
            ray.cancel(ref)


def _call(func: Callable[[Any], Any], task: Any) -> Any:
    """The Ray task: ``func`` arrives resolved from the object store."""
    return func(task)


def _import_ray() -> ModuleType:
    if importlib.util.find_spec("ray") is None:
        raise LoopmlError("Running on Ray needs the ray package, which is not installed.",
                          hint="pip install 'loopml[ray]', or drop --ray / ray_address "
                               "to run on local cores")
    import ray

    return ray


def _connect(ray: ModuleType, address: str, n_jobs: int | None) -> None:
    """Start or join Ray once per process; reuse the connection when it matches."""
    if ray.is_initialized():
        if _session["address"] in (address, None):
            return  # ours for this address, or one the caller made with ray.init
        shutdown()
    if address == LOCAL:
        ray.init(address=LOCAL, num_cpus=_local_cpus(n_jobs), include_dashboard=False,
                 runtime_env=_same_import_path(), **_RAY_OPTIONS)
    else:
        _probe(address)
        _init_within(ray, address, CONNECT_TIMEOUT_S)
    _session["address"] = address


def _local_cpus(n_jobs: int | None) -> int:
    """joblib's meaning of ``n_jobs``: None or -1 every core, -2 all but one, ..."""
    cores = os.cpu_count() or 1
    if n_jobs is None:
        return cores
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def _same_import_path() -> dict[str, Any]:
    """Local workers import what this process imports (as loky's do): its sys.path."""
    paths = [os.path.abspath(p or os.curdir) for p in sys.path]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def _probe(address: str) -> None:
    """Fail fast when nothing listens at the cluster's port: ray.init would wait minutes."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise LoopmlError(f"No Ray cluster answers at {address} ({host}:{port}: {error}).",
                          hint=_HINT) from error


def _host_port(address: str) -> tuple[str, int]:
    """Where the cluster listens: ``ray://`` is Ray Client, ``auto`` the latest ``ray start``."""
    target = address
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:
            raise LoopmlError(f"Joining {address} uses Ray Client, which is not installed.",
                              hint="pip install 'ray[client]', or give the cluster as host:port")
        target = address.removeprefix("ray://")
    elif address == "auto":
        target = _find_running_cluster(address)
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise LoopmlError(f"Ray address {address!r} is not host:port.",
                          hint="give 'local', 'auto', 'host:port' or 'ray://host:port'")
    return host.strip("[]"), int(port)


def _find_running_cluster(address: str) -> str:
    """Resolve ``auto`` as Ray does (RAY_ADDRESS, then the latest local ``ray start``)."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        found = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        raise LoopmlError(f"No running Ray cluster found for ray_address={address!r}.",
                          hint=_HINT) from error
    if found is None:
        raise LoopmlError(f"No running Ray cluster found for ray_address={address!r}.",
                          hint=_HINT)
    return found.removeprefix("ray://")


def _init_within(ray: ModuleType, address: str, timeout_s: float) -> None:
    """ray.init in a daemon thread, so a port that answers but is not Ray cannot hang us.

    After a timeout that thread may stay blocked in ray.init until Ray gives up;
    it holds no lock of ours and dies with the process.
    """
    outcome: dict[str, BaseException | None] = {}

    def join() -> None:
        try:
            ray.init(address=address, **_RAY_OPTIONS)
            outcome["error"] = None
        except Exception as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=join, name="loopml-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "error" not in outcome:
        raise LoopmlError(f"The Ray cluster at {address} did not answer within "
                          f"{timeout_s:.0f} s.", hint=_HINT + _AUTH_HINT)
    if outcome["error"] is not None:
        raise LoopmlError(f"Could not join the Ray cluster at {address}: {outcome['error']}",
                          hint=_HINT) from outcome["error"]


REPLICA_HEADER = "x-replica"  # which replica answered (serve_asgi adds it to every response)
REPLICA_CONCURRENCY = 512  # requests in flight per replica: room for an app that batches them


def serve_asgi(factory: Callable[[], Any], *, address: str, replicas: int = 2,
               host: str = "127.0.0.1", port: int = 8000, name: str = "app",
               setup: Callable[[], None] | None = None,
               on_ready: Callable[[], None] | None = None,
               stop: threading.Event | None = None) -> None:
    """Run the ASGI app ``factory()`` builds on ``replicas`` Ray Serve replicas until stopped.

    Each replica calls ``factory`` in its own process (so it must pickle, and
    whatever it reads must be reachable from every node of the cluster), runs
    the app's lifespan startup, and answers behind Ray Serve's HTTP proxy on
    ``host:port``; every response names its replica in the ``x-replica``
    header. ``address`` is as for :func:`parallel_map`; a ``"local"`` instance
    gets a CPU per replica (at least every core). ``setup`` runs here once the
    cluster answers, before any replica starts: make what the replicas share
    there, so a bad address leaves nothing behind and replicas do not race.

    Blocks until SIGTERM or Ctrl-C (in the main thread) or until ``stop`` is
    set, then deletes the application: each replica finishes its requests and
    runs the app's lifespan shutdown before it exits. ``on_ready`` is called
    once every replica answers.
    """
    if replicas < 1:
        raise LoopmlError(f"replicas must be at least 1, not {replicas}",
                          hint="pass --replicas 1 or more")
    ray = _import_ray()
    serve = _import_serve()
    if address == LOCAL:
        _check_port_free(host, port)
    _connect(ray, address, max(replicas, os.cpu_count() or 1))
    if setup is not None:
        setup()
    stop = stop or threading.Event()
    with _signals_do(lambda *_: stop.set()):
        try:
            _deploy(serve, factory, replicas=replicas, host=host, port=port, name=name)
            if on_ready is not None:
                on_ready()
            while not stop.wait(0.5):
                pass
        finally:
            with _signals_do(signal.SIG_IGN):  # a 2nd Ctrl-C must not cut the flush short
                serve.delete(name)  # returns once every replica has stopped
                if address == LOCAL:
                    shutdown()  # Serve's proxy and controller end with our instance


def _deploy(serve: ModuleType, factory: Callable[[], Any], *, replicas: int, host: str,
            port: int, name: str) -> None:
    """Start Serve's proxy on host:port and wait until every replica has started its app."""
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        serve.ingress(_replica_app(factory))(), name=name, num_replicas=replicas,
        ray_actor_options={"num_cpus": 1}, max_ongoing_requests=REPLICA_CONCURRENCY,
        max_queued_requests=-1)
    try:
        serve.run(deployment.bind(), name=name, route_prefix="/")
    except RuntimeError as error:  # Serve's "Deploying app ... failed" with the replica's trace
        raise LoopmlError(f"the replicas of {name!r} did not start: {error}",
                          hint="run it without --ray to see the error directly") from error


def _replica_app(factory: Callable[[], Any]) -> Callable[[], Any]:
    """What each replica runs at its start, in its own process: build the app, name itself."""
    def build() -> Any:
        from ray import serve

        app = factory()
        replica = serve.get_replica_context().replica_id.unique_id
        if hasattr(app, "add_middleware"):  # Starlette: Serve still sees the app's handlers
            app.add_middleware(_ReplicaHeader, replica=replica)
            return app
        return _ReplicaHeader(app, replica=replica)

    return build


class _ReplicaHeader:
    """ASGI middleware naming the replica that answered, so a client can tell them apart."""

    def __init__(self, app: Any, *, replica: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.encode(), replica.encode())

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_named)


def _import_serve() -> ModuleType:
    try:
        from ray import serve
    except ImportError as error:  # ray without its serve extra (grpc, starlette, ...)
        raise LoopmlError(f"Serving on Ray needs Ray Serve, which is not installed ({error}).",
                          hint="pip install 'loopml[ray]' (it brings ray[serve]), or drop "
                               "--ray to serve from this process") from error
    return serve


def _check_port_free(host: str, port: int) -> None:
    """A busy port would leave Serve's proxy retrying in the background; say so at once."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise LoopmlError(f"cannot listen on {host}:{port}: {error.strerror}",
                              hint="pick another --port, or stop what listens there") from error


@contextlib.contextmanager
def _signals_do(handler: Any) -> Iterator[None]:
    """SIGTERM and Ctrl-C call ``handler`` meanwhile (only the main thread may handle signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler_before in before.items():
            signal.signal(sig, handler_before)
