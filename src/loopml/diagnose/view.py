"""Show a Diagnosis in the terminal: the verdict, the numbers, the curves' reading, advice."""

from __future__ import annotations

import math

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from loopml.diagnose.diagnosis import Diagnosis
from loopml.diagnose.evidence import Verdict

COLOURS = {Verdict.high_bias: "yellow", Verdict.high_variance: "magenta", Verdict.both: "red",
           Verdict.at_target: "green", Verdict.no_signal: "bright_red"}


def _pm(value: float, band: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if band is None or not math.isfinite(band):
        return f"{value:.4g}"
    return f"{value:.4g} ± {band:.2g}"


def reference_rows(d: Diagnosis) -> list[tuple[str, str, str]]:
    """The two references every verdict is read against, as (quantity, value, reads as)."""
    majority = ("majority reference", _pm(d.majority_error, None),
                f"learned only {d.majority_name}; same folds")
    if d.reference_architecture:
        strong = (f"reference ({d.reference_architecture})",
                  _pm(d.reference_error, d.reference_band), "another family, at defaults")
    else:
        strong = ("reference", "-", "not fitted: the baseline comes from loopml.yaml"
                  if not d.baseline_estimated else "no other family fits this data")
    return [majority, strong]


def show_diagnosis(d: Diagnosis, console: Console) -> None:
    colour = COLOURS[Verdict(d.verdict)]
    console.print(Panel(f"[bold {colour}]{d.verdict_text}[/]\n[dim]{d.baseline_note}[/]",
                        title=f"diagnosis of {d.architecture} {d.run_id[:8]} ({d.metric}, "
                              f"{d.folds}-fold, {d.n_fits} fits, {d.seconds:.0f}s)",
                        title_align="left"))
    numbers = Table(title="errors (95% bands over folds)", title_justify="left")
    numbers.add_column("quantity")
    numbers.add_column("value", justify="right")
    numbers.add_column("reads as")
    rows = [("baseline error", _pm(d.baseline_error, None), d.baseline_source),
            *reference_rows(d),
            ("J_train", _pm(d.j_train, d.j_train_band), f"trained on {d.n_train} examples"),
            ("J_cv", _pm(d.j_cv, d.j_cv_band), "held-out folds of train + val"),
            ("avoidable bias", _pm(d.avoidable_bias, d.bias_band), "J_train - baseline"),
            ("variance", _pm(d.variance, d.variance_band), "J_cv - J_train"),
            ("tolerance", _pm(d.tolerance, None), "a gap above this is 'well above'")]
    if d.target_error is not None:
        rows.insert(1, ("target error", _pm(d.target_error, None), "from loopml.yaml"))
    for row in rows:
        numbers.add_row(*row)
    console.print(numbers)
    if d.planning is not None and d.planning.mode == "budget":
        plan = d.planning
        left = f"; left out: {', '.join(plan.left_out)}" if plan.left_out else ""
        console.print(f"[bold]sweep:[/] budget {plan.budget_s:.0f}s, {plan.done_fits} of "
                      f"{plan.planned_fits} planned fits of {d.architecture}{left} "
                      "([bold]--full[/] runs the complete sweep)", highlight=False)
    if d.learning_curve is not None:
        console.print(f"[bold]learning curve:[/] {d.learning_message}")
    for knob, curve in d.validation_curves.items():
        if curve.best is not None and curve.best_error is not None:
            console.print(f"[bold]{knob} curve:[/] {curve.setting}: best val error "
                          f"{curve.best_error:.4g} at {knob}={curve.best:.4g}, "
                          f"{curve.current_error:.4g} now at {curve.current:.4g}")
    advice = Table(title="what to try next", title_justify="left")
    advice.add_column("#", justify="right")
    advice.add_column("action")
    advice.add_column("why")
    for rank, item in enumerate(d.advice, 1):
        advice.add_row(str(rank), item.title, item.why)
    console.print(advice)
