"""Fit and evaluate one candidate on the stored split, and record it.

An :class:`Iteration` is one trained candidate: its architecture and
parameters, its metrics on train and val, the data and split versions it was
built from, and its files (model with schema, predictions, report). Fitting
(:func:`fit_candidate`) is kept apart from recording
(:func:`record_iteration`) so fits can run in parallel workers while one
process writes the store.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from loopml.data.dataset import Dataset
from loopml.data.split import Split
from loopml.exceptions import LoopmlError
from loopml.metrics import METRICS, evaluate
from loopml.track import Tracker, load_model

ITERATION_FILE = "iteration.json"
PREDICTIONS_FILE = "predictions.parquet"
REPORT_FILE = "report.html"


@dataclass
class Iteration:
    """One trained candidate, as stored in ``.loopml/runs/<run_id>/artifacts/``."""

    run_id: str
    architecture: str
    params: dict[str, Any]
    metrics: dict[str, float]
    metric: str
    data_version: str
    split_version: str
    created: str
    duration_s: float
    n_train: int
    tags: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def error(self, part: str) -> float:
        """The scope metric on a part ('train', 'val', 'test') as an error (0 is perfect)."""
        return METRICS[self.metric].error(self.metrics[f"{part}_{self.metric}"])

    @property
    def report_path(self) -> Path:
        return self._dir() / REPORT_FILE

    def model(self) -> Any:
        """The fitted estimator (an sklearn-compatible Architecture)."""
        return load_model(self._dir() / "model")

    def predictions(self) -> pd.DataFrame:
        return pd.read_parquet(self._dir() / PREDICTIONS_FILE)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return out

    def save(self) -> None:
        (self._dir() / ITERATION_FILE).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Iteration:
        data = json.loads((directory / ITERATION_FILE).read_text())
        return cls(**data, path=directory)

    def _dir(self) -> Path:
        if self.path is None:
            raise LoopmlError(f"iteration {self.run_id} has no folder")
        return self.path


@dataclass
class FitResult:
    """What a (possibly remote) fit hands back to the recording process."""

    architecture: str
    estimator: Any
    seconds: float
    train_ids: pd.Index | None = None


def train_subset(dataset: Dataset, split: Split, fraction: float | None, *, seed: int
                 ) -> pd.Index:
    """The train ids, or a seeded (stratified where possible) share of them."""
    train = split.ids("train")
    if fraction is None or fraction >= 1:
        return train
    if not 0 < fraction < 1:
        raise LoopmlError(f"train fraction must be in (0, 1], got {fraction}")
    n = max(2, round(fraction * len(train)))
    labels = dataset.y(train) if dataset.task == "classification" else None
    return subsample(train, labels, n, seed=seed)


def subsample(ids: pd.Index, labels: np.ndarray | None, n: int, *, seed: int) -> pd.Index:
    """``n`` of ``ids``, keeping class shares when every class can be represented."""
    if n >= len(ids):
        return ids
    stratify = None
    if labels is not None:
        _, counts = np.unique(labels.astype(str), return_counts=True)
        if counts.min() >= 2 and min(n, len(ids) - n) >= len(counts):
            stratify = labels.astype(str)
    kept, _ = train_test_split(np.asarray(ids), train_size=n, random_state=seed,
                               stratify=stratify)
    return pd.Index(kept, name=ids.name)


def fit_candidate(architecture: str, estimator: Any, dataset: Dataset, split: Split, *,
                  train_ids: pd.Index | None = None) -> FitResult:
    """Fit on train (or ``train_ids``), early-stopping on val where the family stops early."""
    train = split.ids("train") if train_ids is None else train_ids
    val = split.ids("val")
    start = time.perf_counter()
    estimator.fit(dataset.X(train), dataset.y(train),
                  eval_set=(dataset.X(val), dataset.y(val)))
    return FitResult(architecture, estimator, time.perf_counter() - start, train)


def predict_parts(estimator: Any, dataset: Dataset, split: Split, parts: tuple[str, ...], *,
                  train_ids: pd.Index | None = None) -> pd.DataFrame:
    """Predictions (and class probabilities) for the ids of the given parts."""
    frames = []
    for part in parts:
        ids = train_ids if part == "train" and train_ids is not None else split.ids(part)
        if len(ids) == 0:
            continue
        X = dataset.X(ids)
        frame = pd.DataFrame({"id": ids.astype(str), "part": part, "y_true": dataset.y(ids)})
        if dataset.task == "classification":
            proba = estimator.predict_proba(X)
            frame["y_pred"] = estimator.classes_[np.argmax(proba, axis=1)]
            for i, cls in enumerate(estimator.classes_):
                frame[f"proba:{cls}"] = proba[:, i]
        else:
            frame["y_pred"] = estimator.predict(X)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def score_parts(predictions: pd.DataFrame, task: str, classes: list) -> dict[str, float]:
    """Every metric of the task on every part present, named ``<part>_<metric>``."""
    out: dict[str, float] = {}
    proba_cols = [f"proba:{c}" for c in classes]
    for part, rows in predictions.groupby("part", sort=False):
        proba = rows[proba_cols].to_numpy() if task == "classification" else None
        for name, value in evaluate(task, rows["y_true"].to_numpy(), rows["y_pred"].to_numpy(),
                                    proba=proba, classes=classes).items():
            out[f"{part}_{name}"] = value
    return out


def _params(estimator: Any) -> dict[str, Any]:
    """The estimator's JSON-able settings (not the column list, which the schema holds)."""
    skip = {"features", "verbose", "device"}
    return {k: (list(v) if isinstance(v, tuple) else v)
            for k, v in estimator.get_params().items()
            if k not in skip and (v is None or isinstance(v, str | int | float | bool | tuple))}


def record_iteration(fit: FitResult, dataset: Dataset, split: Split, *, metric: str,
                     tracker: Tracker, tags: dict[str, str] | None = None,
                     report: bool = True, project_name: str = "") -> Iteration:
    """Evaluate a fitted candidate on train and val, and store everything as one run."""
    predictions = predict_parts(fit.estimator, dataset, split, ("train", "val"),
                                train_ids=fit.train_ids)
    metrics = score_parts(predictions, dataset.task, list(fit.estimator.classes_)
                          if dataset.task == "classification" else [])
    params = _params(fit.estimator)
    all_tags = {"loopml.architecture": fit.architecture, "loopml.data_version": dataset.version,
                "loopml.split_version": split.version, **(tags or {})}
    with tracker.run(name=f"{fit.architecture}", tags=all_tags) as run:
        iteration = Iteration(
            run_id=run.run_id, architecture=fit.architecture, params=params, metrics=metrics,
            metric=metric, data_version=dataset.version, split_version=split.version,
            created=datetime.now(UTC).isoformat(timespec="microseconds"),
            duration_s=round(fit.seconds, 3),
            n_train=len(split.ids("train") if fit.train_ids is None else fit.train_ids),
            tags=dict(tags or {}), path=run.local_dir)
        run.log(params=params, metrics={**metrics, "fit_seconds": fit.seconds})
        run.save_model(fit.estimator, schema=dataset.schema())
        predictions.to_parquet(run.local_dir / PREDICTIONS_FILE, index=False)
        if report:
            write_report(iteration, predictions, dataset, project_name=project_name)
        iteration.save()
    return iteration


def write_report(iteration: Iteration, predictions: pd.DataFrame, dataset: Dataset, *,
                 candidates: list[Iteration] | None = None, project_name: str = "") -> Path:
    """(Re)write the run's report, with every section its stored results allow.

    A stored diagnosis (``diagnosis.json``) and error analysis (``errors.json``)
    in the run's folder each add their section.
    """
    from loopml.diagnose import Diagnosis
    from loopml.errors.report import ErrorReport
    from loopml.report.iteration import iteration_report

    report = iteration_report(
        iteration=iteration.to_dict(), predictions=predictions,
        task=dataset.task, metric=iteration.metric,
        classes=[str(c) for c in dataset.classes] or None,
        candidates=[c.to_dict() for c in candidates] if candidates else None,
        project_name=project_name)
    diagnosis = Diagnosis.load(iteration.path) if iteration.path else None
    if diagnosis is not None:
        from loopml.report.diagnosis import add_diagnosis_section

        add_diagnosis_section(report, diagnosis.to_dict())
    errors = ErrorReport.load(iteration.path) if iteration.path else None
    if errors is not None:
        from loopml.report.errors import add_errors_section

        add_errors_section(report, errors)
    return report.write(iteration.report_path)
