"""``loopml serve --ray``: the same app on N Ray Serve replicas, for more than one machine.

Each replica builds the app with :func:`~loopml.serve.app.create_app` in its own
process, so each has its own micro-batcher, model poll and prediction-log
writer, all started by the app's lifespan; stopping the server (SIGTERM,
Ctrl-C) runs every replica's lifespan shutdown, which writes its whole log.
The replicas share one log: SQLite (WAL, with a busy timeout) on one machine,
PostgreSQL (``--log-url``) when the replicas run on several.

On a remote cluster the replicas read the model folder and the alias file of
the project, and write the log URL, from their own node: put the project on a
shared filesystem and the log in PostgreSQL. The Ray glue itself is
:func:`loopml.parallel.serve_asgi`, which knows nothing of this app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from loopml.parallel import serve_asgi
from loopml.serve.app import create_app
from loopml.serve.live_model import Resolver
from loopml.serve.prediction_log import PredictionLog


def serve_replicas(resolve: Resolver, *, api_key: str, log_url: str, address: str,
                   replicas: int = 2, host: str = "127.0.0.1", port: int = 8000,
                   on_ready: Callable[[], None] | None = None,
                   stop: threading.Event | None = None, **options: Any) -> None:
    """Serve ``create_app(resolve, api_key=..., log_url=..., **options)`` from ``replicas``.

    ``resolve`` must pickle (it travels to every replica). The app is built
    once here first, so a model that does not load or a bad option raises
    :class:`~loopml.exceptions.LoopmlError` at the call, not in a replica's
    restart loop. The log's tables are made here too once the cluster answers,
    before the replicas could race to create them. Blocks until SIGTERM,
    Ctrl-C or ``stop``.
    """
    build = partial(create_app, resolve, api_key=api_key, log_url=log_url, **options)
    build()
    serve_asgi(build, address=address, replicas=replicas, host=host, port=port, name="loopml",
               setup=lambda: PredictionLog(log_url).open().close(), on_ready=on_ready,
               stop=stop)
