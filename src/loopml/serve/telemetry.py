"""What ``GET /metrics`` reports, in the Prometheus text format.

Each app has its own ``CollectorRegistry`` rather than prometheus_client's
global one, so two apps in one process (tests, a swap rehearsal) never share
or collide on counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _batch_buckets(max_batch: int) -> tuple[float, ...]:
    edges, size = [], 1
    while size < max_batch:
        edges.append(float(size))
        size *= 2
    return (*edges, float(max_batch))


class ServeMetrics:
    """The counters, histograms and gauges of one app, in one registry."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, *, max_batch: int, predict_depth: Callable[[], float],
                 log_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("loopml_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("loopml_request_latency_seconds",
                                 "time from request to response, by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("loopml_batch_rows", "rows per model call",
                                    buckets=_batch_buckets(max_batch), registry=self.registry)
        self.predicted_rows = Counter("loopml_predicted_rows", "rows answered by the model",
                                      registry=self.registry)
        self.model_swaps = Counter("loopml_model_swaps", "times a new model version went live",
                                   registry=self.registry)
        self.reload_failures = Counter("loopml_model_reload_failures",
                                       "polls where the deployed model did not load",
                                       registry=self.registry)
        Gauge("loopml_predict_queue_depth", "rows waiting for the model",
              registry=self.registry).set_function(predict_depth)
        Gauge("loopml_log_queue_depth", "predicted rows not yet written to the log",
              registry=self.registry).set_function(log_depth)

    def observe_batch(self, rows: int) -> None:
        self.batch_rows.observe(rows)
        self.predicted_rows.inc(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: counts each HTTP request by its route template and status.

    Pure ASGI rather than ``BaseHTTPMiddleware``, which costs a task per request.
    The route is the template (``/predict``), never the raw path, so a scanner
    probing random paths adds one label value (``unmatched``), not thousands.
    """

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
