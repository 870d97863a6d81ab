"""The Project's verbs that add data and measure what it did: augment, synthesize,
collect, lift, transfer learning and its comparison, the ledger.

A mixin of :class:`loopml.project.Project`, kept in its own file so the
project module stays readable; every name it uses is imported here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.atomic import locked, write_text_atomic
from loopml.data.provenance import ActionRecord, Origin
from loopml.exceptions import LoopmlError
from loopml.iteration import Iteration, best_iteration
from loopml.progress import Progress
from loopml.project.paths import ASSETS_DIR

if TYPE_CHECKING:

    from loopml.grow.augment import AugmentResult
    from loopml.grow.collect import Queue
    from loopml.grow.compare import Comparison
    from loopml.grow.copula import TableSynthResult
    from loopml.grow.ledger import LedgerEntry
    from loopml.grow.lift import Lift
    from loopml.grow.synthesize import SynthResult




class Growing:
    """Project's verbs of ``grow/`` (mixed into :class:`loopml.project.Project`).

    They use the project's state (``dataset``, ``split``, ``factory``,
    ``tracker``, runs, groups) through ``self``, as any Project method does.
    """

    def augment(self, *, group: str | None = None, policy: str = "auto", factor: int = 1,
                run_id: str | None = None, judge_id: str | None = None, lift: bool = True,
                seeds: int = 3, seed: int | None = None, progress: Progress | None = None
                ) -> tuple[ActionRecord, AugmentResult]:
        """Add augmented train examples matched to the errors (see :mod:`loopml.grow.augment`;
        tables and text: :mod:`loopml.grow.tabular`).

        ``policy`` "auto" matches the failing val examples of the reference run
        (``run_id``'s, else :meth:`choose_run`'s); names (``"shift,blur"``) pick
        the transforms. Transforms that flip a class's predictions are refused
        for that class. The judge of that is the project's most accurate run
        (``judge_id``'s, else :meth:`best_run`'s, else the reference): whether a
        shifted 3 is still a 3 is a fact about the data, best told by the model
        that reads the data best, not by a weak reference whose lift from the
        action is the very thing to measure (a logistic regression misreads
        shifted digits; refusing shift for it would hide the loss the ledger
        must show). ``factor`` new examples per train example (of ``group``, a
        key of :meth:`groups`, when given). Every check runs before anything is
        written; with ``lift`` the action's lift is measured and recorded.
        """
        from loopml.data.images import modality
        from loopml.errors.report import ErrorReport
        from loopml.grow.augment import (
            augment,
            check_preservation,
            checked_factor,
            parse_policy,
            plan_policy,
            require_images,
        )
        from loopml.grow.tabular import augment_rows, parse_row_policy, plan_row_policy

        rows = modality(self.dataset) != "image"  # tables and text: loopml.grow.tabular
        if rows:
            parse_row_policy(self.dataset, policy)
        else:
            require_images(self.dataset)
            parse_policy(policy)
        factor = checked_factor(factor)  # before any fit: nothing is written on refusal
        groups = self.groups()
        if group is not None:
            groups.find(group)  # an unknown key lists the groups
        iteration = self.choose_run(run_id).iteration
        judge = self.get_run(judge_id) if judge_id else (self.best_run() or iteration)
        split, seed = self._current_split(), self.scope.seed if seed is None else int(seed)
        if rows:
            plan = plan_row_policy(self.dataset, iteration, groups, policy=policy, group=group)
            result = augment_rows(self.dataset, split, iteration, plan,
                                  group=groups[group] if group else None, group_key=group,
                                  factor=int(factor), seed=seed, judge=judge,
                                  progress=progress)
        else:
            plan = plan_policy(self.dataset, split, iteration,
                               ErrorReport.load(iteration.folder), groups, policy=policy,
                               group=group, seed=seed)
            preservation = check_preservation(self.dataset, split, judge, plan, seed=seed,
                                              progress=progress)
            result = augment(self.dataset, split, iteration, plan,
                             group=groups[group] if group else None, group_key=group,
                             factor=int(factor), seed=seed, preservation=preservation,
                             progress=progress)
        note = f"policy {plan.name}: " + ", ".join(
            f"{s.transform} {s.magnitude:g}" for s in plan.steps)
        record = self.add_examples(result.rows, origin="augment", parent_ids=result.parent_ids,
                                   target_group=group, note=note)
        if lift:
            result.lift = self.lift(record.action_id, run_id=iteration.run_id, seeds=seeds,
                                    progress=progress)
        return record, result

    def synthesize(self, *, count: int = 20, group: str | None = None,
                   run_id: str | None = None, lift: bool = True, seeds: int = 3,
                   seed: int | None = None, progress: Progress | None = None
                   ) -> tuple[ActionRecord, SynthResult | TableSynthResult]:
        """Add synthesized glyphs of the classes' characters (see :mod:`loopml.grow.synthesize`).

        ``count`` images per class, of ``group``'s classes (a key of
        :meth:`groups`; the classes of its failing val examples under the
        reference run) or of every class. They go to train, with no parents.
        On a table, ``count`` rows per class (in all for regression) drawn
        from a Gaussian copula fitted on the source's train rows (of
        ``group``'s members), with a fidelity report (:mod:`loopml.grow.copula`).
        Every check runs before anything is written; with ``lift`` the
        action's lift is measured and recorded.
        """
        from loopml.data.images import modality
        from loopml.grow.copula import check_table_request, synthesize_rows
        from loopml.grow.synthesize import check_request, synthesize, trained_rows

        table = modality(self.dataset) != "image"  # tables (and text's refusal): grow.copula
        if table:
            check_table_request(self.dataset, count=count)
        else:
            check_request(self.dataset, count=count)
        groups = self.groups()
        if group is not None:
            groups.find(group)  # an unknown key lists the groups
        runs = self.runs()
        iteration = self.choose_run(run_id).iteration if (lift or run_id or runs) else None
        split, seed = self._current_split(), self.scope.seed if seed is None else int(seed)
        predictions = None
        if group is not None and iteration is not None and not table:
            predictions = iteration.predictions()
        if table:
            result = synthesize_rows(self.dataset, split, count=count,
                                     group=groups[group] if group else None, group_key=group,
                                     seed=seed, progress=progress)
        else:
            result = synthesize(self.dataset, split, count=count,
                                group=groups[group] if group else None,
                                predictions=predictions, seed=seed, progress=progress,
                                screen_on=trained_rows(self.dataset, iteration))
        record = self.add_examples(result.frame(self.dataset), origin="synth",
                                   target_group=group, note=result.describe())
        if lift:
            result.lift = self.lift(record.action_id, run_id=iteration.run_id, seeds=seeds,
                                    progress=progress)
        return record, result

    def lift(self, action_id: str, *, run_id: str | None = None, seeds: int = 3,
             n_jobs: int | None = None, progress: Progress | None = None) -> Lift:
        """Measure whether an action's examples helped, and record it in the ledger.

        Retrains the reference run (``run_id``'s, else :meth:`choose_run`'s)
        with and without the action's train examples over ``seeds`` seeds,
        scored on the same val ids, overall and per stored group (see
        :mod:`loopml.grow.lift`). The lift is an MLflow run and a ledger entry
        (:meth:`ledger`). ``action_id`` may be a unique prefix. Every check
        (the action, the ledger file, the seeds) runs before anything is written.
        """
        from loopml.data.examples import ExampleStore
        from loopml.grow.ledger import Ledger, LedgerEntry
        from loopml.grow.lift import lift_ids, measure_lift, record_lift

        record = ExampleStore(self.state_dir).find(action_id)
        ledger = Ledger(self.state_dir)
        ledger.entries()  # a damaged ledger is refused before minutes of fits
        split = self._current_split()
        lift_ids(self.dataset, split, record.action_id)  # no train examples: say so now
        reference = self.choose_run(run_id).iteration
        lift = measure_lift(reference, self.dataset, split, action_id=record.action_id,
                            factory=self.factory, groups=self.groups(),
                            metric=self.scope.metric, seeds=seeds, n_jobs=n_jobs,
                            progress=progress)
        record_lift(lift, self.tracker)
        ledger.append(LedgerEntry.of(record, lift))
        self.write_report(reference)  # the reference run's report gains this lift
        return lift

    def transfer(self, backbone: str = "auto", mode: str = "freeze", *,
                 size: float | None = None, reg: float | None = None,
                 train_fraction: float | None = None, seed: int | None = None,
                 report: bool = True) -> Iteration:
        """Train one tracked transfer iteration: a pretrained backbone and a new head.

        ``backbone`` is ``minilm`` (text), ``efficientnet-lite0`` (images), a
        local model folder, or ``auto`` (by the data); ``mode`` is ``freeze``,
        ``finetune`` or ``lp-ft`` (see :mod:`loopml.models.transfer`). The run
        competes with the others on val like any :meth:`train`.
        """
        from loopml.models.transfer import MODES

        if mode not in MODES:
            raise LoopmlError(f"unknown transfer mode {mode!r}; the modes are "
                              f"{', '.join(MODES)}",
                              hint="freeze trains only a new head; finetune every layer; "
                                   "lp-ft the head first, then every layer")
        return self.train("transfer", size=size, reg=reg,
                          params={"backbone": backbone, "mode": mode},
                          train_fraction=train_fraction, seed=seed, report=report,
                          tags={"loopml.verb": "transfer"})

    def compare_transfer(self, backbone: str = "auto", *, modes: Sequence[str] | None = None,
                         scratch: str | None = None, fractions: Sequence[float] | None = None,
                         seeds: int = 3, n_jobs: int | None = None,
                         progress: Progress | None = None) -> tuple[Comparison, Path]:
        """Scratch vs each transfer mode at several train shares over seeds: which to use.

        ``scratch`` is the best non-pretrained family (default: the best
        non-transfer run's architecture and settings on the current data, else
        ``cnn`` for images and ``linear`` otherwise). Every fit is scored on
        val; none is recorded as a run (see :mod:`loopml.grow.compare`). The
        comparison and its HTML report go to ``.loopml/compare/<id>/``;
        returns the comparison and the report's path.
        """
        from loopml.grow.compare import DEFAULT_FRACTIONS, Candidate, compare_candidates
        from loopml.models.transfer import MODES
        from loopml.report.compare import write_comparison_report

        modes = list(MODES if modes is None else modes)
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise LoopmlError(f"unknown transfer mode(s) {unknown or modes}; the modes are "
                              f"{', '.join(MODES)}", hint="e.g. --modes freeze,finetune")
        architecture, params = self._scratch(scratch)
        candidates = [Candidate(f"scratch ({architecture})", architecture, params),
                      *(Candidate(m, "transfer", {"backbone": backbone, "mode": m})
                        for m in modes)]
        first = candidates[1]  # a wrong backbone is refused before minutes of fits
        self.factory.make(first.architecture, quiet=True, **first.params)
        comparison = compare_candidates(
            self.dataset, self._current_split(), self.factory, candidates,
            metric=self.scope.metric, fractions=DEFAULT_FRACTIONS if fractions is None
            else fractions, seeds=seeds, n_jobs=n_jobs, progress=progress)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        folder = self.state_dir / "compare" / f"transfer-{stamp}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        write_text_atomic(folder / "comparison.json",
                          json.dumps(comparison.to_dict(), indent=2) + "\n")
        path = write_comparison_report(
            comparison, folder / "report.html", title="Transfer learning: which to use",
            project_name=self.scope.name,
            assets=None if self.scope.tracking_uri else self.state_dir / ASSETS_DIR)
        return comparison, path

    def _scratch(self, name: str | None) -> tuple[str, dict[str, Any]]:
        """The non-pretrained family a comparison starts from, with its settings."""
        from loopml.data.images import modality

        if name:
            return name, {}
        best = best_iteration([it for it in self.runs() if it.architecture != "transfer"],
                              data_version=self.dataset.version,
                              split_version=self.split.version)
        if best is not None:
            keep = {k: v for k, v in best.params.items() if k in ("size", "reg")}
            return best.architecture, keep
        return ("cnn" if modality(self.dataset) == "image" else "linear"), {}

    def ledger(self) -> list[LedgerEntry]:
        """Every measured action with its lift, oldest first (``.loopml/ledger.json``)."""
        from loopml.grow.ledger import Ledger

        return Ledger(self.state_dir).entries()

    def collect(self, pool: str | Path, *, budget: int, groups: Sequence[str] | None = None,
                run_id: str | None = None, out: str | Path | None = None,
                progress: Progress | None = None) -> Queue:
        """Rank an unlabelled pool by closeness to the failing groups x uncertainty.

        Writes a labelling queue of ``budget`` rows to ``.loopml/collect/<id>/``
        (``queue.csv``, ``label_studio.json``, ``queue.json``) and copies
        ``queue.csv`` to ``out`` if given. The reference run (``run_id``'s, else
        :meth:`choose_run`'s) needs an error analysis (``loopml errors``).
        ``groups`` restricts to some failing groups (keys or names). See
        :mod:`loopml.grow.collect`; bad input writes nothing.
        """
        from loopml.errors.report import ErrorReport
        from loopml.grow.collect import plan_queue, write_queue

        iteration = self.choose_run(run_id).iteration
        report = ErrorReport.load(iteration.folder)
        if report is None:
            raise LoopmlError(f"run {iteration.run_id[:8]} has no error analysis: collection "
                              "aims at its failing groups",
                              hint=f"run 'loopml errors {iteration.run_id[:8]}' first")
        data = self.scope.data
        queue = plan_queue(pool, dataset=self.dataset, iteration=iteration, report=report,
                           groups=self.groups(), budget=budget, names=groups,
                           id_column=data.id_column, ignore=data.ignore,
                           seed=self.scope.seed, progress=progress)
        with locked(self.state_dir, "collect"):
            return write_queue(queue, self.state_dir, dataset=self.dataset, out=out)

    def collect_import(self, file: str | Path, *, queue: str | None = None,
                       allow_new_class: bool = False) -> ActionRecord:
        """Add the labels of ``file`` (CSV id,label or a Label Studio export) to the queue's rows.

        All or nothing: every id must be in the queue (default: the newest)
        and not imported yet, every label a known class (unless
        ``allow_new_class``), no id twice. The rows are added as collected
        train examples (:meth:`add_examples`) and the queue records the import.
        """
        from loopml.grow.collect import (
            import_group,
            labelled_rows,
            load_queue,
            read_labels,
            record_import,
        )

        with locked(self.state_dir, "collect"):
            chosen = load_queue(self.state_dir, queue)
            rows = labelled_rows(read_labels(file), chosen, self.dataset,
                                 allow_new_class=allow_new_class)
            record = self.add_examples(rows, origin=Origin.COLLECT,
                                       target_group=import_group(rows.index, chosen),
                                       part="train", new_classes=allow_new_class,
                                       note=f"queue {chosen.queue_id}: {len(rows)} labels "
                                            f"from {Path(file).name}")
            record_import(chosen, action_id=record.action_id,
                          ids=[str(i) for i in rows.index], file=str(file))
        return record
