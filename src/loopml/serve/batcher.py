"""Micro-batching: concurrent requests share one model call.

A model's per-call overhead (building a frame, validating, the estimator's own
checks) is paid once per batch instead of once per request. Requests wait in a
queue; one worker takes the oldest one and whatever joins it within
``max_wait_ms`` of its arrival, up to ``max_batch`` rows (a request larger than
that is predicted alone), and runs the model in its own thread so the event
loop keeps accepting requests meanwhile. The rows are queued in the prediction
log in that thread, before any answer is sent, so every answered row is logged.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from loopml.models.packaged import ModelInputError, PackagedModel
from loopml.serve.live_model import LiveModel
from loopml.serve.prediction_log import PredictionLog

PROBA_PREFIX = "proba:"


@dataclass
class _Job:
    rows: list[dict[str, Any]]
    received: float  # time.perf_counter() when the request arrived
    future: asyncio.Future = field(repr=False)


@dataclass(frozen=True)
class Answer:
    """The model's answer to one request: one entry per row, in the request's order."""

    version: str
    request_ids: list[str]
    predictions: list[Any]
    probabilities: list[dict[str, float]] | None

    def rows(self) -> list[dict[str, Any]]:
        """One JSON object per row: request_id, prediction, probabilities."""
        probabilities = self.probabilities or [None] * len(self.predictions)
        return [{"request_id": rid, "prediction": pred, "probabilities": proba}
                for rid, pred, proba in zip(self.request_ids, self.predictions, probabilities,
                                            strict=True)]


class ServerClosingError(RuntimeError):
    """A request arrived after the server began to shut down."""


class MicroBatcher:
    """Gathers submitted rows into batches and answers each request from its batch."""

    def __init__(self, live: LiveModel, log: PredictionLog, *, max_batch: int = 64,
                 max_wait_ms: float = 5.0,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.live = live
        self.log = log
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self.waiting_rows = 0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._closing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="loopml-model")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Answer every request already submitted, then stop the worker."""
        self._closing = True
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, rows: list[dict[str, Any]], received: float) -> Answer:
        """Predict ``rows`` (already checked against the schema) in the next batch."""
        if self._closing or self._task is None:
            raise ServerClosingError("the server is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(rows, received, future))
        self.waiting_rows += len(rows)
        self._arrived.set()
        if self.waiting_rows >= self.max_batch:
            self._full.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._jobs:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            wait = self._jobs[0].received + self.max_wait - time.perf_counter()
            if wait > 0 and self.waiting_rows < self.max_batch and not self._closing:
                self._full.clear()
                with suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._full.wait()
            await self._answer(self._take())

    def _take(self) -> list[_Job]:
        jobs = [self._jobs.popleft()]
        size = len(jobs[0].rows)
        while self._jobs and size + len(self._jobs[0].rows) <= self.max_batch:
            jobs.append(self._jobs.popleft())
            size += len(jobs[-1].rows)
        self.waiting_rows -= size
        return jobs

    async def _answer(self, jobs: list[_Job]) -> None:
        version, model = self.live.model_pair  # read once: the whole batch sees one model
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._predict, model, version,
                                                 jobs)
        except Exception as exc:  # a bug in a model: fail this batch, keep serving
            results = [exc] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            if job.future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _predict(self, model: PackagedModel, version: str,
                 jobs: list[_Job]) -> list[Answer | Exception]:
        """One model call for all jobs; if one job's values are refused, each job alone."""
        import pandas as pd

        rows = [row for job in jobs for row in job.rows]
        try:
            out = model.predict(pd.DataFrame.from_records(rows, columns=model.schema.names))
        except (ValueError, ArithmeticError) as exc:  # ModelInputError is a ValueError
            # Values the model cannot compute with (a finite 1e308 the scaler turns into
            # infinity): only the request that sent them fails, and it fails as a 422.
            if len(jobs) > 1:
                return [self._predict(model, version, [job])[0] for job in jobs]
            if isinstance(exc, ModelInputError):
                return [exc]
            return [ModelInputError(f"the model cannot predict from these values: {exc}",
                                    hint="send values in the range the model was trained on")]
        if self.on_batch is not None:
            self.on_batch(len(rows))
        done = time.perf_counter()
        now = datetime.now(UTC)
        predictions = [_plain(v) for v in out["prediction"].tolist()]
        proba_columns = [c for c in out.columns if str(c).startswith(PROBA_PREFIX)]
        probabilities = None
        if proba_columns:
            classes = [str(c)[len(PROBA_PREFIX):] for c in proba_columns]
            probabilities = [dict(zip(classes, p, strict=True))
                             for p in out[proba_columns].to_numpy(dtype=float).tolist()]
        answers, log_rows, start = [], [], 0
        for job in jobs:
            end = start + len(job.rows)
            ids = [uuid.uuid4().hex for _ in job.rows]
            answer = Answer(version, ids, predictions[start:end],
                            None if probabilities is None else probabilities[start:end])
            latency_ms = (done - job.received) * 1000
            log_rows += [{"request_id": r["request_id"], "time": now, "model_version": version,
                          "inputs": inputs, "prediction": r["prediction"],
                          "probabilities": r["probabilities"], "latency_ms": latency_ms}
                         for r, inputs in zip(answer.rows(), job.rows, strict=True)]
            answers.append(answer)
            start = end
        self.log.record(log_rows)
        return answers


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value
