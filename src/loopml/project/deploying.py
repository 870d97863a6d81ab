"""The Project's verbs after training: deploy, rollback, serve, monitor and retrain.

A mixin of :class:`loopml.project.Project`, kept in its own file so the
project module stays readable; every name it uses is imported here.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.atomic import locked, write_text_atomic
from loopml.data.provenance import Origin
from loopml.data.reference import REFERENCE_FILE, reference_statistics
from loopml.exceptions import LoopmlError, ScopeError
from loopml.iteration import Iteration
from loopml.project.paths import (
    API_KEY_ENV,
    API_KEY_FILE,
    DEPLOY_LOCK,
    MONITOR_REPORT,
    PREDICTION_LOG,
    SERVE_DIR,
)
from loopml.track import (
    CHAMPION,
    DEPLOYMENTS_DIR,
    Deployment,
)

if TYPE_CHECKING:
    import pandas as pd

    from loopml.serve.monitor import MonitorResult
    from loopml.serve.retrain import RetrainDecision




@dataclass(frozen=True)
class _Monitored:
    """One monitoring pass and what it read: the champion, its run, its logged rows, the groups."""

    result: MonitorResult
    champion: Deployment
    iteration: Iteration
    log: pd.DataFrame
    groups: list[Any]


class Deploying:
    """Project's verbs of ``serve/`` (mixed into :class:`loopml.project.Project`).

    They use the project's state (``dataset``, ``scope``, ``tracker``, runs)
    through ``self``, as any Project method does.
    """

    # ------------------------------------------------------------ deployments

    def deploy(self, run_id: str | None = None) -> Deployment:
        """Point ``champion`` at a run's model (default: the best run on val); return it.

        The old champion becomes ``previous``. A run deployed before gets its
        version back (one version per run); the champion's own run is left as
        it is (the current champion is returned). A new version gets the
        reference statistics the monitor compares traffic with
        (``.loopml/deployments/<version>/reference.json``), and the first deploy
        makes the server's API key. A bad run id or a run without a loadable
        model changes nothing.
        """
        iteration = self._deployable(run_id)
        with locked(self.state_dir, DEPLOY_LOCK):
            registry = self.tracker.registry
            champion = registry.resolve(CHAMPION)
            if champion is not None and champion.run_id == iteration.run_id:
                return champion
            known = [d for d in registry.deployments() if d.run_id == iteration.run_id]
            reference, vectors = self._reference(iteration) if not known or not (
                self._deployment_dir(known[0].version) / REFERENCE_FILE).exists() else (None, [])
            self._api_key_file()
            version = known[0] if known else registry.register(iteration.run_id, tags={
                "loopml.architecture": iteration.architecture, "loopml.metric": iteration.metric,
                "loopml.val_score": str(iteration.metrics.get(f"val_{iteration.metric}", ""))})
            if reference is not None:
                folder = self._deployment_dir(version.version)
                folder.mkdir(parents=True, exist_ok=True)
                if vectors:  # before reference.json, which names them
                    from loopml.serve.embedding_drift import write_reference_embeddings

                    write_reference_embeddings(folder, vectors)
                write_text_atomic(folder / REFERENCE_FILE, json.dumps(reference))
            registry.promote(version.version)
            return registry.resolve(CHAMPION) or version

    def rollback(self) -> Deployment:
        """Point ``champion`` back at the previous champion; return it.

        Each rollback walks one step further back through the champions in the
        order they were deployed (not a toggle: the version rolled back from is
        the one that was unwanted); ``loopml deploy RUN`` goes forward again.
        """
        with locked(self.state_dir, DEPLOY_LOCK):
            registry = self.tracker.registry
            champion = registry.resolve(CHAMPION)
            if champion is None:
                raise LoopmlError(f"nothing to roll back to: project {self.scope.name} has no "
                                  "deployed model", hint="run 'loopml deploy' first")
            back = registry.roll_back()
        if back is None:
            raise LoopmlError(
                f"nothing to roll back to: version {champion.version} (run "
                f"{champion.run_id[:8]}) is the only model that has been champion",
                hint="deploy another run with 'loopml deploy RUN' ('loopml runs' lists them)")
        return back

    def deployments(self) -> list[Deployment]:
        """Every registered version of the project's model, newest first, with its aliases."""
        return self.tracker.registry.deployments()

    def champion(self) -> Deployment:
        """The version served now (alias ``champion``)."""
        found = self.tracker.registry.resolve(CHAMPION)
        if found is None:
            raise LoopmlError(f"project {self.scope.name} has no deployed model",
                              hint="run 'loopml deploy' first")
        return found

    def serve_app(self, *, log_url: str | None = None, max_batch: int | None = None,
                  max_wait_ms: float | None = None, poll_seconds: float = 2.0) -> Any:
        """The HTTP app (FastAPI) serving this project's ``champion``, following it.

        The app watches ``.loopml/deployments/aliases.json`` (rewritten by every
        deploy and rollback) every ``poll_seconds`` and swaps to the new
        champion without failing a request; no mlflow import on the request
        path. The prediction log goes to ``log_url`` (any SQLAlchemy URL),
        default ``serve.log_url`` of loopml.yaml, else ``.loopml/serve/predictions.db``
        (SQLite, WAL); a database that cannot be reached is refused here, before
        anything is written. ``max_batch`` and ``max_wait_ms`` default to ``serve:``.
        """
        from loopml.serve import create_app

        resolve, log_url = self._champion_source(log_url)
        spec = self.scope.serve
        return create_app(resolve, api_key=self.api_key(), log_url=log_url,
                          max_batch=spec.max_batch if max_batch is None else max_batch,
                          max_wait_ms=spec.max_wait_ms if max_wait_ms is None else max_wait_ms,
                          poll_seconds=poll_seconds)

    def serve_on_ray(self, address: str, *, replicas: int = 2, host: str | None = None,
                     port: int | None = None, log_url: str | None = None,
                     max_batch: int | None = None, max_wait_ms: float | None = None,
                     poll_seconds: float = 2.0,
                     on_ready: Callable[[], None] | None = None,
                     stop: threading.Event | None = None) -> None:
        """Serve :meth:`serve_app`'s app from ``replicas`` Ray Serve replicas until stopped.

        For traffic one process cannot answer: each replica builds the app in
        its own process, behind Ray Serve's proxy on ``host:port``. ``address``:
        ``"local"`` (a new Ray instance), ``"auto"``, ``"host:port"`` or
        ``"ray://host:port"``. The replicas read the project's model folders
        and write ``log_url`` themselves: on a remote cluster the project must
        be on a shared filesystem and the log in PostgreSQL. Blocks until
        SIGTERM, Ctrl-C or ``stop``; then every replica writes its whole log.
        Options left None take ``serve:`` of loopml.yaml.
        """
        from loopml.serve.replicas import serve_replicas

        resolve, log_url = self._champion_source(log_url)
        spec = self.scope.serve
        serve_replicas(resolve, api_key=self.api_key(), log_url=log_url, address=address,
                       replicas=replicas, host=host or spec.host, port=port or spec.port,
                       on_ready=on_ready, stop=stop,
                       max_batch=spec.max_batch if max_batch is None else max_batch,
                       max_wait_ms=spec.max_wait_ms if max_wait_ms is None else max_wait_ms,
                       poll_seconds=poll_seconds)

    def _champion_source(self, log_url: str | None) -> tuple[Callable[[], tuple[str, Path]], str]:
        """What the server follows (version, model folder) and where it logs.

        The resolver captures only paths and strings, so it pickles to Ray Serve replicas.
        """
        from loopml.serve.log_url import reachable
        from loopml.track import read_aliases

        state_dir, name = self.state_dir, self.scope.name

        def resolve() -> tuple[str, Path]:
            found = read_aliases(state_dir).get(CHAMPION)
            if not found:
                raise LoopmlError(f"project {name} has no deployed model",
                                  hint="run 'loopml deploy' first")
            return str(found["version"]), Path(found["model_dir"])

        resolve()  # nothing deployed: says so before anything is written
        log_url = self.prediction_log_url(log_url)
        reachable(log_url)
        if log_url == self._default_log_url():
            (state_dir / SERVE_DIR).mkdir(parents=True, exist_ok=True)
        return resolve, log_url

    def prediction_log_url(self, log_url: str | None = None) -> str:
        """Where the prediction log is: ``log_url``, else loopml.yaml's ``serve.log_url``
        (its ${NAME} parts filled from the environment), else ``.loopml/serve/predictions.db``.

        Checked, not opened. Show it with :func:`loopml.scope.mask_url`: it may hold
        a password. A relative SQLite path in the scope is taken from the project
        folder (every path of the scope is); one given here, from the working folder.
        """
        from loopml.scope import SCOPE_FILE, key_line
        from loopml.serve.log_url import check_log_url, from_folder

        if log_url is not None:
            try:
                return check_log_url(log_url)
            except ValueError as exc:
                raise LoopmlError(f"log URL: {exc}", hint="pass a SQLAlchemy URL, e.g. "
                                  "postgresql+psycopg://user@host:5432/db") from None
        try:
            url = self.scope.serve.expanded_log_url()
            url = url if url is None else check_log_url(url)
        except ValueError as exc:
            file = self.root / SCOPE_FILE
            line = key_line(file, ("serve", "log_url"))
            raise ScopeError(f"{file.name}{f' line {line}' if line else ''}: key "
                             f"'serve.log_url': {exc}", hint="set the variable before "
                             f"running loopml, or fix serve.log_url in {file}") from None
        if url is None:
            return self._default_log_url()
        return from_folder(url, self.root)

    def _default_log_url(self) -> str:
        return f"sqlite:///{(self.state_dir / SERVE_DIR / PREDICTION_LOG).resolve()}"

    def monitor(self, window: str | int | None = None, *, log_url: str | None = None,
                groups: bool = True, notify: bool = True, report: bool = True
                ) -> MonitorResult:
        """Compare the champion's logged traffic with its reference, window by window.

        ``window``: N rows ("500"), a time span ("1h"), or None (every row,
        one window); only rows served by the current champion count. Tests
        drift per input column and of the predictions, performance where
        feedback came back, and every stored group (``groups=False`` skips
        them); alarms follow ``monitor:`` in loopml.yaml (Benjamini-Hochberg
        FDR plus effect floors). With ``notify`` and an alarm, the result is
        POSTed to ``monitor.webhook``; a failed POST is recorded in
        ``result.webhook``, not raised. Writes only ``.loopml/serve/monitor.html``
        (the report's Monitoring section; ``report=False``: not even that), and
        nothing on bad input.
        """
        monitored = self._monitored(window, log_url=log_url, groups=groups, notify=notify)
        if report:
            monitored.result.report_path = self._write_monitor_report(monitored.result)
        return monitored.result

    def _monitored(self, window: str | int | None, *, log_url: str | None, groups: bool,
                   notify: bool) -> _Monitored:
        """:meth:`monitor` without its report, with what it read (retrain acts on the same rows)."""
        from loopml.serve.embedding_drift import load_reference_embeddings
        from loopml.serve.monitor import WindowSpec, monitor_log, post_webhook

        spec = WindowSpec.parse(window)
        champion = self.champion()
        path = self._deployment_dir(champion.version) / REFERENCE_FILE
        if not path.is_file():
            raise LoopmlError(f"version {champion.version} has no reference statistics ({path})",
                              hint="deploy the run again with a newer loopml: 'loopml deploy "
                                   f"{champion.run_id[:8]}' after 'loopml rollback'")
        reference = json.loads(path.read_text())
        embeddings = load_reference_embeddings(path.parent, reference)
        log, others = self._logged_rows(log_url, champion.version)
        iteration = self.get_run(champion.run_id)
        predictions = iteration.predictions()
        val = predictions.loc[predictions["part"] == "val", ["id", "y_true", "y_pred"]]
        found = self._group_references(log, predictions) if groups else []
        result = monitor_log(log, reference, settings=self.scope.monitor, window=spec,
                             task=self.dataset.task, metric=self.scope.metric,
                             version=champion.version, val=val, groups=found,
                             embeddings=embeddings)
        if others:
            result.notes.append(f"{others} logged row(s) of other versions were left out")
        url = self.scope.monitor.webhook
        if notify and url and result.alert:
            result.webhook = post_webhook(url, {"project": self.scope.name, **result.to_dict()})
        return _Monitored(result, champion, iteration, log, found)

    def retrain(self, window: str | int | None = None, *, all_rows: bool = False,
                architecture: str | None = None, log_url: str | None = None,
                groups: bool = True, notify: bool = True) -> RetrainDecision:
        """Turn the alarmed production rows into data and a challenger; promote it if it wins.

        Monitors like :meth:`monitor` (``all_rows``: take every monitored row,
        alarm or not). Rows without feedback become a labelling queue in
        ``.loopml/collect/`` (``loopml collect import`` takes their labels);
        labelled rows join train as collected examples, except the newest
        share held out as the recent production check set. The challenger is
        the champion run's architecture and settings (or ``architecture``) on
        the updated data; it becomes ``champion`` only by the rule of
        :data:`loopml.serve.retrain.RULE`. The decision is written to
        ``.loopml/deployments/retrain-<stamp>.json`` and tagged on the
        challenger's run. Bad input (see :mod:`loopml.serve.retrain`) writes
        nothing.
        """
        from loopml.serve.retrain import (
            checked_labels,
            inputs_frame,
            production_queue,
            select_rows,
            split_feedback,
            used_requests,
        )

        monitored = self._monitored(window, log_url=log_url, groups=groups, notify=notify)
        champion, alarmed = monitored.champion, {c.name for c in monitored.result.alarms
                                                 if c.kind.startswith("group")}
        members = {g.key: g.members for g in monitored.groups if g.key in alarmed}
        if architecture and not self.factory.supports(architecture):
            self.factory.make(architecture)  # raises, naming why
        folder = self.state_dir / DEPLOYMENTS_DIR
        with locked(self.state_dir, "retrain"):
            rows = select_rows(monitored.log, monitored.result, members, all_rows=all_rows,
                               used=sorted(used_requests(folder)))
            feedback = split_feedback(rows)
            target = self.dataset.target
            added = inputs_frame(feedback.train, self.dataset).assign(
                **{target: checked_labels(feedback.train, self.dataset)})
            check_y = checked_labels(feedback.check, self.dataset)
            queue = production_queue(feedback.unlabelled, self.dataset, version=champion.version,
                                     run_id=champion.run_id) if len(feedback.unlabelled) else None
            # every check passed: from here on, write
            monitored.result.report_path = self._write_monitor_report(monitored.result)
            decision = self._run_retrain(champion, monitored.iteration, rows, feedback, added,
                                         check_y, queue, architecture)
        decision.monitored = monitored.result
        return decision

    def _run_retrain(self, champion, iteration, rows, feedback, added, check_y, queue,
                     architecture) -> RetrainDecision:
        """The writing half of :meth:`retrain`: examples, queue, challenger, verdict, record."""
        from loopml.grow.collect import write_queue
        from loopml.serve.retrain import (
            DECISION_PREFIX,
            RetrainDecision,
            compare,
            inputs_frame,
            judge,
            train_challenger,
        )

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        alarms = list(dict.fromkeys(rows["alarm"]))
        group = feedback.train["alarm_group"].replace("", None).dropna().mode()
        record = self.add_examples(
            added.reset_index(drop=True), origin=Origin.COLLECT, part="train",
            target_group=group.iloc[0] if len(group) else None,
            note=f"retrain {stamp}: {len(added)} labelled production rows of version "
                 f"{champion.version} (alarms: {'; '.join(alarms)}); request ids in "
                 f"{DEPLOYMENTS_DIR}/{DECISION_PREFIX}{stamp}.json")
        if queue is not None:
            with locked(self.state_dir, "collect"):
                queue = write_queue(queue, self.state_dir, dataset=self.dataset)
        challenger = train_challenger(iteration, self.dataset, self.split, factory=self.factory,
                                      tracker=self.tracker, metric=self.scope.metric,
                                      version=champion.version, architecture=architecture,
                                      tags={"loopml.retrain": stamp})
        old, new = iteration.packaged(), challenger.packaged()
        task, metric, seed = self.dataset.task, self.scope.metric, self.scope.seed
        val_ids = self.split.ids("val")
        val_X = self.dataset.X(val_ids)
        val = compare(task, metric, list(self.dataset.y(val_ids)),
                      old.predict(val_X)["prediction"], new.predict(val_X)["prediction"],
                      seed=seed)
        check_X = inputs_frame(feedback.check, self.dataset)
        production = compare(task, metric, check_y, old.predict(check_X)["prediction"],
                             new.predict(check_X)["prediction"], seed=seed)
        promoted, reasons = judge(val, production)
        examples = [{"example_id": f"{record.action_id}-{i:05d}", "request_id": str(r),
                     "model_version": champion.version, "alarm": str(a)}
                    for i, (r, a) in enumerate(zip(feedback.train["request_id"],
                                                   feedback.train["alarm"], strict=True))]
        decision = RetrainDecision(
            stamp=stamp, champion=champion.to_dict(), challenger_run=challenger.run_id,
            architecture=challenger.architecture, val=val, production=production,
            promoted=promoted, reasons=reasons, selected=len(rows), trained=len(added),
            held_out=len(feedback.check), queued=len(feedback.unlabelled),
            action_id=record.action_id, queue=queue.to_dict() if queue else None,
            alarms=alarms, examples=examples)
        if promoted:
            decision.new_champion = self.deploy(challenger.run_id).version
        folder = self.state_dir / DEPLOYMENTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        decision.path = folder / f"{DECISION_PREFIX}{stamp}.json"
        write_text_atomic(decision.path, json.dumps(decision.to_dict(), indent=1))
        self.tracker.annotate(challenger.run_id, tags={
            "loopml.retrain_decision": "promoted" if promoted else "not promoted",
            "loopml.retrain_reason": reasons[0][:500], "loopml.retrain_rule": "paired bootstrap"},
            metrics={"retrain_val_difference": val.difference,
                     "retrain_production_difference": production.difference,
                     "retrain_production_ci_low": production.ci_low,
                     "retrain_val_ci_high": val.ci_high})
        return decision

    def _write_monitor_report(self, result: MonitorResult) -> Path:
        from loopml.report.monitor import monitor_report

        folder = self.state_dir / SERVE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        return monitor_report(result.to_dict(), project_name=self.scope.name).write(
            folder / MONITOR_REPORT)

    def _logged_rows(self, log_url: str | None, version: str) -> tuple[pd.DataFrame, int]:
        """The champion's rows of the log, oldest first, and how many rows of others there are."""
        from loopml.serve.log_url import reachable
        from loopml.serve.prediction_log import PredictionLog

        log_url = self.prediction_log_url(log_url)
        file = self.state_dir / SERVE_DIR / PREDICTION_LOG
        if log_url == self._default_log_url() and not file.is_file():
            raise LoopmlError(f"no prediction log at {file}: nothing has been served yet",
                              hint="run 'loopml serve' and send it requests first")
        reachable(log_url)
        log = PredictionLog(log_url).open()
        try:
            rows = log.read()
        finally:
            log.close()
        mine = rows[rows["model_version"].astype(str) == str(version)].reset_index(drop=True)
        if mine.empty:
            raise LoopmlError(f"the prediction log holds no rows served by version {version} "
                              f"({len(rows)} row(s) of other versions)",
                              hint="send requests to 'loopml serve' first")
        return mine, len(rows) - len(mine)

    def _group_references(self, log: pd.DataFrame, predictions: pd.DataFrame) -> list[Any]:
        """Every stored group that reads inputs only, with its train share and val errors."""
        import pandas as pd

        from loopml.groups import PairGroup, Rows, membership
        from loopml.serve.monitor import GroupReference, logged_inputs

        inputs = logged_inputs(log).set_axis(pd.Index(log["request_id"].astype(str)))
        production = Rows.from_frame(inputs, like=self.dataset)
        known = predictions[predictions["id"].astype(str).isin(self.dataset.ids)]
        train_ids = known.loc[known["part"] == "train", "id"].astype(str)
        val = known[known["part"] == "val"]
        train = Rows.of(self.dataset, pd.Index(train_ids))
        val_rows = Rows.of(self.dataset, pd.Index(val["id"].astype(str)))
        wrong = (val["y_true"].astype(str) != val["y_pred"].astype(str)).to_numpy()
        out = []
        for key, group in self.groups().items():
            if isinstance(group, PairGroup):
                continue  # needs the true label of every production row
            try:
                members = membership(group, production)
                in_train, in_val = membership(group, train), membership(group, val_rows)
            except LoopmlError:
                continue  # reads something production rows lack
            out.append(GroupReference(key=key, name=group.name, train_members=int(in_train.sum()),
                                      train_rows=len(in_train), val_errors=int(wrong[in_val].sum()),
                                      val_members=int(in_val.sum()), members=members))
        return out

    @property
    def api_key_path(self) -> Path:
        return self.state_dir.joinpath(*API_KEY_FILE)

    def api_key(self) -> str:
        """The key the server asks of ``/feedback`` and admin routes.

        ``$LOOPML_API_KEY`` when set (a secret store's, for a shared server),
        else ``.loopml/serve/api_key``, which the first deploy makes (or this
        call, when the project has none yet).
        """
        return os.environ.get(API_KEY_ENV, "").strip() or self._api_key_file()

    def _api_key_file(self) -> str:
        """The key in ``.loopml/serve/api_key``, made (mode 0600) if there is none."""
        path = self.api_key_path
        with locked(self.state_dir, "api_key"):
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomic(path, secrets.token_urlsafe(32) + "\n", mode=0o600)
            key = path.read_text().strip()
        if not key:
            raise LoopmlError(f"the API key file {path} is empty",
                              hint=f"remove it (a new key is made) or set ${API_KEY_ENV}")
        return key

    def _deployable(self, run_id: str | None) -> Iteration:
        """The run to deploy, checked: it exists and its model loads."""
        if run_id:
            iteration = self.get_run(run_id)
        else:
            iteration = self.best_run()
            if iteration is None:
                self.latest_run()  # no runs at all: says so
                raise LoopmlError(
                    f"no run is on the current data {self.dataset.version} and split "
                    f"{self.split.version}, so none is best on val",
                    hint="train one with 'loopml train', or name a run: 'loopml deploy RUN'")
        iteration.packaged()  # a missing or damaged model folder is a LoopmlError naming it
        return iteration

    def _deployment_dir(self, version: str) -> Path:
        return self.state_dir / DEPLOYMENTS_DIR / version

    def _reference(self, iteration: Iteration) -> tuple[dict[str, Any], list[Any]]:
        """Reference statistics of the run's own train rows and of its val predictions.

        Plus the backbone embeddings of a seeded sample of those rows for text
        columns and images (:mod:`loopml.serve.embedding_drift`); when the
        encoder cannot run here, reference.json says so and deploy goes on.
        """
        import pandas as pd

        from loopml.serve.embedding_drift import embedding_entries, reference_embeddings

        predictions = iteration.predictions()
        parts = predictions["part"]
        ids = pd.Index(predictions.loc[parts == "train", "id"].astype(str))
        ids = ids[ids.isin(self.dataset.ids)]
        if ids.empty:
            raise LoopmlError(f"the train rows of run {iteration.run_id[:8]} are no longer in "
                              "the data, so there is nothing to monitor against",
                              hint="deploy a run trained on the current data")
        val = predictions[parts == "val"]
        extra: dict[str, Any] = {}
        try:
            vectors = reference_embeddings(self.dataset, ids, seed=self.scope.seed)
        except (LoopmlError, ImportError, OSError) as exc:
            vectors, extra = [], {"embeddings_error": str(exc)[:500]}
        out = reference_statistics(self.dataset.X(ids), self.dataset.features,
                                   predictions=val["y_pred"], labels=val["y_true"],
                                   task=self.dataset.task,
                                   embedded=[v.input.name for v in vectors])
        if vectors:
            out["embeddings"] = embedding_entries(vectors)
        return {"run_id": iteration.run_id, "data_version": iteration.data_version, **out,
                **extra}, vectors

