"""The Error-analysis section of a report.

Built only from a stored :class:`~loopml.errors.report.ErrorReport`, so any
past analysis can be redrawn without the model. The order is the order of
work: what to fix first (groups by ceiling), the examples themselves, the
discovered slices and clusters, the labels to check, and how each slice
fared over the iterations.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import plotly.graph_objects as go

from loopml.errors.report import ErrorExample, ErrorReport, GroupStat
from loopml.errors.view import NO_CLUSTERS, flag_shares_line, judge_line
from loopml.groups import GroupKind
from loopml.report.html import FIGURE_LAYOUT, Report, Section, format_value

_KIND_COLORS = {GroupKind.TRAIT: "#4c78a8", GroupKind.PAIR: "#f58518",
                GroupKind.SLICE: "#54a24b", GroupKind.CLUSTER: "#b279a2"}
MAX_CARDS = 48


def add_errors_section(report: Report, errors: ErrorReport) -> Section:
    """Add an "Error analysis" section to ``report`` and return it."""
    section = report.add_section(
        "Error analysis",
        intro="Where the model errs on the validation examples: errors counted by trait, by "
        "confused class pair, by discovered slice and by embedding cluster. The ceiling of a "
        "group is how far the error would fall if every error in it were fixed: work on the "
        "largest first.")
    section.add_facts({"val examples": errors.n_val, "errors": errors.n_errors,
                       f"error ({errors.metric})": errors.error,
                       "label issues": _label_fact(errors)})
    if errors.clean:
        section.add_text("No errors to analyse: every validation example is predicted right.")
        return section
    ranked = errors.ranked()
    if ranked:
        section.add_figure(_ceiling_figure(ranked[:20]),
                           caption="Ceiling of each group: the drop in error if all of its "
                           "errors were fixed. Colour: trait, confused pair, slice, cluster.")
        section.add_table([_group_row(g) for g in ranked[:30]],
                          caption="What to work on first (biggest ceiling first)")
    section.add_cards(_cards(errors), caption=f"The errors, most confident first (showing "
                      f"{min(MAX_CARDS, len(errors.errors))} of {errors.n_errors}); a red "
                      "border marks a suspected label issue.")
    _add_slices(section, errors)
    _add_clusters(section, errors)
    _add_labels(section, errors)
    _add_history(section, errors)
    section.add_table([_group_row(g) for g in errors.traits], caption="Every trait")
    for note in errors.notes:
        section.add_text(note, note=True)
    return section


def _label_fact(errors: ErrorReport) -> int | str:
    check = errors.label_check
    if not check.checked:
        return "not checked"
    return "withheld (weak judge)" if check.withheld else len(errors.label_issues)


def _group_row(g: GroupStat) -> dict[str, Any]:
    return {"kind": str(g.kind), "group": g.name, "examples": g.size, "errors": g.n_errors,
            "share of error": g.share, "rate inside": g.rate_inside,
            "rate outside": g.rate_outside, "ceiling": g.ceiling,
            "label issues": g.label_issues, "p (corrected)": g.p_value}


def _ceiling_figure(groups: list[GroupStat]) -> go.Figure:
    groups = list(reversed(groups))
    fig = go.Figure()
    for kind, color in _KIND_COLORS.items():
        rows = [g for g in groups if g.kind == kind]
        if not rows:
            continue
        fig.add_bar(
            y=[f"{g.kind}: {g.name}"[:60] for g in rows], x=[g.ceiling for g in rows],
            orientation="h", name=str(kind), marker_color=color,
            customdata=[[g.n_errors, g.share, g.rate_inside, g.rate_outside] for g in rows],
            hovertemplate="%{y}<br>ceiling %{x:.4f}<br>errors %{customdata[0]} "
            "(%{customdata[1]:.0%} of all)<br>rate inside %{customdata[2]:.3f} vs "
            "outside %{customdata[3]:.3f}<extra></extra>")
    fig.update_layout(**FIGURE_LAYOUT, height=max(300, 28 * len(groups) + 120),
                      barmode="overlay",
                      title="Ceiling by group", xaxis_title="error that fixing it removes",
                      yaxis={"categoryorder": "array",
                             "categoryarray": [f"{g.kind}: {g.name}"[:60] for g in groups]})
    return fig


def _cards(errors: ErrorReport) -> list[dict[str, Any]]:
    return [_card(e, errors) for e in errors.errors[:MAX_CARDS]]


def _card(e: ErrorExample, errors: ErrorReport) -> dict[str, Any]:
    lines = []
    if e.confidence is not None:
        lines.append(f"confidence {e.confidence:.2f}, p(true) {format_value(e.p_true)}")
    if e.residual is not None:
        lines.append(f"residual {format_value(e.residual)}")
    if e.traits:
        lines.append("traits: " + ", ".join(e.traits))
    if e.label_issue:
        lines.append(f"label suspect: maybe {e.suggested_label}")
    text = None
    if errors.modality == "text":
        text = " ".join(str(v) for v in e.features.values() if isinstance(v, str))
    elif errors.modality == "tabular":
        lines += [f"{k} = {format_value(v)}" for k, v in list(e.features.items())[:8]]
    lines.append(f"id {e.id}")
    return {"title": f"true {e.y_true} → predicted {format_value(e.y_pred)}",
            "image": errors.thumbnails.get(e.id), "text": text, "lines": lines,
            "flag": e.label_issue}


def _add_slices(section: Section, errors: ErrorReport) -> None:
    if not errors.slices:
        section.add_text("Slice discovery: no slice errs significantly more than the rest "
                         "(after correcting for every slice tried).", note=True)
        return
    tried = errors.slices[0].n_tried
    section.add_table(
        [{"slice": g.name, "examples": g.size, "errors": g.n_errors,
          "rate inside": g.rate_inside, "rate outside": g.rate_outside, "lift": g.lift,
          "ceiling": g.ceiling, "label issues": g.label_issues, "p (corrected)": g.p_value}
         for g in errors.slices],
        caption=f"Discovered slices: conjunctions of up to 3 conditions, scored like SliceLine"
        f", significant after a correction for the {format_value(tried)} slices tried")


def _add_clusters(section: Section, errors: ErrorReport) -> None:
    if not errors.clusters:
        if errors.clusters_searched:
            section.add_text(f"Embedding clusters: {NO_CLUSTERS}.", note=True)
        return
    section.add_table([{"cluster": g.name, "described by": g.description, "examples": g.size,
                        "errors": g.n_errors, "rate inside": g.rate_inside,
                        "rate outside": g.rate_outside, "ceiling": g.ceiling,
                        "p (corrected)": g.p_value} for g in errors.clusters],
                      caption="Clusters of errors in the pretrained encoder's embedding space")
    for g in errors.clusters:
        if errors.thumbnails and g.examples:
            section.add_cards([{"title": i, "image": errors.thumbnails.get(i)}
                               for i in g.examples], caption=f"{g.name}: {g.description}")


def _add_labels(section: Section, errors: ErrorReport) -> None:
    check = errors.label_check
    if not check.checked:
        section.add_text(f"Label issues not checked: {check.why}.", note=True)
        return
    judge = judge_line(check)
    if check.withheld:
        section.add_text(f"Label issues withheld: {check.why}. ({judge}.)", note=True)
        return
    if not errors.label_issues:
        section.add_text(f"Label issues: none found among {check.n_checked} examples "
                         f"({judge}).", note=True)
        return
    section.add_table([asdict(i) for i in errors.label_issues[:100]],
                      caption=f"Check these labels: {len(errors.label_issues)} of "
                      f"{check.n_checked} examples look mislabelled (worst first; "
                      f"quality is the probability of the given label; {judge})")
    section.add_table([{"class": c.label, "examples": c.n, "flagged": c.n_flagged,
                        "share flagged": c.share, "warning": c.warning or ""}
                       for c in check.per_class],
                      caption=f"Share of each class flagged: {flag_shares_line(check)}")
    for warning in check.warnings:
        section.add_text(f"Warning: {warning}.", note=True)


def _add_history(section: Section, errors: ErrorReport) -> None:
    tracked = [h for h in errors.history if len(h.runs) > 1 and h.kind is GroupKind.SLICE]
    tracked += [h for h in errors.history if len(h.runs) > 1 and h.kind is GroupKind.TRAIT
                and any(r.n_errors for r in h.runs)][:10]
    if not tracked:
        return
    fig = go.Figure()
    for h in tracked:
        fig.add_scatter(x=[f"{r.architecture} {r.run_id[:6]}" for r in h.runs],
                        y=[r.rate for r in h.runs], mode="lines+markers",
                        name=f"{h.kind}: {h.name}"[:50])
    fig.update_layout(**FIGURE_LAYOUT, height=420,
                      title="Error rate of each slice and trait, by run",
                      yaxis_title="error rate inside", xaxis_title="run (oldest first)")
    section.add_figure(fig, caption="Slices found once stay defined and are re-scored on "
                       "every run.")
