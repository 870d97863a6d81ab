"""The report of one iteration: what was trained, how well, and where it errs.

It is built only from what an iteration leaves behind (its tracked record and
its predictions on every split), so the report of any past run can be rebuilt
without its model. ``loopml run`` also passes the candidates it compared, and
the report then shows why this one was kept.

Example
-------
>>> build_iteration_report(  # doctest: +SKIP
...     ".loopml/reports/run-3.html", iteration=record, predictions=preds,
...     task="classification", metric="accuracy", classes=[0, 1, 2])
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from loopml.metrics import METRICS, Metric, metrics_for
from loopml.report.html import FIGURE_LAYOUT, Report, format_value

SPLITS = ("train", "val", "test")
TASKS = ("classification", "regression")
_REQUIRED_COLUMNS = ("id", "part", "y_true", "y_pred")
_SPLIT_COLORS = {"train": "#4c78a8", "val": "#f58518", "test": "#54a24b"}
_MAX_POINTS = 5000  # scatter points drawn per panel; more make the file slow to open
_MAX_CELL_TEXT = 30  # classes up to which the confusion matrix prints its counts


def build_iteration_report(
    path: str | os.PathLike[str],
    *,
    iteration: Mapping[str, Any],
    predictions: pd.DataFrame,
    task: str,
    metric: str,
    classes: Sequence[Any] | None = None,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    project_name: str = "",
    assets: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the HTML report of one iteration to ``path`` and return the path.

    Parameters
    ----------
    iteration : mapping
        The tracked record: ``run_id``, ``architecture``, ``params``,
        ``metrics`` (``"<split>_<metric>"`` to value), ``data_version``,
        ``split_version``, ``created`` (ISO date) and ``duration_s``.
    predictions : DataFrame
        Columns ``id``, ``part`` (train/val/test), ``y_true``, ``y_pred``, and
        for classification ``proba:<class>`` per class.
    task, metric : str
        The scope's task and metric; the metric is shown first everywhere.
    classes : sequence, optional
        Class order for classification; by default the ``proba:`` columns' order.
    candidates : sequence of mappings, optional
        Records shaped like ``iteration`` for every architecture compared in
        the same run; adds a comparison with the best one highlighted.
    project_name : str
        Shown in the title.
    assets : path, optional
        A folder for one plotly.js shared by many reports (see
        :meth:`Report.write`); by default plotly.js is embedded.
    """
    report = iteration_report(
        iteration=iteration, predictions=predictions, task=task, metric=metric,
        classes=classes, candidates=candidates, project_name=project_name,
    )
    return report.write(path, assets=assets)


def iteration_report(
    *,
    iteration: Mapping[str, Any],
    predictions: pd.DataFrame,
    task: str,
    metric: str,
    classes: Sequence[Any] | None = None,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    project_name: str = "",
) -> Report:
    """The same report as :func:`build_iteration_report`, not yet written.

    Later stages (diagnosis, error analysis) add their own sections to it
    before calling :meth:`Report.write`.
    """
    _check_inputs(iteration, predictions, task, metric)
    run_id = str(iteration["run_id"])
    title = f"{project_name}: iteration {run_id}" if project_name else f"Iteration {run_id}"
    architecture = iteration.get("architecture") or "unknown architecture"
    report = Report(title, subtitle=f"{architecture}, {task}, scope metric: {metric}")
    _add_header(report, iteration, project_name)
    if candidates:
        _add_candidates(report, candidates, metric)
    _add_metrics(report, iteration.get("metrics") or {}, task, metric)
    val = predictions[predictions["part"] == "val"]
    if val.empty:
        report.add_section("Errors on val").add_text("The predictions hold no val rows.")
    elif task == "classification":
        labels = _class_labels(predictions, classes)
        _add_confusion(report, val, labels)
        _add_per_class(report, val, labels)
    else:
        _add_residuals(report, val)
    return report


def _check_inputs(
    iteration: Mapping[str, Any], predictions: pd.DataFrame, task: str, metric: str
) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, but it is {task!r}.")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, but it is {metric!r}.")
    if METRICS[metric].task != task:
        raise ValueError(
            f"metric {metric!r} is a {METRICS[metric].task} metric, but the task is {task!r}."
        )
    if "run_id" not in iteration:
        raise ValueError(f"iteration must have a 'run_id' key, but its keys are {list(iteration)}.")
    missing = [column for column in _REQUIRED_COLUMNS if column not in predictions.columns]
    if missing:
        raise ValueError(
            f"predictions must have the columns {list(_REQUIRED_COLUMNS)}, but {missing} "
            f"are missing; it has {[str(c) for c in predictions.columns]}."
        )
    parts = set(predictions["part"].astype(str)) - set(SPLITS)
    if parts:
        raise ValueError(
            f"predictions['part'] must be one of {list(SPLITS)}, but it also holds {sorted(parts)}."
        )


def _styled(fig: go.Figure, **layout: Any) -> go.Figure:
    fig.update_layout(**FIGURE_LAYOUT)
    fig.update_layout(**layout)
    return fig


def _add_header(report: Report, iteration: Mapping[str, Any], project_name: str) -> None:
    report.add_section("Run").add_facts({
        "project": project_name or None,
        "run id": iteration["run_id"],
        "architecture": iteration.get("architecture"),
        "params": _params_text(iteration.get("params") or {}) or None,
        "data version": iteration.get("data_version"),
        "split version": iteration.get("split_version"),
        "date": _date_text(iteration.get("created")),
        "fit time (s)": iteration.get("duration_s"),
    })


def _params_text(params: Mapping[str, Any]) -> str:
    """``size`` and ``reg`` first: they are the two knobs every architecture has."""
    keys = sorted(params, key=lambda key: (key != "size", key != "reg"))
    return ", ".join(f"{key}={format_value(params[key])}" for key in keys)


def _date_text(created: object) -> str | None:
    if not created:
        return None
    try:
        return datetime.fromisoformat(str(created)).isoformat(sep=" ", timespec="seconds")
    except ValueError:
        return str(created)


def _add_candidates(report: Report, candidates: Sequence[Mapping[str, Any]], metric: str) -> None:
    rows = [_candidate_row(candidate, METRICS[metric]) for candidate in candidates]
    errors = [row["val error"] for row in rows]
    scored = [i for i, error in enumerate(errors) if error is not None]
    best = min(scored, key=lambda i: errors[i]) if scored else None
    if best is not None:
        rows[best]["kept"] = "★ best"
    section = report.add_section(
        "Candidates compared",
        intro=f"Every architecture trained in this run, scored on {metric}. The lowest "
        "val error wins; error is the distance from a perfect score (lower is better).",
    )
    section.add_table(rows, highlight=[best] if best is not None else [])
    section.add_figure(
        _candidates_figure(rows, metric),
        caption="A train error far below the val error points to variance (overfitting); "
        "both high points to bias (underfitting).",
    )


def _candidate_row(candidate: Mapping[str, Any], metric: Metric) -> dict[str, Any]:
    params = candidate.get("params") or {}
    scores = candidate.get("metrics") or {}
    train = _number(scores.get(f"train_{metric.name}"))
    val = _number(scores.get(f"val_{metric.name}"))
    return {
        "kept": "",
        "run id": candidate.get("run_id"),
        "architecture": candidate.get("architecture"),
        "size": params.get("size"),
        "reg": params.get("reg"),
        f"train {metric.name}": train,
        f"val {metric.name}": val,
        "train error": None if train is None else metric.error(train),
        "val error": None if val is None else metric.error(val),
        "fit s": _number(candidate.get("duration_s")),
    }


def _number(value: Any) -> float | None:
    """A score as a float, or None when it is missing (a candidate that failed)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _candidates_figure(rows: Sequence[Mapping[str, Any]], metric: str) -> go.Figure:
    labels: list[str] = []
    for row in rows:
        knobs = f"size={format_value(row['size'])}, reg={format_value(row['reg'])}"
        base = f"{escape(format_value(row['architecture']))}<br>{escape(knobs)}"
        label, n = base, 2
        while label in labels:  # plotly merges equal categories; keep one bar pair each
            label, n = f"{base} #{n}", n + 1
        labels.append(label)
    fig = go.Figure([
        go.Bar(name=split, x=labels, y=[row[f"{split} error"] for row in rows],
               marker_color=_SPLIT_COLORS[split], texttemplate="%{y:.3g}", textposition="outside")
        for split in ("train", "val")
    ])
    return _styled(
        fig, barmode="group", height=420, title=f"Train and val error per candidate ({metric})",
        yaxis_title="error (lower is better)", xaxis_type="category",
    )


def _add_metrics(report: Report, metrics: Mapping[str, Any], task: str, metric: str) -> None:
    by_name = _metrics_by_name(metrics)
    splits = [split for split in SPLITS if any(split in v for v in by_name.values())]
    section = report.add_section(
        "Metrics per split",
        intro=f"The scope metric ({metric}) comes first. Train and val choose the model; "
        "comparing them tells bias from variance.",
    )
    rows = []
    for name in _metric_order(by_name, task, metric):
        known = METRICS.get(name)
        row: dict[str, Any] = {"metric": f"{name} (scope)" if name == metric else name}
        row.update({split: _number(by_name[name].get(split)) for split in splits})
        row["better"] = "" if known is None else ("higher" if known.greater_is_better else "lower")
        row["meaning"] = "" if known is None else known.help
        rows.append(row)
    section.add_table(rows)
    if metric in by_name:
        section.add_figure(_split_figure(by_name[metric], METRICS[metric]))
    section.add_text(
        "Test is reported only: it is never used to choose a model, its settings or an "
        "action, so it stays an honest estimate of performance on new data.",
        note=True,
    )


def _metrics_by_name(metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"val_accuracy": 0.9}`` as ``{"accuracy": {"val": 0.9}}``; other keys are skipped."""
    by_name: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        split, _, name = str(key).partition("_")
        if split in SPLITS and name:
            by_name.setdefault(name, {})[split] = value
    return by_name


def _metric_order(by_name: Mapping[str, Any], task: str, metric: str) -> list[str]:
    known = [metric] + [m.name for m in metrics_for(task) if m.name != metric]
    return [n for n in known if n in by_name] + sorted(n for n in by_name if n not in known)


def _split_figure(values: Mapping[str, Any], metric: Metric) -> go.Figure:
    splits = [split for split in SPLITS if _number(values.get(split)) is not None]
    fig = go.Figure(go.Bar(
        x=splits, y=[_number(values[split]) for split in splits],
        marker_color=[_SPLIT_COLORS[split] for split in splits],
        texttemplate="%{y:.4g}", textposition="auto",
    ))
    bounded = math.isfinite(metric.lower) and math.isfinite(metric.upper)
    return _styled(
        fig, height=360, title=f"{metric.name} per split",
        yaxis_title=f"{metric.name} ({'higher' if metric.greater_is_better else 'lower'} "
        "is better)",
        yaxis_range=[metric.lower, metric.upper] if bounded else None,
    )


def _class_labels(predictions: pd.DataFrame, classes: Sequence[Any] | None) -> list[str]:
    """Class names as text, in the given order, then any label seen but not named."""
    if classes is not None:
        labels = [str(c) for c in classes]
    else:
        labels = [str(c)[len("proba:"):] for c in predictions.columns
                  if str(c).startswith("proba:")]
    seen = pd.concat([predictions["y_true"], predictions["y_pred"]]).astype(str)
    extra = sorted(set(seen) - set(labels), key=_natural_key)
    return labels + extra


def _natural_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _add_confusion(report: Report, val: pd.DataFrame, labels: list[str]) -> None:
    section = report.add_section(
        "Confusion matrix (val)",
        intro="Rows are the true class, columns the predicted one. Numbers are counts; "
        "colour is the share of the true class, so a rare class's errors show as "
        "clearly as a common one's.",
    )
    counts = confusion_matrix(val["y_true"].astype(str), val["y_pred"].astype(str), labels=labels)
    section.add_figure(_confusion_figure(counts, labels))


def _confusion_figure(counts: np.ndarray, labels: list[str]) -> go.Figure:
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    names = [escape(label) for label in labels]  # plotly.js reads <b>, <i>... as markup
    fig = go.Figure(go.Heatmap(
        z=share.tolist(), x=names, y=names, text=counts.tolist(), zmin=0, zmax=1,
        colorscale="Blues",
        texttemplate="%{text}" if len(labels) <= _MAX_CELL_TEXT else None,
        colorbar={"title": {"text": "share of<br>true class"}},
        hovertemplate="true %{y}<br>predicted %{x}<br>count %{text}"
        "<br>share of true class %{z:.1%}<extra></extra>",
    ))
    side = min(900, 220 + 36 * len(labels))
    return _styled(
        fig, height=side, width=side + 120, title="Confusion matrix on val",
        xaxis={"title": {"text": "predicted"}, "type": "category"},
        yaxis={"title": {"text": "true"}, "type": "category", "autorange": "reversed"},
    )


def _add_per_class(report: Report, val: pd.DataFrame, labels: list[str]) -> None:
    section = report.add_section(
        "Per-class precision, recall and F1 (val)",
        intro="Precision: of the examples predicted as the class, the share that are. "
        "Recall: of the examples of the class, the share found. Support: how many there are.",
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        val["y_true"].astype(str), val["y_pred"].astype(str), labels=labels, zero_division=0
    )
    section.add_table([
        {"class": label, "precision": float(p), "recall": float(r), "F1": float(f),
         "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ])


def _add_residuals(report: Report, val: pd.DataFrame) -> None:
    section = report.add_section(
        "Residuals (val)",
        intro="Residual = true − predicted, on val. A sound model leaves residuals "
        "centred on 0, with no trend or funnel against the prediction.",
    )
    y_true = pd.to_numeric(val["y_true"]).to_numpy(dtype=float)
    y_pred = pd.to_numeric(val["y_pred"]).to_numpy(dtype=float)
    ids = np.array([escape(str(i)) for i in val["id"]])
    residual = y_true - y_pred
    shown = np.arange(len(residual))
    note = ""
    if len(shown) > _MAX_POINTS:
        shown = np.sort(np.random.default_rng(0).choice(len(shown), _MAX_POINTS, replace=False))
        note = f" A random {_MAX_POINTS:,} of {len(residual):,} points are drawn."
    section.add_figure(
        _residual_figure(y_true[shown], y_pred[shown], ids[shown]),
        caption="Left: residual against prediction, the dashed line is a perfect fit. "
        "Right: true against predicted, with the line y = x." + note,
    )
    section.add_figure(
        _residual_histogram(residual),
        caption=f"Mean residual {format_value(residual.mean())} (bias), "
        f"standard deviation {format_value(residual.std())}, over {len(residual):,} examples.",
    )


def _residual_figure(y_true: np.ndarray, y_pred: np.ndarray, ids: np.ndarray) -> go.Figure:
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Residual against predicted", "True against predicted")
    )
    dots = {"mode": "markers", "marker": {"size": 6, "opacity": 0.6,
                                          "color": _SPLIT_COLORS["val"]}, "text": ids.tolist()}
    fig.add_trace(go.Scatter(
        x=y_pred.tolist(), y=(y_true - y_pred).tolist(), name="residual", **dots,
        hovertemplate="id %{text}<br>predicted %{x:.4g}<br>residual %{y:.4g}<extra></extra>",
    ), row=1, col=1)
    fig.add_hline(y=0, line_dash="dash", line_color="#555", row=1, col=1)
    fig.add_trace(go.Scatter(
        x=y_pred.tolist(), y=y_true.tolist(), name="example", **dots,
        hovertemplate="id %{text}<br>predicted %{x:.4g}<br>true %{y:.4g}<extra></extra>",
    ), row=1, col=2)
    low = float(min(y_true.min(), y_pred.min()))
    high = float(max(y_true.max(), y_pred.max()))
    fig.add_trace(go.Scatter(
        x=[low, high], y=[low, high], mode="lines", name="y = x",
        line={"dash": "dash", "color": "#555"}, hoverinfo="skip",
    ), row=1, col=2)
    fig.update_xaxes(title_text="predicted")
    fig.update_yaxes(title_text="residual (true − predicted)", row=1, col=1)
    fig.update_yaxes(title_text="true", row=1, col=2)
    return _styled(fig, height=440, showlegend=False, title="Residuals on val")


def _residual_histogram(residual: np.ndarray) -> go.Figure:
    fig = go.Figure(go.Histogram(
        x=residual.tolist(), nbinsx=min(60, max(10, len(residual) // 10)),
        marker_color=_SPLIT_COLORS["val"],
        hovertemplate="residual %{x}<br>count %{y}<extra></extra>",
    ))
    fig.add_vline(x=0, line_dash="dash", line_color="#555")
    return _styled(
        fig, height=360, title="Distribution of residuals on val",
        xaxis_title="residual (true − predicted)", yaxis_title="examples", bargap=0.05,
    )
