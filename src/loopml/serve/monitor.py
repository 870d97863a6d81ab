"""The monitor: logged production rows against the reference of deploy, window by window.

For every window of the prediction log (``window``: N rows, or a time span
such as ``1h``; newest last) it tests

- each input column for drift (:mod:`loopml.serve.drift`: numeric
  Wasserstein / PSI / chi-squared, categorical Jensen-Shannon / chi-squared),
- each text column and the images in a backbone's embedding space
  (:mod:`loopml.serve.embedding_drift`: a classifier two-sample test, effect
  cross-validated AUC - 0.5, p-value Mann-Whitney; a check of kind
  ``feature`` named after the column, or ``images`` for a pixel table),
- the predictions for drift (class shares against the model's on val),
- performance where feedback labels came back (the scope's metric against
  the deployed run's val figure; a one-sided test of the per-row errors),
- every stored group applied to the production rows: whether its share grew
  (against train) and whether its error rate grew (against val).

False alarms: every test of one call (features x windows, predictions,
performance, groups) is one family; its p-values are adjusted by
Benjamini-Hochberg, and a test alarms only when its q-value is at most the
scope's ``monitor.fdr`` AND its effect reaches the floor for its kind (so a
tiny shift on a million rows, "significant" as it is, stays quiet).

The engine takes plain inputs (the log as a frame, the reference dict, the
val rows, group masks), so the autopilot, a server or a test can call it
without a project folder; :meth:`loopml.project.Project.monitor` gathers them.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from loopml.exceptions import LoopmlError
from loopml.jsonable import json_ready
from loopml.metrics import METRICS
from loopml.scope import MonitorSpec
from loopml.serve.drift import (
    Drift,
    benjamini_hochberg,
    categorical_drift,
    numeric_drift,
    proportion_increase,
)
from loopml.serve.embedding_drift import EmbeddingReference, embedding_drift

ALERT_EXIT_CODE = 3  # `loopml monitor` exits 3 when an alarm rings; 2 stays "bad input"
FDR_METHOD = "Benjamini-Hochberg"
_ROWS = re.compile(r"^\s*(\d+)\s*(?:rows?)?\s*$")
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class WindowSpec:
    """How the log is cut: ``rows`` per window, or ``seconds`` per window, or one window."""

    rows: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int | None) -> WindowSpec:
        """'500' (rows), '30m' / '1h' / '2d' (a time span), or None (every row, one window)."""
        if text is None or (isinstance(text, str) and not text.strip()):
            return cls()
        match = _ROWS.match(str(text))
        if match and int(match.group(1)) > 0:
            return cls(rows=int(match.group(1)))
        match = _SPAN.match(str(text))
        if match and float(match.group(1)) > 0:
            return cls(seconds=float(match.group(1)) * _SECONDS[match.group(2)])
        raise LoopmlError(f"window {str(text)[:40]!r} is neither a number of rows nor a time "
                          "span", hint="write e.g. --window 500 (rows) or --window 1h "
                                       "(units s, m, h, d)")

    def describe(self) -> str:
        if self.rows:
            return f"{self.rows} rows"
        return f"{self.seconds:g} s" if self.seconds else "every row"


@dataclass(frozen=True)
class GroupReference:
    """A stored group as the monitor needs it: its baselines and its mask over the log rows."""

    key: str
    name: str
    train_members: int
    train_rows: int
    val_errors: int
    val_members: int
    members: np.ndarray  # bool, one per logged row


@dataclass(frozen=True)
class Window:
    index: int  # 0 is the oldest
    start: str
    end: str
    rows: int
    labelled: int
    tested: bool


@dataclass
class Check:
    """One test of one window: its effect against its floor, its p- and q-value, the verdict."""

    window: int
    kind: str  # feature | prediction | performance | group share | group error
    name: str
    statistic: str
    distance: float  # the effect size, in ``statistic``'s unit
    floor: float
    p: float
    rows: int
    value: float | None = None  # performance, groups: the window's figure ...
    reference: float | None = None  # ... and the one it is compared with
    psi: float | None = None
    q: float = float("nan")
    alarm: bool = False


@dataclass
class MonitorResult:
    """What ``loopml monitor`` found; ``alarms`` are the checks that ring."""

    version: str
    run_id: str
    window: str
    fdr: float
    windows: list[Window]
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    webhook: dict[str, Any] | None = None
    method: str = FDR_METHOD
    report_path: Path | None = None

    @property
    def alarms(self) -> list[Check]:
        return [c for c in self.checks if c.alarm]

    @property
    def alert(self) -> bool:
        return bool(self.alarms)

    def drifted(self, kind: str = "feature") -> list[str]:
        """Names of ``kind`` that alarm in any window, in first-alarm order."""
        return list(dict.fromkeys(c.name for c in self.alarms if c.kind == kind))

    def to_dict(self) -> dict[str, Any]:
        return json_ready({
            "version": self.version, "run_id": self.run_id, "window": self.window,
            "method": f"{self.method} at FDR {self.fdr:g} over all {len(self.checks)} tests, "
                      "plus an effect floor per kind", "fdr": self.fdr, "alert": self.alert,
            "alarms": [asdict(c) for c in self.alarms],
            "windows": [asdict(w) for w in self.windows],
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes, "webhook": self.webhook,
            "report": str(self.report_path) if self.report_path else None})


def monitor_log(log: pd.DataFrame, reference: Mapping[str, Any], *, settings: MonitorSpec,
                window: WindowSpec, task: str, metric: str, version: str = "",
                val: pd.DataFrame | None = None,
                groups: Sequence[GroupReference] = (),
                embeddings: Sequence[EmbeddingReference] = ()) -> MonitorResult:
    """Test every window of ``log`` (PredictionLog.read()'s columns, oldest first).

    ``inputs`` may be a column of dicts (as logged) or the input columns may
    be in ``log`` itself (a frame of features, plus ``prediction`` / ``label``
    when known); ``embeddings`` the reference vectors of text and image
    inputs (:func:`loopml.serve.embedding_drift.load_reference_embeddings`);
    ``val`` holds the deployed run's val rows (``y_true``,
    ``y_pred``) for the performance baseline.
    """
    if log.empty:
        raise LoopmlError("the prediction log holds no rows to monitor",
                          hint="serve the champion ('loopml serve') and send it requests")
    frame = logged_inputs(log)
    bounds, notes = _windows(log, window, settings.min_rows)
    checks: list[Check] = []
    windows: list[Window] = []
    labels = log["label"] if "label" in log else pd.Series([None] * len(log), index=log.index)
    for index, (lo, hi, tested) in enumerate(bounds):
        part = slice(lo, hi)
        labelled = int(labels.iloc[part].notna().sum())
        times = log["time"].iloc[part] if "time" in log else None
        windows.append(Window(index, str(times.iloc[0]) if times is not None else str(lo),
                              str(times.iloc[-1]) if times is not None else str(hi - 1),
                              hi - lo, labelled, tested))
        if not tested:
            continue
        checks += _feature_checks(frame.iloc[part], reference, settings, index)
        checks += [_check(embedding_drift(found, frame.iloc[part], seed=index), index,
                          "feature", found.input.name, settings.embedding_floor)
                   for found in embeddings]
        if "prediction" in log and reference.get("val_predictions"):
            checks.append(_prediction_check(log["prediction"].iloc[part],
                                            reference["val_predictions"], settings, index))
        if val is not None and labelled:
            check = _performance_check(log.iloc[part], val, settings, task, metric, index)
            if check is not None:
                checks.append(check)
        for group in groups:
            checks += _group_checks(group, log.iloc[part], part, settings, task, index)
    tested = {found.input.name for found in embeddings}
    skipped = [name for name, col in reference.get("columns", {}).items()
               if col.get("kind") not in ("numeric", "categorical") and name not in tested]
    if skipped:
        notes.append(f"not tested (no reference summary for their kind): {', '.join(skipped)}")
    _decide(checks, settings)
    return MonitorResult(version=version, run_id=str(reference.get("run_id", "")),
                         window=window.describe(), fdr=settings.fdr, windows=windows,
                         checks=checks, notes=notes)


def logged_inputs(log: pd.DataFrame) -> pd.DataFrame:
    """The input columns of every logged row, one column per feature, indexed like ``log``.

    ``inputs`` holds each row as logged: a dict (read back through the log's
    JSON column) or its JSON text; a frame without it is taken as the inputs.
    """
    if "inputs" not in log:
        return log
    return pd.DataFrame.from_records([r if isinstance(r, Mapping) else json.loads(r)
                                      for r in log["inputs"]], index=log.index)


def _windows(log: pd.DataFrame, spec: WindowSpec, min_rows: int
             ) -> tuple[list[tuple[int, int, bool]], list[str]]:
    """(first row, end row, tested) per window, oldest first; short windows are not tested."""
    n = len(log)
    if spec.rows:
        ends = list(range(n, 0, -spec.rows))[::-1]
        bounds = [(max(end - spec.rows, 0), end) for end in ends]
    elif spec.seconds:
        times = pd.to_datetime(log["time"], utc=True)
        age = (times.iloc[-1] - times).dt.total_seconds().to_numpy()
        bucket = np.floor(age / spec.seconds).astype(int)
        changes = np.flatnonzero(np.diff(bucket)) + 1
        starts = np.concatenate([[0], changes])
        bounds = list(zip(starts.tolist(), [*changes.tolist(), n], strict=True))
    else:
        bounds = [(0, n)]
    short = sum(1 for lo, hi in bounds if hi - lo < min_rows)
    notes = [f"{short} window(s) under monitor.min_rows = {min_rows} rows were not tested"
             ] if short else []
    return [(lo, hi, hi - lo >= min_rows) for lo, hi in bounds], notes


def _feature_checks(frame: pd.DataFrame, reference: Mapping[str, Any], settings: MonitorSpec,
                    window: int) -> list[Check]:
    out = []
    for name, summary in reference.get("columns", {}).items():
        kind = summary.get("kind")
        if kind not in ("numeric", "categorical"):
            continue
        values = frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
        if kind == "numeric":
            drift = numeric_drift(summary, pd.to_numeric(values, errors="coerce")
                                  .to_numpy(dtype="float64", na_value=np.nan))
            floor = settings.numeric_floor
        else:
            drift = categorical_drift(summary, values.tolist())
            floor = settings.categorical_floor
        out.append(_check(drift, window, "feature", name, floor))
    return out


def _check(drift: Drift, window: int, kind: str, name: str, floor: float) -> Check:
    return Check(window=window, kind=kind, name=name, statistic=drift.statistic,
                 distance=drift.distance, floor=floor, p=drift.p, rows=drift.rows, psi=drift.psi)


def _prediction_check(predictions: pd.Series, summary: Mapping[str, Any], settings: MonitorSpec,
                      window: int) -> Check:
    if summary.get("kind") == "numeric":
        drift = numeric_drift(summary, pd.to_numeric(predictions, errors="coerce")
                              .to_numpy(dtype="float64", na_value=np.nan))
        return _check(drift, window, "prediction", "prediction", settings.numeric_floor)
    drift = categorical_drift(summary, [as_class(v) for v in predictions])
    return _check(drift, window, "prediction", "prediction", settings.categorical_floor)


def as_class(value: Any) -> Any:
    """A label as the reference writes it: 3, 3.0 and "3" are one class."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None if value is None else str(value)


def row_losses(task: str, y_true: Sequence[Any], y_pred: Sequence[Any]) -> np.ndarray:
    """Per-row loss: 0/1 error (classification), absolute error (regression)."""
    if task == "classification":
        return np.array([as_class(t) != as_class(p) for t, p in zip(y_true, y_pred,
                                                                       strict=True)], float)
    return np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float))


def label_score(task: str, metric: str, y_true: Sequence[Any], y_pred: Sequence[Any]
           ) -> tuple[str, float, bool]:
    """(metric, value, greater is better): the scope's metric if it needs no probabilities."""
    chosen = METRICS.get(metric)
    if chosen is None or chosen.needs_proba:
        chosen = METRICS["accuracy" if task == "classification" else "rmse"]
    if task == "classification":
        y_true, y_pred = [as_class(v) for v in y_true], [as_class(v) for v in y_pred]
    else:
        y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    return chosen.name, float(chosen.compute(y_true, y_pred)), chosen.greater_is_better


def _performance_check(rows: pd.DataFrame, val: pd.DataFrame, settings: MonitorSpec, task: str,
                       metric: str, window: int) -> Check | None:
    labelled = rows[rows["label"].notna()]
    if len(labelled) < settings.min_labelled or val.empty:
        return None
    name, value, greater = label_score(task, metric, labelled["label"], labelled["prediction"])
    _, base, _ = label_score(task, metric, val["y_true"], val["y_pred"])
    losses = row_losses(task, labelled["label"].tolist(), labelled["prediction"].tolist())
    base_losses = row_losses(task, val["y_true"].tolist(), val["y_pred"].tolist())
    if task == "classification":
        p = proportion_increase(int(losses.sum()), len(losses), int(base_losses.sum()),
                                len(base_losses))
    else:
        p = float(stats.mannwhitneyu(losses, base_losses, alternative="greater").pvalue)
    return Check(window=window, kind="performance", name=name, statistic=f"{name} drop",
                 distance=(base - value) if greater else (value - base),
                 floor=settings.performance_floor, p=p, rows=len(labelled), value=value,
                 reference=base)


def _group_checks(group: GroupReference, rows: pd.DataFrame, part: slice, settings: MonitorSpec,
                  task: str, window: int) -> list[Check]:
    members = group.members[part]
    n, inside = len(members), int(members.sum())
    base = group.train_members / group.train_rows if group.train_rows else 0.0
    out = [Check(window=window, kind="group share", name=group.key, statistic="share growth",
                 distance=inside / n - base if n else 0.0, floor=settings.group_share_floor,
                 p=proportion_increase(inside, n, group.train_members, group.train_rows),
                 rows=inside, value=inside / n if n else None, reference=base)]
    if task != "classification" or "label" not in rows:
        return out
    labelled = rows[members & rows["label"].notna().to_numpy()]
    if len(labelled) < settings.min_labelled or not group.val_members:
        return out
    errors = row_losses(task, labelled["label"].tolist(), labelled["prediction"].tolist())
    base_rate = group.val_errors / group.val_members
    out.append(Check(window=window, kind="group error", name=group.key,
                     statistic="error rate growth", distance=float(errors.mean()) - base_rate,
                     floor=settings.performance_floor,
                     p=proportion_increase(int(errors.sum()), len(errors), group.val_errors,
                                           group.val_members),
                     rows=len(labelled), value=float(errors.mean()), reference=base_rate))
    return out


def _decide(checks: list[Check], settings: MonitorSpec) -> None:
    """q-values over the whole family, then alarm = q <= fdr and effect >= floor."""
    q = benjamini_hochberg([c.p if np.isfinite(c.p) else 1.0 for c in checks])
    for check, value in zip(checks, q, strict=True):
        check.q = float(value)
        check.alarm = bool(value <= settings.fdr and np.isfinite(check.distance)
                           and check.distance >= check.floor)


def post_webhook(url: str, document: Mapping[str, Any], *, timeout: float = 10.0
                 ) -> dict[str, Any]:
    """POST ``document`` as JSON to ``url``; a failure is reported, never raised.

    An alerting endpoint that is down must not hide the alarm itself (the
    exit code, the report), so the caller shows the returned error as a
    warning.
    """
    body = json.dumps(json_ready(dict(document))).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "loopml-monitor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return {"url": url, "status": response.status}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return {"url": url, "error": f"{type(exc).__name__}: {reason}"}
