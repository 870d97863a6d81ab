"""The Iteration: one trained candidate, as every later stage receives it.

It holds the candidate's architecture and parameters, its metrics on train and
val (and test, for the candidate ``loopml run`` chose), the data and split
versions and the seed it was built from, and where its files live
(``.loopml/runs/<run_id>/artifacts/``: the model with its schema, the
predictions, the report). Training makes one (:mod:`loopml.train`); diagnosis,
error analysis and reports only read it, so it lives below all of them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.atomic import write_parquet_atomic, write_text_atomic
from loopml.exceptions import LoopmlError
from loopml.metrics import METRICS
from loopml.track import MODEL_DIR

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
    seed: int = 0
    warnings: list[str] = field(default_factory=list)
    """what may make this run's scores misleading (leakage, no better than the
    majority reference, a perfect score); records older than it load with none"""
    path: Path | None = None

    def error(self, part: str) -> float:
        """The scope metric on a part ('train', 'val', 'test') as an error (0 is perfect)."""
        return METRICS[self.metric].error(self.metrics[f"{part}_{self.metric}"])

    @property
    def report_path(self) -> Path:
        return self.folder / REPORT_FILE

    @property
    def model_path(self) -> Path:
        return self.folder / MODEL_DIR

    @property
    def folder(self) -> Path:
        if self.path is None:
            raise LoopmlError(f"iteration {self.run_id} has no folder")
        return self.path

    def model(self) -> Any:
        """The fitted estimator (an sklearn-compatible Architecture)."""
        from loopml.track import load_model

        return load_model(self.model_path)

    def packaged(self) -> Any:
        """The model as a server uses it: input checked against its schema, probabilities out.

        See :class:`loopml.models.packaged.PackagedModel`; the same object
        ``mlflow.pyfunc.load_model(iteration.model_path)`` wraps.
        """
        from loopml.models.packaged import load

        return load(self.model_path)

    def predictions(self) -> pd.DataFrame:
        """The run's predictions on train and val (test too for a chosen candidate)."""
        file = self.folder / PREDICTIONS_FILE
        try:
            return pd.read_parquet(file)
        except FileNotFoundError:
            raise LoopmlError(f"the predictions of run {self.run_id[:8]} are missing ({file} "
                              "was deleted)", hint="its scores and 'loopml show' still work; "
                              "to diagnose it or analyse its errors, train the "
                              f"architecture ({self.architecture}) again with 'loopml train'"
                              ) from None
        except (OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors
            raise LoopmlError(f"the predictions of run {self.run_id[:8]} are not readable "
                              f"({file}: {exc})".splitlines()[0],
                              hint="train the architecture again with 'loopml train'"
                              ) from None

    def save_predictions(self, predictions: pd.DataFrame) -> Path:
        return write_parquet_atomic(predictions, self.folder / PREDICTIONS_FILE)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        return out

    def save(self) -> Path:
        """Write ``iteration.json`` atomically: a reader sees the old record or the new one."""
        return write_text_atomic(self.folder / ITERATION_FILE,
                                 json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Iteration:
        """Read a stored iteration; keys a later loopml added are ignored, not fatal."""
        file = Path(directory) / ITERATION_FILE
        try:
            data = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LoopmlError(f"{file} is not readable: {exc}",
                              hint="remove that run's folder, or restore the file") from None
        if not isinstance(data, dict):
            raise LoopmlError(f"{file} does not hold an iteration record")
        known = {f.name for f in fields(cls)} - {"path"}
        extra = sorted(set(data) - known)
        if extra:
            warnings.warn(f"{file}: ignoring unknown keys {extra}", stacklevel=2)
        try:
            iteration = cls(**{k: v for k, v in data.items() if k in known},
                            path=Path(directory))
        except TypeError as exc:
            raise LoopmlError(f"{file} is missing fields of an iteration record: {exc}",
                              hint="remove that run's folder, or restore the file") from None
        wrong = _wrong_fields(iteration)
        if wrong:
            raise LoopmlError(f"{file} has fields of the wrong type: {', '.join(wrong)}",
                              hint="remove that run's folder, or restore the file")
        return iteration


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "run_id": str, "architecture": str, "params": dict, "metrics": dict, "metric": str,
    "data_version": str, "split_version": str, "created": str, "duration_s": _NUMBER,
    "n_train": int, "tags": dict, "seed": int, "warnings": list}


def _wrong_fields(iteration: Iteration) -> list[str]:
    """The fields of a loaded record that would break a later reader (e.g. ``metrics: "x"``)."""
    wrong = [f"{name} (not {kind.__name__ if isinstance(kind, type) else 'a number'})"
             for name, kind in _FIELD_TYPES.items()
             if isinstance(getattr(iteration, name), bool)
             or not isinstance(getattr(iteration, name), kind)]
    if isinstance(iteration.metrics, dict) and any(
            isinstance(v, bool) or not isinstance(v, _NUMBER)
            for v in iteration.metrics.values()):
        wrong.append("metrics (a value is not a number)")
    if isinstance(iteration.metric, str) and iteration.metric not in METRICS:
        wrong.append(f"metric (unknown metric '{iteration.metric}')")
    return wrong


def best_iteration(runs: list[Iteration], *, data_version: str | None = None,
                   split_version: str | None = None) -> Iteration | None:
    """The run with the lowest val error among those on this data and split version.

    Val errors are only comparable on the same val part, so runs on another
    data or split version never compete (None: any version). Ties go to the
    earlier run; None when no run qualifies.
    """
    same = [it for it in runs
            if (data_version is None or it.data_version == data_version)
            and (split_version is None or it.split_version == split_version)
            and f"val_{it.metric}" in it.metrics]
    if not same:
        return None
    return min(same, key=lambda it: (it.error("val"), it.created, it.run_id))
