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

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from loopml.atomic import replace_dir_atomic, write_text_atomic
from loopml.exceptions import LoopmlError

MODEL_DIR = "model"
STORE_FILE = "mlflow.db"
RUNS_DIR = "runs"


def run_dir(state_dir: Path, run_id: str) -> Path:
    """Where a run's files live locally (``.loopml/runs/<id>/artifacts``)."""
    return state_dir / RUNS_DIR / run_id / "artifacts"


@dataclass
class TrackedRun:
    """An open run: its id, and the local folder its files go into."""

    run_id: str
    local_dir: Path
    client: Any

    def log(self, *, params: dict | None = None, metrics: dict | None = None,
            tags: dict | None = None) -> None:
        """Params, metrics and tags in one batch (one database round trip)."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.utils.time import get_current_time_millis

        now = get_current_time_millis()
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
        build = Path(tempfile.mkdtemp(dir=self.local_dir, prefix=f".{MODEL_DIR}.",
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

    def _connect(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            _quiet_mlflow()

            self.state_dir.mkdir(parents=True, exist_ok=True)
            try:
                client = MlflowClient(tracking_uri=self.tracking_uri)
                found = client.get_experiment_by_name(self.experiment)
                self._experiment_id = found.experiment_id if found else client.create_experiment(
                    self.experiment, artifact_location=None if self.remote else
                    (self.state_dir / RUNS_DIR).resolve().as_uri())
            except Exception as exc:  # mlflow raises many types for an unreachable store
                raise LoopmlError(f"cannot open the MLflow store at {self.tracking_uri}: "
                                  f"{exc}".splitlines()[0],
                                  hint="check tracking_uri in loopml.yaml") from None
            self._client = client
        return self._client

    @contextmanager
    def run(self, *, name: str, tags: dict | None = None) -> Iterator[TrackedRun]:
        """An MLflow run; on any error it is deleted with its files (nothing half-written)."""
        client = self._connect()
        created = client.create_run(self._experiment_id, run_name=name, tags=tags or {})
        run_id = created.info.run_id
        local = run_dir(self.state_dir, run_id)
        local.mkdir(parents=True, exist_ok=True)
        try:
            yield TrackedRun(run_id, local, client)
            if self.remote:
                client.log_artifacts(run_id, str(local))
            client.set_terminated(run_id, "FINISHED")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            client.delete_run(run_id)
            shutil.rmtree(local.parent, ignore_errors=True)
            raise

    def annotate(self, run_id: str, *, metrics: dict[str, float] | None = None,
                 tags: dict[str, str] | None = None, files: tuple[Path, ...] = ()) -> None:
        """Add to a finished run: the test metrics of a chosen candidate, a diagnosis, ...

        Files already sit in the run's local folder; a remote store gets a copy.
        """
        client = self._connect()
        TrackedRun(run_id, run_dir(self.state_dir, run_id), client).log(metrics=metrics,
                                                                         tags=tags)
        if self.remote:
            for file in files:
                client.log_artifact(run_id, str(file))


def load_model(model_dir: Path) -> Any:
    """The fitted estimator saved by :meth:`TrackedRun.save_model`.

    Read through loopml's own loader, so verbs that only predict never import
    mlflow; a folder that is missing or damaged is a LoopmlError that names it.
    """
    from loopml.models.packaged import load

    return load(model_dir).estimator
