"""The "Lift of the actions" section of a run's report.

Every action (collect, augment, synthesize, or examples added by hand) is
measured on a *reference* run: its architecture retrained with and without
the action's examples over several seeds (see :mod:`loopml.grow.lift`). The
reference run's report shows each measurement made on it, newest first, so a
reader sees next to the run's errors what was tried against them and whether
it helped: the overall val metric before -> after with its seed spread and
the verdict, a bar chart per group (overall first) with error bars, the
groups that got worse beyond the spread drawn in red, and the notes.

The renderer takes plain data, a :class:`~loopml.grow.ledger.LedgerEntry`
or the dict it writes to ``ledger.json``, so any past lift can be redrawn
without refitting. Group names and notes come from the user: they go through
the report builder, which escapes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from loopml.grow.ledger import LedgerEntry
from loopml.grow.lift import GroupLift, LiftVerdict
from loopml.report.html import FIGURE_LAYOUT, Report, Section, format_value

TITLE = "Lift of the actions"
_COLORS = {"before": "#9da5b4", "after": "#4c78a8", "worse": "#c0392b"}
_MAX_LABEL = 48  # characters of a group name on the chart's axis (the table shows it whole)


def add_lift_section(report: Report, entries: Sequence[LedgerEntry | Mapping[str, Any]], *,
                     note: str | None = None) -> Section | None:
    """Add the lift section for ``entries`` (measured on this run) and return it.

    Parameters
    ----------
    report : Report
        The reference run's report.
    entries : sequence of LedgerEntry or mapping
        The ledger entries measured on this run, in ledger order (oldest
        first); they are shown newest first. A mapping is read with
        :meth:`LedgerEntry.from_dict` (``KeyError`` / ``ValueError`` if damaged).
    note : str, optional
        Why the lifts cannot be shown (a damaged ledger): the section then
        holds only this note.

    Returns
    -------
    Section or None
        None when there is nothing to show (no entry and no note): a run no
        action was measured on gets no lift section.
    """
    typed = [e if isinstance(e, LedgerEntry) else LedgerEntry.from_dict(dict(e))
             for e in entries]
    if not typed and note is None:
        return None
    section = report.add_section(
        TITLE,
        intro="Each action's examples were judged by retraining this run's architecture and "
        "settings with and without them, over several seeds, scored on the same validation "
        "examples. A change counts as a gain or a loss only when the difference of the means "
        "exceeds the larger seed spread (std over seeds); otherwise it is within the spread.")
    if note is not None:
        section.add_text(note, note=True)
    newest_first = sorted(reversed(typed), key=lambda e: e.created, reverse=True)
    for entry in newest_first:
        _add_entry(section, entry)
    return section


def headline(entry: LedgerEntry) -> str:
    """One line: the action, what it added, and the overall val metric before -> after."""
    lift, overall = entry.lift, entry.lift.overall
    target = entry.target_group or "no target group"
    added = ", ".join(f"{n} {part}" for part, n in entry.counts.items() if n) or "none"
    return (f"Action {entry.action_id} ({entry.origin}, target {target}): "
            f"{entry.n_examples} example(s) added ({added}); val {lift.metric} "
            f"{_pm(overall.before.mean, overall.before.std)} -> "
            f"{_pm(overall.after.mean, overall.after.std)} "
            f"({_signed(overall.delta)}): {overall.verdict}.")


def _add_entry(section: Section, entry: LedgerEntry) -> None:
    lift = entry.lift
    section.add_text(headline(entry))
    section.add_facts({"measured": entry.created, "architecture": entry.architecture,
                       "seeds": ", ".join(str(s) for s in lift.seeds),
                       "train examples before / after":
                           f"{lift.n_train_before} / {lift.n_train_after}",
                       "train share (the reference run's)":
                           "all" if lift.train_fraction is None else f"{lift.train_fraction:.0%}",
                       "val examples": lift.n_val, "lift run": entry.lift_run_id or "none"})
    rows = [lift.overall, *lift.groups]
    worse = [g.name for g in lift.worse]
    section.add_figure(
        _figure(rows, lift.metric, entry.action_id),
        caption=f"Val {lift.metric} before and after, overall and per group (mean over "
        f"{len(lift.seeds)} seed(s); whiskers: std over seeds). Red: worse beyond the "
        "spread" + (f" ({', '.join(worse)})." if worse else "; no group got worse."))
    section.add_table([_row(g) for g in rows],
                      caption=f"Lift per group of action {entry.action_id}")
    for text in lift.notes:
        section.add_text(text, note=True)


def _figure(rows: list[GroupLift], metric: str, action_id: str) -> go.Figure:
    labels = _labels(rows)
    worse = [g.verdict is LiftVerdict.LOSS for g in rows]
    hover = "%{y}<br>%{x:.4f} ± %{error_x.array:.4f}<br>%{customdata}<extra></extra>"
    fig = go.Figure()
    fig.add_bar(y=labels, x=[_finite(g.before.mean) for g in rows], orientation="h",
                name="before", marker_color=_COLORS["before"],
                error_x={"type": "data", "array": [g.before.std for g in rows]},
                customdata=[f"before, {g.n_val} val examples" for g in rows],
                hovertemplate=hover)
    fig.add_bar(y=labels, x=[_finite(g.after.mean) for g in rows], orientation="h",
                name="after", marker_color=[_COLORS["worse"] if w else _COLORS["after"]
                                            for w in worse],
                error_x={"type": "data", "array": [g.after.std for g in rows]},
                customdata=[f"after: {_signed(g.delta)}, {g.verdict}" for g in rows],
                hovertemplate=hover)
    fig.update_layout(**FIGURE_LAYOUT, barmode="group", height=max(260, 46 * len(rows) + 120),
                      title=f"Lift of {action_id[:40]}", xaxis_title=f"val {metric}",
                      yaxis={"autorange": "reversed"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0,
                              "xanchor": "right", "x": 1.0})
    return fig


def _labels(rows: list[GroupLift]) -> list[str]:
    """Axis labels: the group's name, or its key where two groups share a name."""
    names = [g.name[:_MAX_LABEL] for g in rows]
    return [g.key[:_MAX_LABEL] if names.count(n) > 1 else n
            for g, n in zip(rows, names, strict=True)]


def _row(g: GroupLift) -> dict[str, Any]:
    return {"group": g.name, "key": g.key, "val examples": g.n_val,
            "before": _finite(g.before.mean), "before std": g.before.std,
            "after": _finite(g.after.mean), "after std": g.after.std,
            "delta": _finite(g.delta), "spread": g.spread, "verdict": str(g.verdict)}


def _finite(value: float) -> float | None:
    """The value, or None for NaN and infinity (drawn as no bar, shown as a dash)."""
    return float(value) if math.isfinite(value) else None


def _pm(mean: float, std: float) -> str:
    return f"{format_value(_finite(mean))} ± {format_value(std)}"


def _signed(value: float) -> str:
    """A change with its sign: ``+0.0123``, ``-0.05``."""
    text = format_value(_finite(value))
    return f"+{text}" if math.isfinite(value) and value >= 0 else text
