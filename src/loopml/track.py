"""The one place that talks to MLflow.

Each iteration is an MLflow run in a SQLite store inside ``.loopml/`` (or on
the server the scope's ``tracking_uri`` names). With the local store the
experiment's artifact location is ``.loopml/runs``, so the files a run writes
into its ``local_dir`` *are* its MLflow artifacts: nothing is copied twice.
mlflow is imported only when a run is recorded or a model saved, never by
verbs that only read (``loopml runs``) nor to load a model, because the import
alone takes ~1.5 s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from loopml.atomic import (
    LEFTOVER_AGE_S,
    locked,
    process_alive,
    process_identity,
    remove_path,
    replace_dir_atomic,
    temporary_prefix,
    write_text_atomic,
)
from loopml.exceptions import LoopmlError

MODEL_DIR = "model"
STORE_FILE = "mlflow.db"
RUNS_DIR = "runs"
OWNER_FILE = "owner.json"  # in .loopml/runs/<id>/ while the process that trains it runs
RECORD_FILE = "iteration.json"  # loopml.iteration.ITERATION_FILE: a run's record, written last
LIFT_FILE = "lift.json"  # loopml.grow.lift: the record of a lift run (it has no iteration)
#: a run folder holding one of these is whole: tidy never removes it
RECORD_FILES = (RECORD_FILE, LIFT_FILE)
STORE_LOCK = "mlflow"
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def run_dir(state_dir: Path, run_id: str) -> Path:
    """Where a run's files live locally (``.loopml/runs/<id>/artifacts``)."""
    return state_dir / RUNS_DIR / run_id / "artifacts"


@dataclass
class TrackedRun:
    """An open run: its id, and the local folder its files go into."""

    run_id: str
    local_dir: Path
    client: Any
    store_lock: Any = contextlib.nullcontext  # Tracker._store_lock: writes take turns

    def log(self, *, params: dict | None = None, metrics: dict | None = None,
            tags: dict | None = None) -> None:
        """Params, metrics and tags in one batch (one database round trip)."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
        with self.store_lock():
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
                params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()])

    def save_model(self, estimator: Any, *, schema: dict) -> Path:
        """Save the estimator as an MLflow model folder that predicts without the project.

        The folder has two flavors: ``sklearn`` (``mlflow.sklearn.load_model``
        returns the fitted Architecture) and ``python_function`` whose loader is
        :mod:`loopml.models.packaged`, which validates a frame against
        ``schema.json`` and answers the prediction with class probabilities. It
        carries no MLflow input signature: MLflow's enforcement refuses the int64
        columns a CSV of whole numbers gives, so we validate from the schema
        ourselves, with messages that name the column.

        The folder is written in a temporary sibling and renamed into place
        (:func:`loopml.atomic.replace_dir_atomic`): a crash or an error mid-save
        leaves the previous model folder, or none, never half of one.
        Requirements are given explicitly: MLflow's inference of them costs 5-10 s a run.
        """
        import mlflow.sklearn
        from mlflow.models import Model

        from loopml.models.packaged import MLMODEL_FILE, SCHEMA_FILE, ModelSchema

        ModelSchema.from_dict(schema)  # what we write must load again
        target = self.local_dir / MODEL_DIR
        build = Path(tempfile.mkdtemp(dir=self.local_dir, prefix=temporary_prefix(MODEL_DIR),
                                      suffix=".tmp"))
        try:
            os.chmod(build, 0o755)
            mlflow.sklearn.save_model(
                estimator, build, serialization_format="cloudpickle",
                pip_requirements=_requirements(estimator),
                mlflow_model=Model(artifact_path=MODEL_DIR, run_id=self.run_id))
            _load_with_loopml(build / MLMODEL_FILE)
            write_text_atomic(build / SCHEMA_FILE, json.dumps(schema, indent=2))
            return replace_dir_atomic(build, target)
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise


def _load_with_loopml(mlmodel: Path) -> None:
    """Point the pyfunc flavor at our loader; the sklearn flavor is left as MLflow wrote it."""
    from mlflow.models import Model

    model = Model.load(str(mlmodel))
    model.flavors["python_function"]["loader_module"] = "loopml.models.packaged"
    model.save(str(mlmodel))


def _requirements(estimator: Any) -> list[str]:
    names = ["loopml", "scikit-learn", "cloudpickle", "pandas", "numpy"]
    module = type(estimator).__module__
    if "torch" in module:
        names.append("torch")
    if type(estimator).__name__ == "GradientBoosting":
        names.append("lightgbm")
    out = []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


def _quiet_mlflow() -> None:
    """mlflow sets its loggers up on import; its INFO lines are noise in our output.

    Its warning that cloudpickle can run code on load is silenced too: we choose
    cloudpickle on purpose (skops refuses our torch estimators), and models are
    loaded only from the project's own store.
    """
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)


class Tracker:
    """Records iterations as MLflow runs of one experiment (the project)."""

    def __init__(self, state_dir: Path, experiment: str, *, tracking_uri: str | None = None):
        self.state_dir = state_dir
        self.experiment = experiment
        self.remote = tracking_uri is not None
        self.tracking_uri = tracking_uri or f"sqlite:///{(state_dir / STORE_FILE).resolve()}"
        self._client = None
        self._experiment_id: str | None = None

    @contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Writes to the local SQLite store take turns (a remote server orders its own).

        Two processes creating the store at once both try to create its tables
        ("table experiments already exists"), and concurrent writers can meet
        "database is locked"; holding ``.loopml/.locks/mlflow.lock`` avoids both.
        """
        if self.remote:
            yield
        else:
            with locked(self.state_dir, STORE_LOCK):
                yield

    def _connect(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            _quiet_mlflow()

            self.state_dir.mkdir(parents=True, exist_ok=True)
            try:
                with self._store_lock():
                    client = MlflowClient(tracking_uri=self.tracking_uri)
                    found = client.get_experiment_by_name(self.experiment)
                    self._experiment_id = (
                        found.experiment_id if found else client.create_experiment(
                            self.experiment, artifact_location=None if self.remote else
                            (self.state_dir / RUNS_DIR).resolve().as_uri()))
            except LoopmlError:
                raise
            except Exception as exc:  # mlflow raises many types for an unreachable store
                raise self._store_error(exc) from None
            self._client = client
        return self._client

    def _store_error(self, exc: Exception) -> LoopmlError:
        """What is wrong with the store, and what to do: a remote URI or the local file."""
        first = f"{exc}".splitlines()[0] if f"{exc}" else type(exc).__name__
        if self.remote:
            return LoopmlError(f"cannot open the MLflow store at {self.tracking_uri}: {first}",
                               hint="check tracking_uri in loopml.yaml, and that the "
                                    "server answers")
        store = self.state_dir / STORE_FILE
        return LoopmlError(
            f"cannot open the project's MLflow store {store}: {first}",
            hint=f"the file is damaged or not writable: check its permissions, or move it "
                 f"aside (a new store is made on the next run); 'loopml runs', 'show' and "
                 f"the reports still work, they read the run folders in "
                 f"{self.state_dir / RUNS_DIR}")

    @contextmanager
    def run(self, *, name: str, tags: dict | None = None) -> Iterator[TrackedRun]:
        """An MLflow run; on any error it is deleted with its files (nothing half-written).

        While it is open, ``.loopml/runs/<id>/owner.json`` names this process; a
        run whose owner died before it finished is tidied by :meth:`tidy`.
        """
        client = self._connect()
        with locked(self.state_dir, STORE_LOCK):  # also remote: tidy tells a birth from a death
            created = client.create_run(self._experiment_id, run_name=name, tags=tags or {})
            run_id = created.info.run_id
            local = run_dir(self.state_dir, run_id)
            local.mkdir(parents=True, exist_ok=True)
            write_text_atomic(local.parent / OWNER_FILE, json.dumps(process_identity()))
        try:
            yield TrackedRun(run_id, local, client, self._store_lock)
            if self.remote:
                client.log_artifacts(run_id, str(local))
            with self._store_lock():
                client.set_terminated(run_id, "FINISHED")
            (local.parent / OWNER_FILE).unlink(missing_ok=True)
        except BaseException:
            with self._store_lock():
                client.set_terminated(run_id, "FAILED")
                client.delete_run(run_id)
            remove_path(local.parent)
            raise

    def annotate(self, run_id: str, *, metrics: dict[str, float] | None = None,
                 tags: dict[str, str] | None = None, files: tuple[Path, ...] = ()) -> None:
        """Add to a finished run: the test metrics of a chosen candidate, a diagnosis, ...

        Files already sit in the run's local folder; a remote store gets a copy.
        """
        from mlflow.exceptions import MlflowException

        client = self._connect()
        try:
            with self._store_lock():
                TrackedRun(run_id, run_dir(self.state_dir, run_id), client).log(
                    metrics=metrics, tags=tags)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            import warnings

            warnings.warn(f"run {run_id} is not in the MLflow store {self.tracking_uri} (was "
                          "it deleted or replaced?): the result is saved in the run's folder "
                          "and report, which loopml reads, but the MLflow UI will not show "
                          "it", stacklevel=2)
            return
        if self.remote:
            for file in files:
                client.log_artifact(run_id, str(file))

    # ------------------------------------------------------------ the registry

    @property
    def registry(self) -> Registry:
        """The project's registered model (see :class:`Registry`)."""
        return Registry(self)

    # ------------------------------------------------------------ runs of dead processes

    def stale_runs(self) -> list[StaleRun]:
        """Runs whose process died before they finished; cheap: reads files, no mlflow.

        A run folder whose ``owner.json`` names a dead process on this host; a
        folder with neither an owner nor a record, older than a minute (its
        process died between creating it and naming itself, or while deleting
        it); and, in the local store, a RUNNING run with no owner older than a
        minute (its process died before it made the folder). A run whose owner
        lives, or runs on another host, is never stale.
        """
        runs_root = self.state_dir / RUNS_DIR
        stale: dict[str, StaleRun] = {}
        owned: set[str] = set()
        young: set[str] = set()  # nobody named yet: perhaps being created right now
        now = time.time()
        for folder in _run_folders(runs_root):
            owner = _read_owner(folder / OWNER_FILE)
            recorded = _recorded(folder)
            if owner is not None:
                owned.add(folder.name)
                if not owner or process_alive(owner) is False:  # {}: damaged
                    stale[folder.name] = self._stale(folder.name)
            elif not recorded:
                (young.add(folder.name) if _age(folder, now) <= LEFTOVER_AGE_S
                 else stale.setdefault(folder.name, self._stale(folder.name)))
        for run_id, started in self._running_in_store():
            if run_id not in stale and run_id not in owned:
                (young.add(run_id) if now - started / 1000 <= LEFTOVER_AGE_S
                 else stale.setdefault(run_id, self._stale(run_id)))
        if young:  # a run is created under the store lock: if we get it, its creator died
            with contextlib.suppress(LoopmlError), locked(self.state_dir, STORE_LOCK, timeout=0):
                for run_id in young:
                    run = self._stale(run_id)
                    folder = runs_root / run_id
                    if not (folder / OWNER_FILE).exists() and not run.recorded:
                        stale[run_id] = run
        return sorted(stale.values(), key=lambda r: r.run_id)

    def _stale(self, run_id: str) -> StaleRun:
        folder = self.state_dir / RUNS_DIR / run_id
        return StaleRun(run_id, recorded=_recorded(folder),
                        folder=folder if folder.exists() else None)

    def _running_in_store(self) -> list[tuple[str, int]]:
        """(run id, start ms) of the local store's RUNNING runs, read with plain sqlite3."""
        store = self.state_dir / STORE_FILE
        if self.remote or not store.exists():
            return []
        try:
            with contextlib.closing(sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro",
                                                    uri=True, timeout=5)) as db:
                return [(row[0], int(row[1] or 0)) for row in db.execute(
                    "SELECT run_uuid, start_time FROM runs "
                    "WHERE status = 'RUNNING' AND lifecycle_stage = 'active'")]
        except sqlite3.Error:  # no runs table yet, or a damaged store: nothing to tidy here
            return []

    def tidy(self) -> list[StaleRun]:
        """Close the runs :meth:`stale_runs` finds; returns what was done to each.

        A run with its record (``iteration.json``, written last) is whole: it is
        marked FINISHED. One without is marked FAILED and its folder removed.
        The caller holds a lock so that two processes do not tidy at once.
        """
        stale = self.stale_runs()
        if not stale:
            return []
        client = self._connect()
        for run in stale:
            status = self._status(client, run.run_id)
            if run.recorded and status != "DELETED":
                if self.remote and status == "RUNNING" and run.folder is not None:
                    client.log_artifacts(run.run_id, str(run.folder / "artifacts"))
                if status == "RUNNING":
                    with self._store_lock():
                        client.set_terminated(run.run_id, "FINISHED")
                run.outcome = "finished"
                if run.folder is not None:
                    (run.folder / OWNER_FILE).unlink(missing_ok=True)
                continue
            if status == "RUNNING":
                with self._store_lock():
                    client.set_tag(run.run_id, "loopml.failed",
                                   "its process died before the run finished")
                    client.set_terminated(run.run_id, "FAILED")
            run.outcome = "failed"
            if run.folder is not None:
                remove_path(run.folder)
        return stale

    @staticmethod
    def _status(client: Any, run_id: str) -> str | None:
        """RUNNING, FINISHED, FAILED, ..., DELETED for a deleted run, None if unknown."""
        from mlflow.exceptions import MlflowException

        try:
            info = client.get_run(run_id).info
        except MlflowException:
            return None
        return "DELETED" if info.lifecycle_stage == "deleted" else info.status


@dataclass
class StaleRun:
    """A run left behind by a dead process, and what tidying did to it."""

    run_id: str
    recorded: bool  # its record (iteration.json or lift.json) was written: the run is whole
    folder: Path | None = None
    outcome: str = field(default="")  # "finished" or "failed", once tidied


def _run_folders(runs_root: Path) -> list[Path]:
    try:
        return [Path(e.path) for e in os.scandir(runs_root)
                if _RUN_ID.match(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _recorded(folder: Path) -> bool:
    """Whether a run folder holds its record (an iteration's or a lift's), written last."""
    return any((folder / "artifacts" / name).exists() for name in RECORD_FILES)


def _read_owner(path: Path) -> dict[str, Any] | None:
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written or damaged: nobody we can find, so its writer is gone
    return owner if isinstance(owner, dict) else {}


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def release_store(state_dir: Path) -> None:
    """Close this process's connections to the local store, which was moved or deleted.

    MLflow keeps one engine per store URI for the life of the process; after
    ``init --force`` moved ``.loopml/`` aside, a notebook's next run would
    otherwise write through it into the moved file (or fail: read-only).
    """
    import sys

    if "mlflow" not in sys.modules:  # nothing opened: nothing to close
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service import utils

    engine = SqlAlchemyStore._engine_map.pop(
        f"sqlite:///{(state_dir / STORE_FILE).resolve()}", None)
    if engine is not None:
        engine.dispose()
    with contextlib.suppress(AttributeError):  # private to MLflow: may move
        type(utils._tracking_store_registry)._get_store_with_resolved_uri.cache_clear()


def load_model(model_dir: Path) -> Any:
    """The fitted estimator saved by :meth:`TrackedRun.save_model`.

    Read through loopml's own loader, so verbs that only predict never import
    mlflow; a folder that is missing or damaged is a LoopmlError that names it.
    """
    from loopml.models.packaged import load

    return load(model_dir).estimator


# ------------------------------------------------------------ the registry (deployments)

CHAMPION = "champion"
PREVIOUS = "previous"
DEPLOYMENTS_DIR = "deployments"  # .loopml/deployments/<version>/reference.json, aliases.json
ALIASES_FILE = "aliases.json"
HISTORY_TAG = "loopml.champions"  # the versions that were champion, oldest first (JSON)


@dataclass(frozen=True)
class Deployment:
    """A registered model version of the project: the run it serves and its aliases.

    ``created`` is the version's registration time (ISO 8601, UTC);
    ``model_dir`` the run's MLflow model folder, which
    :func:`loopml.models.packaged.load` reads without mlflow.
    """

    version: str
    run_id: str
    aliases: tuple[str, ...]
    created: str
    model_dir: Path
    architecture: str = ""
    metric: str = ""
    val_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "run_id": self.run_id, "aliases": list(self.aliases),
                "created": self.created, "model_dir": str(self.model_dir),
                "architecture": self.architecture, "metric": self.metric,
                "val_score": self.val_score}


def read_aliases(state_dir: Path) -> dict[str, dict[str, str]]:
    """``.loopml/deployments/aliases.json``: alias -> {version, run_id, model_dir}.

    A mirror of the registry's aliases, rewritten (atomically) by every deploy
    and rollback, so a server can watch one small file for a ``champion`` move
    without importing mlflow. The registry stays the record; {} when none.
    """
    try:
        data = json.loads((state_dir / DEPLOYMENTS_DIR / ALIASES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Registry:
    """The project's registered model in the MLflow registry of its store.

    Its name is the experiment's (the project's name); each version's source
    is a run's model folder. ``champion`` is the version served; ``previous``
    the champion before it. Every deploy appends the new champion to a history
    kept as a tag of the registered model (``loopml.champions``), so a rollback
    can walk back more than one step. Writes hold the store lock.
    """

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.name = tracker.experiment

    def _client(self, *, create: bool = False) -> Any:
        """The client; None while nothing is registered, unless ``create`` (a register)."""
        from mlflow.exceptions import MlflowException

        client = self.tracker._connect()
        try:
            client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            if not create:
                return None
            # suppressed: another process made it first
            with self.tracker._store_lock(), contextlib.suppress(MlflowException):
                client.create_registered_model(
                    self.name, description=f"models of the loopml project {self.name}")
        return client

    def register(self, run_id: str, *, tags: dict[str, str] | None = None) -> Deployment:
        """A new model version whose source is the run's model folder."""
        client = self._client(create=True)
        model_dir = run_dir(self.tracker.state_dir, run_id) / MODEL_DIR
        source = f"runs:/{run_id}/{MODEL_DIR}" if self.tracker.remote else str(model_dir)
        with self.tracker._store_lock():
            made = client.create_model_version(self.name, source=source, run_id=run_id,
                                               tags={k: str(v) for k, v in (tags or {}).items()})
        return self._deployment(made, {})

    def set_alias(self, alias: str, version: str) -> None:
        client = self._client(create=True)  # outside the store lock: it may take it
        with self.tracker._store_lock():
            client.set_registered_model_alias(self.name, alias, str(version))

    def remove_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        client = self._client(create=True)
        with self.tracker._store_lock(), contextlib.suppress(MlflowException):
            client.delete_registered_model_alias(self.name, alias)

    def deployments(self) -> list[Deployment]:
        """Every version, newest first, each with its aliases."""
        client = self._client()
        if client is None:
            return []
        aliases = self._aliases(client)
        found = client.search_model_versions(f"name='{self.name}'")
        return sorted((self._deployment(v, aliases) for v in found),
                      key=lambda d: int(d.version), reverse=True)

    def resolve(self, alias: str) -> Deployment | None:
        """The version ``alias`` points at, or None."""
        client = self._client()
        if client is None:
            return None
        aliases = self._aliases(client)
        version = next((v for v, names in aliases.items() if alias in names), None)
        if version is None:
            return None
        return self._deployment(client.get_model_version(self.name, version), aliases)

    def history(self) -> list[str]:
        """The versions that were champion, oldest first (the last one is champion now)."""
        client = self._client()
        if client is None:
            return []
        tags = client.get_registered_model(self.name).tags
        try:
            versions = json.loads(tags.get(HISTORY_TAG, "[]"))
        except ValueError:
            return []
        return [str(v) for v in versions] if isinstance(versions, list) else []

    def promote(self, version: str) -> None:
        """``champion`` -> ``version``, ``previous`` -> the champion before it."""
        history = self._current_history()
        history.append(str(version))
        self._point(history)

    def roll_back(self) -> Deployment | None:
        """``champion`` -> ``previous``, ``previous`` -> the champion before that.

        Walks back the history one step a call (not a toggle: a rolled-back
        version is the one a user wanted gone). None when there is no previous
        champion; nothing is changed then.
        """
        history = self._current_history()
        if len(history) < 2:
            return None
        history.pop()
        self._point(history)
        return self.resolve(CHAMPION)

    def _current_history(self) -> list[str]:
        """The history, reconciled with the aliases when someone moved them by hand."""
        history = self.history()
        champion = self.resolve(CHAMPION)
        if champion is None:
            return []
        if not history or history[-1] != champion.version:
            previous = self.resolve(PREVIOUS)
            history = ([previous.version] if previous else []) + [champion.version]
        return history

    def _point(self, history: list[str]) -> None:
        """Aliases from the history, the history tag, then the aliases.json mirror."""
        client = self._client(create=True)
        self.set_alias(CHAMPION, history[-1])
        if len(history) > 1:
            self.set_alias(PREVIOUS, history[-2])
        else:
            self.remove_alias(PREVIOUS)
        with self.tracker._store_lock():
            client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history[-200:]))
        self._write_mirror()

    def _write_mirror(self) -> None:
        folder = self.tracker.state_dir / DEPLOYMENTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        mirror = {alias: {"version": d.version, "run_id": d.run_id,
                          "model_dir": str(d.model_dir)}
                  for alias in (CHAMPION, PREVIOUS) if (d := self.resolve(alias)) is not None}
        write_text_atomic(folder / ALIASES_FILE, json.dumps(mirror, indent=2))

    def _aliases(self, client: Any) -> dict[str, tuple[str, ...]]:
        """version -> its aliases, sorted (champion before previous)."""
        out: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(self.name).aliases.items():
            out.setdefault(str(version), []).append(alias)
        return {v: tuple(sorted(names)) for v, names in out.items()}

    def _deployment(self, version: Any, aliases: dict[str, tuple[str, ...]]) -> Deployment:
        from datetime import UTC, datetime

        tags = version.tags or {}
        score = tags.get("loopml.val_score")
        created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
        return Deployment(
            version=str(version.version), run_id=version.run_id or "",
            aliases=aliases.get(str(version.version), ()),
            created=created.isoformat(timespec="seconds"),
            model_dir=run_dir(self.tracker.state_dir, version.run_id or "") / MODEL_DIR,
            architecture=tags.get("loopml.architecture", ""), metric=tags.get("loopml.metric", ""),
            val_score=float(score) if score not in (None, "") else None)
