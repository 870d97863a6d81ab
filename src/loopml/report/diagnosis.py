"""The Diagnosis section of a report: verdict, bias and variance, curves, advice.

It is built from a typed :class:`~loopml.diagnose.Diagnosis`, or from the
``diagnosis.json`` written from one (read back with ``Diagnosis.from_json``,
files of older loopml versions included), so the section of any past
diagnosis can be redrawn without refitting anything. Every number is shown
with its 95% band over folds where there is one: a gap smaller than its band
is noise, and the reader should see that as clearly as the verdict does.

Example
-------
>>> report = Report("digits", subtitle="iteration 3")  # doctest: +SKIP
>>> add_diagnosis_section(report, Diagnosis.load(run_folder))  # doctest: +SKIP
>>> report.write("report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
import plotly.graph_objects as go

from loopml.diagnose import Advice, CurvePoint, Diagnosis, LearningCurve, ValidationCurve
from loopml.diagnose.evidence import Verdict
from loopml.report.html import FIGURE_LAYOUT, Report, Section, format_value

# Same colours and layout as the iteration report, so train and val read alike everywhere.
_COLORS = {"train": "#4c78a8", "val": "#f58518", "baseline": "#9da5b4", "target": "#54a24b",
           "majority": "#c7c7c7", "reference": "#72b7b2",
           "extrapolation": "#f58518", "current": "#555555", "best": "#e0a800"}
_RIBBONS = {"train": "rgba(76,120,168,0.18)", "val": "rgba(245,133,24,0.18)"}
_VERDICT_COLORS = {Verdict.high_bias: "#b07d00", Verdict.high_variance: "#a63d86",
                   Verdict.both: "#c0392b", Verdict.at_target: "#2e8b57",
                   Verdict.no_signal: "#7f1d1d"}
_LAYOUT: dict[str, Any] = {
    **FIGURE_LAYOUT,
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
}
_EXTEND = 4.0  # the extrapolation reaches this many times the largest curve size...
_MAX_EXTEND = 30.0  # ...or examples_needed, when that is no further than this many times
_ERROR_AXIS = "error (lower is better)"
_LABEL_BACKGROUND = "rgba(255,255,255,0.85)"  # a line's label stays readable over a bar


def add_diagnosis_section(report: Report, diagnosis: Diagnosis | Mapping[str, Any]
                          ) -> Section:
    """Add a "Diagnosis" section to ``report`` and return it.

    Parameters
    ----------
    report : Report
        The report to extend, usually an iteration's (see ``iteration_report``).
    diagnosis : Diagnosis or mapping
        The diagnosis, or the JSON written from it (``Diagnosis.to_json()``, a
        stored ``diagnosis.json``). A diagnosis run with curves off has no
        learning or validation curves: their figures are left out, with a note
        saying so. A mapping that is not a diagnosis raises ``KeyError`` or
        ``ValueError`` naming what is missing.
    """
    d = diagnosis if isinstance(diagnosis, Diagnosis) else Diagnosis.from_json(diagnosis)
    section = report.add_section(
        "Diagnosis",
        intro="Bias and variance against a baseline: avoidable bias = J_train − baseline, "
        "variance = J_cv − J_train, each with a 95% band over "
        f"{format_value(d.folds)} folds of train ∪ val (the test part is never used).",
    )
    section.add_text(f"Verdict: {d.verdict_text}.")
    _add_baseline(section, d)
    section.add_figure(_errors_figure(d), caption="Bars are mean errors over folds; whiskers "
                       "are 95% bands (none where the band is unknown).")
    section.add_table(_error_rows(d), caption="Errors and gaps (95% bands over folds)")
    _add_learning_curve(section, d)
    _add_validation_curves(section, d)
    _add_advice(section, d.advice)
    return section


def _num(value: Any) -> float | None:
    """A finite float, or None for null, NaN and infinity (they draw nothing)."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _pm(value: float | None, band: float | None) -> str:
    """``0.1107 ± 0.01408``; the band is left out where it is unknown."""
    if band is None:
        return escape(format_value(value))
    return escape(f"{format_value(value)} ± {format_value(band)}")


def _styled(fig: go.Figure, **layout: Any) -> go.Figure:
    fig.update_layout(**_LAYOUT)
    fig.update_layout(**layout)
    return fig


def _add_baseline(section: Section, d: Diagnosis) -> None:
    """Say where the baseline came from: an estimated one makes every verdict softer."""
    note = (d.baseline_note or "no note").rstrip(".")
    source = d.baseline_source or "estimated"
    label = f"Estimated baseline ({source})" if d.baseline_estimated else "Baseline"
    section.add_text(f"{label}: {note}.", note=True)
    section.add_facts({
        "run id": d.run_id, "architecture": d.architecture, "metric": d.metric,
        "reference architecture": d.reference_architecture or "none",
        "training examples": d.n_train, "folds": d.folds, "fits": d.n_fits,
        "seconds": d.seconds,
    })


def _errors_figure(d: Diagnosis) -> go.Figure:
    folds = format_value(d.folds)
    bars = [("baseline", d.baseline_error, None, "baseline"),
            ("J_train (train)", d.j_train, d.j_train_band, "train"),
            (f"J_cv (val, {folds}-fold)", d.j_cv, d.j_cv_band, "val")]
    if _num(d.majority_error) is not None:  # files from before it was measured have none
        bars.insert(0, ("majority reference", d.majority_error, None, "majority"))
    values = [_num(value) for _, value, _, _ in bars]
    bands = [_num(band) for _, _, band, _ in bars]
    labels = [f"{escape(label)}<br>{_pm(value, band)}"
              for (label, *_), value, band in zip(bars, values, bands, strict=True)]
    fig = go.Figure([  # one trace per bar, so a bar without a band has no whisker at all
        go.Bar(x=[label], y=[value], marker_color=_COLORS[kind], name=label,
               error_y={"type": "data", "array": [band], "visible": band is not None,
                        "color": "#333", "thickness": 1.5, "width": 10},
               hovertemplate="%{x}<extra></extra>")
        for label, value, band, (*_, kind) in zip(labels, values, bands, bars, strict=True)
    ])
    target = _num(d.target_error)
    if target is not None:
        fig.add_hline(y=target, line_dash="dash", line_color=_COLORS["target"],
                      annotation_text=f"target error {format_value(target)}",
                      annotation_position="top left", annotation_bgcolor=_LABEL_BACKGROUND)
    verdict = d.verdict_text.split(":")[0]
    color = _VERDICT_COLORS[Verdict(d.verdict)]
    return _styled(fig, height=380, showlegend=False, bargap=0.3, yaxis_title=_ERROR_AXIS,
                   title={"text": f"Verdict: {escape(verdict)}", "font": {"color": color}},
                   xaxis_type="category")


def _error_rows(d: Diagnosis) -> list[dict[str, Any]]:
    rows = [("baseline", "baseline_error", None, d.baseline_source),
            ("majority reference", "majority_error", None,
             f"learned only {d.majority_name}; same folds"),
            (f"reference ({d.reference_architecture or 'none'})", "reference_error",
             "reference_band", "another family, at defaults" if d.reference_architecture
             else "not fitted: the baseline comes from loopml.yaml"
             if not d.baseline_estimated else "no other family fits this data"),
            ("J_train", "j_train", "j_train_band", "train error, mean over folds"),
            ("J_cv", "j_cv", "j_cv_band", "val error on held-out folds"),
            ("avoidable bias", "avoidable_bias", "bias_band", "J_train − baseline"),
            ("variance", "variance", "variance_band", "J_cv − J_train"),
            ("tolerance", "tolerance", None, "a gap above this is 'well above'")]
    if d.target_error is not None:
        rows.insert(1, ("target error", "target_error", None, "from loopml.yaml"))
    return [{"quantity": name, "value": _num(getattr(d, key)),
             "± 95% band": _num(getattr(d, band)) if band else None, "reads as": meaning}
            for name, key, band, meaning in rows]


def _curve_traces(points: Sequence[CurvePoint], split: str) -> list[go.Scatter]:
    """A line and its band as a ribbon: not below 0, as no error is; pinched where unknown."""
    values = [(p.x, p.train, p.train_band) if split == "train" else (p.x, p.val, p.val_band)
              for p in points]
    rows = [(float(x), float(y), _num(b) or 0.0) for x, y, b in values
            if _num(x) is not None and _num(y) is not None]
    xs = [x for x, _, _ in rows]
    ys = [y for _, y, _ in rows]
    bands = [b for _, _, b in rows]
    ribbon = go.Scatter(
        x=xs + xs[::-1], y=[y + b for y, b in zip(ys, bands, strict=True)]
        + [max(y - b, min(y, 0.0)) for y, b in zip(ys[::-1], bands[::-1], strict=True)],
        mode="lines", fill="toself", fillcolor=_RIBBONS[split], line={"width": 0},
        hoverinfo="skip", showlegend=False, legendgroup=split,
    )
    line = go.Scatter(
        x=xs, y=ys, mode="lines+markers", name=f"{split} error", legendgroup=split,
        line={"color": _COLORS[split]}, customdata=bands,
        hovertemplate=f"{split} %{{y:.4g}} ± %{{customdata:.2g}} at %{{x:.4g}}<extra></extra>",
    )
    return [ribbon, line]


def _add_learning_curve(section: Section, d: Diagnosis) -> None:
    curve = d.learning_curve
    if curve is None or not curve.points:
        section.add_text("No learning curve: this diagnosis ran with curves off.", note=True)
        return
    section.add_figure(_learning_figure(d, curve), caption=(
        "Val and train error against training-set size (log scale), with 95% bands; the "
        "dashed line is the fitted power law e = a·n^(−b) + c carried past the largest size."))
    section.add_text(f"Learning curve: {curve.extrapolation.message or 'not extrapolated'}.")
    gain, n = _num(curve.gain_from_doubling), d.n_train
    if gain is None:
        section.add_text("The gain from doubling the training data could not be estimated.")
    else:
        section.add_text(f"Doubling the training data from {format_value(n)} examples should "
                         f"lower val error by about {format_value(gain)}.")


def _extrapolation(curve: LearningCurve) -> tuple[list[float], list[float]] | None:
    """The fitted power law from the largest size onward, or None when it was not fitted."""
    fit = curve.extrapolation
    a, b, c = _num(fit.a), _num(fit.b), _num(fit.asymptote)
    sizes = [x for x in (_num(p.x) for p in curve.points) if x and x > 0]
    if not fit.fitted or a is None or b is None or c is None or not sizes:
        return None
    start = max(sizes)
    end = start * _EXTEND
    needed = _num(fit.examples_needed) if fit.reliable else None
    if needed is not None and end < needed <= start * _MAX_EXTEND:
        end = needed * 1.15
    xs = np.geomspace(start, end, 40)
    return xs.tolist(), (a * xs ** -b + c).tolist()


def _learning_figure(d: Diagnosis, curve: LearningCurve) -> go.Figure:
    fig = go.Figure(_curve_traces(curve.points, "train") + _curve_traces(curve.points, "val"))
    end = _draw_extrapolation(fig, d, curve)
    n_train = _num(d.n_train)
    if n_train is not None and n_train > 0:
        _vline(fig, n_train, f"this iteration: {format_value(int(n_train))}", log=True,
               right=False)
    sizes = [x for x in (_num(p.x) for p in curve.points) if x]
    ticks = _ticks(sizes + ([float(round(end))] if end else []))
    reach = _num(curve.extrapolation.target_error)
    return _styled(fig, height=440, title="Learning curve", yaxis_title=_ERROR_AXIS,
                   yaxis_range=_headroom(fig, reach),
                   xaxis={"type": "log", "title": {"text": "training examples (log scale)"},
                          **ticks})


def _draw_extrapolation(fig: go.Figure, d: Diagnosis, curve: LearningCurve) -> float | None:
    """The power law past the data, the error it aims at, and where it gets there.

    Returns the largest size drawn, or None when the curve was not fitted.
    """
    reach = _num(curve.extrapolation.target_error)
    if reach is not None:
        name = "target error" if d.target_error is not None else "baseline error"
        fig.add_hline(y=reach, line_dash="dot", line_color=_COLORS["target"],
                      annotation_text=f"{name} {format_value(reach)}",
                      annotation_position="top right", annotation_bgcolor=_LABEL_BACKGROUND)
    line = _extrapolation(curve)
    if line is None:
        return None
    xs, ys = line
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="lines", name="extrapolated val error",
        line={"dash": "dash", "color": _COLORS["extrapolation"]},
        hovertemplate="extrapolated %{y:.4g} at %{x:.0f}<extra></extra>",
    ))
    fit = curve.extrapolation
    needed = _num(fit.examples_needed) if fit.reliable else None  # no marker for a guess
    if reach is not None and needed is not None and xs[0] < needed <= xs[-1]:
        _marker(fig, needed, reach, "examples needed",
                {"symbol": "x", "size": 11, "color": _COLORS["target"]})
    return xs[-1]


def _headroom(fig: go.Figure, *lines: float | None) -> list[float]:
    """A y range from 0 that holds every point and ``lines``, with room for top labels."""
    ys = [y for trace in fig.data for y in (trace.y or ()) if _num(y) is not None]
    ys += [y for y in lines if y is not None]
    low, high = min([0.0, *ys]), max([0.0, *ys])
    return [low, high + 0.15 * (high - low or 1.0)]


def _ticks(values: Sequence[float]) -> dict[str, Any]:
    """Ticks at the measured values only: a log axis's default 2-3-4-5 ticks crowd the labels."""
    shown = sorted(set(values))
    return {"tickmode": "array", "tickvals": shown,
            "ticktext": [escape(format_value(int(v) if v.is_integer() else v)) for v in shown]}


def _vline(fig: go.Figure, x: float, text: str, *, log: bool, right: bool) -> None:
    """A dotted vertical line with its label at the top, on the side with more room.

    Not ``add_vline``: on a log axis it puts the label at 10^x and stretches the axis.
    """
    fig.add_shape(type="line", x0=x, x1=x, xref="x", y0=0, y1=1, yref="paper",
                  line={"dash": "dot", "color": _COLORS["current"], "width": 1.5})
    fig.add_annotation(x=math.log10(x) if log else x, xref="x", y=1, yref="paper",
                       yanchor="top", xanchor="right" if right else "left",
                       xshift=-4 if right else 4, text=text, showarrow=False,
                       font={"color": _COLORS["current"]})


def _add_validation_curves(section: Section, d: Diagnosis) -> None:
    if not d.validation_curves:
        section.add_text("No validation curves: this diagnosis ran with curves off.", note=True)
        return
    for knob, curve in d.validation_curves.items():
        if not curve.points:
            section.add_text(f"The {knob} curve has no points.")
            continue
        section.add_figure(_validation_figure(knob, curve), caption=_curve_caption(knob, curve))


def _curve_caption(knob: str, curve: ValidationCurve) -> str:
    setting = curve.setting or "not judged (no point could be scored)"
    text = (f"{knob}: {setting}. Now {knob}={format_value(curve.current)} with val "
            f"error {format_value(_num(curve.current_error))}")
    if curve.best is not None:
        text += (f"; the best val error on the curve is {format_value(_num(curve.best_error))}"
                 f" at {knob}={format_value(curve.best)}")
    return text + (". Bands are 95% over folds; the diamond and dotted line mark the current "
                   "value, the star the best.")


def _log_scale(knob: str, xs: Sequence[float]) -> bool:
    """reg always spans decades; size does when its grid doubles (hidden units, trees)."""
    positive = [x for x in xs if x > 0]
    if knob == "reg":
        return bool(positive)
    return len(positive) == len(xs) > 1 and max(positive) / min(positive) >= 8


def _validation_figure(knob: str, curve: ValidationCurve) -> go.Figure:
    points = curve.points
    fig = go.Figure(_curve_traces(points, "train") + _curve_traces(points, "val"))
    xs = [x for x in (_num(p.x) for p in points) if x is not None]
    log = _log_scale(knob, xs)
    label = escape(knob)
    current = _mark_current(fig, label, curve, xs, log=log)
    _marker(fig, _num(curve.best), _num(curve.best_error), f"best {label}",
            {"symbol": "star", "size": 16, "color": _COLORS["best"],
             "line": {"color": "#1f2430", "width": 1}})
    ticks = _ticks(xs + ([] if current is None else [current]))
    return _styled(fig, height=400, title=f"Validation curve: {label}", yaxis_title=_ERROR_AXIS,
                   yaxis_range=_headroom(fig),
                   xaxis={"type": "log" if log else "linear", **ticks,
                          "title": {"text": label + (" (log scale)" if log else "")}})


def _marker(fig: go.Figure, x: float | None, y: float | None, name: str,
            marker: dict[str, Any]) -> None:
    if x is not None and y is not None:
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", name=name, marker=marker,
                                 hovertemplate=f"{name}: %{{x:.4g}}, val %{{y:.4g}}"
                                 "<extra></extra>"))


def _mark_current(fig: go.Figure, label: str, curve: ValidationCurve, xs: list[float], *,
                  log: bool) -> float | None:
    """Mark the iteration's own value; return it when it has a place on the axis."""
    current = _num(curve.current)
    if current is None:
        return None
    text = f"current {label}={escape(format_value(current))}"
    if log and current <= 0:  # reg=0 has no place on a log axis: say where it is
        fig.add_annotation(text=f"{text} (left of the log scale)", xref="paper", yref="paper",
                           x=0, y=1, xanchor="left", yanchor="top", showarrow=False)
        return None
    _marker(fig, current, _num(curve.current_error), f"current {label}",
            {"symbol": "diamond", "size": 11, "color": _COLORS["current"]})
    scale = np.log10 if log else float
    middle = (scale(min(xs)) + scale(max(xs))) / 2 if xs else scale(current)
    _vline(fig, current, text, log=log, right=scale(current) > middle)
    return current


def _add_advice(section: Section, advice: Sequence[Advice]) -> None:
    if not advice:
        section.add_text("No advice: no rule applied to this diagnosis.")
        return
    rows = [{"rank": rank, "action": item.title, "why": item.why}
            for rank, item in enumerate(advice, 1)]
    section.add_table(rows, caption="What to try next, most promising first", highlight=[0])
