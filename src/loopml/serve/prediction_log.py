"""The prediction log: every answered row, and the true labels that come back later.

Two tables, through SQLAlchemy Core, in any database SQLAlchemy reaches
(SQLite in WAL mode by default, PostgreSQL by URL):

- ``predictions``: request_id (primary key), time (UTC), model_version, inputs
  (JSON, the row as received), prediction (JSON), probabilities (JSON, class ->
  probability; null for regression), latency_ms (arrival to prediction);
- ``feedback``: request_id, label (JSON), time. A label may come any time after
  its prediction, more than once (the latest counts); it joins by request_id.

Why a background writer: one INSERT per request would put a database round
trip (and, for SQLite, a write lock) on the request path. :meth:`record` only
appends to an in-memory queue; one thread writes what is queued in a single
transaction every ``flush_seconds`` or as soon as ``flush_rows`` rows wait.
The queue is bounded (``max_pending_rows``): when the database falls behind,
``record`` waits, which slows answers instead of dropping rows or growing
memory without end. :meth:`close` writes everything before it returns, so a
clean shutdown (SIGTERM, Ctrl-C) loses nothing; a crash (SIGKILL, power loss)
loses at most the rows of the last ``flush_seconds`` (1 s by default).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from loopml.scope import mask_url

logger = logging.getLogger("loopml.serve")

METADATA = sa.MetaData()
PREDICTIONS = sa.Table(
    "predictions", METADATA,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("model_version", sa.String(128), nullable=False, index=True),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("prediction", sa.JSON),
    sa.Column("probabilities", sa.JSON),
    sa.Column("latency_ms", sa.Float, nullable=False),
)
FEEDBACK = sa.Table(
    "feedback", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("label", sa.JSON),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
)


def open_engine(url: str) -> sa.Engine:
    """An engine for ``url``; a SQLite file gets WAL mode, a busy timeout, and its folder."""
    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _wal(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers (monitor) never block the writer
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class PredictionLog:
    """Rows queued by :meth:`record` and written in batches by one background thread."""

    def __init__(self, url: str, *, flush_seconds: float = 1.0, flush_rows: int = 1000,
                 max_pending_rows: int = 100_000) -> None:
        self.url = url
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_pending_rows = max_pending_rows
        self._cond = threading.Condition()
        self._pending: list[dict[str, Any]] = []
        self._pending_ids: set[str] = set()
        self._recorded = 0
        self._written = 0
        self._flush_wanted = False
        self._closed = True
        self._engine: sa.Engine | None = None
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Rows recorded and not yet in the database."""
        return len(self._pending_ids)

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            raise RuntimeError("the prediction log is not open: call open() first")
        return self._engine

    def open(self) -> PredictionLog:
        """Create the tables if needed and start the writer."""
        self._engine = open_engine(self.url)
        METADATA.create_all(self._engine)
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="loopml-prediction-log",
                                        daemon=True)
        self._thread.start()
        return self

    def record(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Queue rows (the columns of ``predictions``); waits while the queue is full."""
        rows = [dict(r) for r in rows]
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self.depth < self.max_pending_rows)
            if self._closed:
                raise RuntimeError("the prediction log is closed")
            self._pending.extend(rows)
            self._pending_ids.update(r["request_id"] for r in rows)
            self._recorded += len(rows)
            if len(self._pending) >= self.flush_rows:
                self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Write every row recorded so far now; False if that took over ``timeout`` seconds."""
        with self._cond:
            target = self._recorded
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._written >= target, timeout=timeout)

    def close(self) -> None:
        """Write everything still queued, stop the writer and release the database."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._engine is not None:
            self._engine.dispose()

    def _write_loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._flush_wanted
                                    or len(self._pending) >= self.flush_rows,
                                    timeout=self.flush_seconds)
                batch, self._pending = self._pending, []
                self._flush_wanted = False
                closing = self._closed
            if batch and not self._write(batch):
                failures += 1
                with self._cond:  # keep the rows, in order, for the next try
                    self._pending[:0] = batch
                if closing and failures >= 3:
                    logger.error("the prediction log lost %d rows: %s is not writable",
                                 len(self._pending), mask_url(self.url))
                    return
                time.sleep(min(self.flush_seconds, 1.0))
                continue
            failures = 0
            with self._cond:
                self._pending_ids.difference_update(r["request_id"] for r in batch)
                self._written += len(batch)
                self._cond.notify_all()
                if closing and not self._pending:
                    return

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        try:
            with self.engine.begin() as connection:
                connection.execute(PREDICTIONS.insert(), batch)
        except sa.exc.SQLAlchemyError as exc:
            logger.warning("the prediction log could not write %d rows (will retry): %s",
                           len(batch), str(exc).splitlines()[0])
            return False
        return True

    def knows(self, request_id: str) -> bool:
        """Whether a prediction has this id, written or still queued (blocking: a query)."""
        with self._cond:
            if request_id in self._pending_ids:
                return True
        query = sa.select(PREDICTIONS.c.request_id).where(PREDICTIONS.c.request_id == request_id)
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def add_feedback(self, request_id: str, label: Any) -> bool:
        """Store the true label of a prediction; False (nothing stored) for an unknown id."""
        if not self.knows(request_id):
            return False
        with self.engine.begin() as connection:
            connection.execute(FEEDBACK.insert(), {"request_id": request_id, "label": label,
                                                   "time": datetime.now(UTC)})
        return True

    def read(self) -> pd.DataFrame:
        """Every written prediction with its latest label (``label`` is None until one comes)."""
        latest = (sa.select(FEEDBACK.c.request_id, sa.func.max(FEEDBACK.c.id).label("id"))
                  .group_by(FEEDBACK.c.request_id).subquery())
        label = (sa.select(FEEDBACK.c.request_id, FEEDBACK.c.label, FEEDBACK.c.time)
                 .join(latest, FEEDBACK.c.id == latest.c.id).subquery())
        query = (sa.select(*PREDICTIONS.c, label.c.label, label.c.time.label("label_time"))
                 .select_from(PREDICTIONS.outerjoin(
                     label, PREDICTIONS.c.request_id == label.c.request_id))
                 .order_by(PREDICTIONS.c.time))
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        columns = [*PREDICTIONS.c.keys(), "label", "label_time"]
        frame = pd.DataFrame([dict(r) for r in rows], columns=columns)
        # labels as sent: a class 1 beside a row with no label yet must not read 1.0
        frame["label"] = pd.Series([r["label"] for r in rows], index=frame.index, dtype=object)
        return frame
