"""The ErrorReport in the terminal: what to fix first, slices, labels to check."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from loopml.errors.report import ErrorReport, GroupStat, LabelCheck
from loopml.groups import GroupKind


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _rate(value: float | None) -> str:  # None or NaN: no rows to rate
    return "—" if value is None or value != value else f"{value:.3g}"


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.1g}"


def _groups_table(title: str, groups: list[GroupStat], *, kind_column: bool) -> Table:
    table = Table(title=title, title_justify="left")
    if kind_column:
        table.add_column("kind")
    for name in ("group", "errors", "share", "inside", "outside", "ceiling", "label issues",
                 "p"):
        table.add_column(name, justify="left" if name == "group" else "right")
    for g in groups:
        cells = [g.name, str(g.n_errors), _pct(g.share), _rate(g.rate_inside),
                 _rate(g.rate_outside), f"{g.ceiling:.4f}", str(g.label_issues), _p(g.p_value)]
        table.add_row(*([str(g.kind)] if kind_column else []), *cells)
    return table


def show_errors(report: ErrorReport, console: Console, *, top: int = 12) -> None:
    """Print the summary a person reads before opening the HTML report."""
    head = (f"[bold]{report.architecture}[/] {report.run_id[:8]}: {report.n_errors} errors "
            f"in {report.n_val} val examples ({report.metric} error {report.error:.4g})")
    console.print(head, highlight=False)
    if report.clean:
        console.print("[green]no errors to analyse:[/] every val example is predicted right")
        return
    console.print(_groups_table("what to work on first (ceiling = error removed if every "
                                "error in the group were fixed)", report.ranked()[:top],
                                kind_column=True))
    if report.slices:
        console.print(_groups_table("discovered slices (significant, corrected)",
                                    report.slices, kind_column=False))
    else:
        console.print("[dim]slices: none significant after correcting for every slice tried"
                      "[/]")
    for g in report.clusters:
        console.print(f"[magenta]{g.name}[/]: {g.n_errors} errors in {g.size} "
                      f"({g.rate_inside:.0%} vs {g.rate_outside:.0%}): {g.description}",
                      highlight=False)
    if report.clusters_searched and not report.clusters:
        console.print(f"[dim]embedding clusters: {NO_CLUSTERS}[/]")
    _show_labels(report, console, top=top)
    _show_history(report, console)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


#: what to say when clustering ran and nothing stood out (the terminal and the report)
NO_CLUSTERS = ("no significant clusters: no group of nearby examples in the pretrained "
               "encoder's space errs more than the rest, after correcting for every cluster "
               "tested")


def judge_line(check: LabelCheck) -> str:
    """Who judged the labels and how well it scores against the majority reference."""
    run = f" (run {check.judge_run[:8]})" if check.judge_run else ""
    line = f"judged by {check.model}{run}"
    if check.judge_balanced_accuracy is not None:
        line += (f": {check.judge_balanced_accuracy:.2f} balanced accuracy out of fold, "
                 f"chance {check.chance_balanced_accuracy:.2f}")
    return line


def flag_shares_line(check: LabelCheck) -> str:
    """The share of each class flagged, e.g. "bad 41% (412 of 1004), good 4% (...)"."""
    return ", ".join(f"{c.label} {c.share:.0%} ({c.n_flagged} of {c.n})"
                     for c in check.per_class)


def _show_labels(report: ErrorReport, console: Console, *, top: int) -> None:
    check = report.label_check
    if not check.checked:
        console.print(f"[dim]label issues not checked: {check.why}[/]")
        return
    if check.withheld:
        console.print(f"[yellow]label issues withheld:[/] {check.why}", highlight=False)
        return
    if report.label_issues:
        table = Table(title=f"check these labels ({len(report.label_issues)} of "
                      f"{check.n_checked})", title_justify="left")
        for name in ("id", "part", "given", "suggested", "quality"):
            table.add_column(name)
        for issue in report.label_issues[:top]:
            table.add_row(str(issue.id), issue.part, str(issue.given), str(issue.suggested),
                          f"{issue.quality:.3f}")
        console.print(table)
        console.print(f"flagged per class: {flag_shares_line(check)}", highlight=False)
        for warning in check.warnings:
            console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    else:
        console.print(f"label issues: none among {check.n_checked} examples")
    console.print(f"[dim]{judge_line(check)}[/]", highlight=False)


def _show_history(report: ErrorReport, console: Console, *, runs: int = 5) -> None:
    """Each stored slice's error rate on the latest runs, so progress on it shows."""
    tracked = [h for h in report.history if h.kind is GroupKind.SLICE and len(h.runs) > 1]
    if not tracked:
        return
    table = Table(title="slices over runs (error rate inside)", title_justify="left")
    table.add_column("slice")
    last = tracked[0].runs[-runs:]
    for r in last:
        table.add_column(f"{r.architecture} {r.run_id[:6]}", justify="right")
    for h in tracked:
        by_run = {r.run_id: r for r in h.runs}
        cells = [by_run.get(r.run_id) for r in last]
        table.add_row(h.name, *[f"{_rate(c.rate)} ({c.size})" if c else "" for c in cells])
    console.print(table)
