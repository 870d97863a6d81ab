"""Targeted collection: rank an unlabelled pool by how like the model's failures each row is.

Collecting more data of every kind is slow and mostly wasted; collecting rows
like the ones the model gets wrong is what error analysis is for. Three steps:

1. :func:`read_pool` reads a CSV or Parquet file with the source's columns
   (the target absent or empty) and checks it against the dataset, so a
   mistake is named before anything is written.
2. :func:`rank_pool` scores each row: *closeness* to the failing groups
   (membership of the stored groups error analysis ranked, weighted by their
   ceilings, and nearness to the failing val examples in the model's feature
   space) times the model's *uncertainty* (margin, ``1 - (p1 - p2)``). Rows are
   then picked per group, in proportion to each group's ceiling, skipping
   near-duplicates of rows already picked. Every row says why it was picked.
3. :func:`write_queue` stores the queue under ``.loopml/collect/<queue_id>/``:
   ``queue.csv``, ``label_studio.json`` (Label Studio's import format, with the
   model's prediction) and ``queue.json`` (pool, run, ids, imports).
   :func:`read_labels` + :func:`labelled_rows` turn a CSV (id,label) or a
   Label Studio export back into rows to add, all or nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.atomic import replace_dir_atomic, write_text_atomic
from loopml.data.dataset import ID_NAME, Dataset, content_ids, plain_value
from loopml.errors.report import ErrorReport, GroupStat
from loopml.exceptions import DataError, LoopmlError
from loopml.groups import Groups
from loopml.iteration import Iteration
from loopml.progress import Progress, no_progress

COLLECT_DIR = "collect"
QUEUE_CSV = "queue.csv"
LABEL_STUDIO_FILE = "label_studio.json"
QUEUE_FILE = "queue.json"
POOL_ID_PREFIX = "pool-"
SHOWN = 5  # rows or names listed in an error message
QUEUE_COLUMNS = ("score", "group", "margin", "distance", "predicted", "confidence", "reason")
#: a greedy pick skips rows closer than this share of the pool's median
#: nearest-neighbour distance to a row already picked: near-duplicates
DUPLICATE_SHARE = 0.5


# ---------------------------------------------------------------- reading the pool


def read_pool(path: str | os.PathLike[str], dataset: Dataset, *,
              id_column: str | None = None, ignore: Sequence[str] = ()) -> pd.DataFrame:
    """The pool's rows, indexed by id, with the dataset's feature and metadata columns.

    The pool holds the source's columns; the target may be absent or empty (a
    filled target is refused: those rows are labelled already). Columns the
    scope ignores are dropped. Ids come from ``id_column`` when the pool has
    it, else from the row's inputs (as the dataset makes content ids),
    prefixed with ``pool-`` so they never clash with the source's ids.

    Raises
    ------
    DataError
        Naming the file, the column and the line, for a missing, unreadable
        or empty pool, missing or extra columns, text in a numeric column,
        a filled target, repeated ids.
    """
    path = Path(path)
    frame = _read_table(path)
    where = f"pool {path}"
    line = _line_namer(path)
    if frame.empty:
        raise DataError(f"{where} has no rows", hint="give a pool with at least one row")
    frame.columns = [str(c) for c in frame.columns]
    target = dataset.target
    if target in frame.columns:
        filled = frame[target].notna() & (frame[target].astype(str).str.strip() != "")
        if filled.any():
            raise DataError(f"{where} has labels: column '{target}' is filled in "
                            f"{line(filled.to_numpy())}",
                            hint="the pool has labels; use `loopml data` / add them with "
                                 "`loopml collect import` (id,label), or empty the column")
        frame = frame.drop(columns=[target])
    features, metadata = list(dataset.features), list(dataset.metadata)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks the feature column(s) {missing[:SHOWN]}",
                        hint=f"give every feature of the dataset: {', '.join(features)}")
    allowed = {*features, *metadata, *ignore, *([id_column] if id_column else [])}
    extra = [c for c in frame.columns if c not in allowed]
    if extra:
        raise DataError(f"{where} has column(s) {extra[:SHOWN]} that the dataset does not have",
                        hint=f"the pool's columns are the features ({', '.join(features)}), "
                             "metadata, the id column and an empty target; drop the others")
    frame = frame.drop(columns=[c for c in ignore if c in frame.columns])
    for column, kind in dataset.features.items():
        if kind == "numeric":
            frame[column] = _numeric(frame[column], column, where, line)
        elif kind in ("categorical", "text"):
            frame[column] = _like_source(frame[column], dataset.frame[column])
    ids = _pool_ids(frame, id_column, where, line)
    keep = [*features, *[m for m in metadata if m in frame.columns and m not in features]]
    return frame[keep].set_axis(ids.rename(ID_NAME), axis=0)


def _read_table(path: Path) -> pd.DataFrame:
    if path.is_dir():
        raise DataError(f"pool {path} is a folder; a pool of image files is not supported "
                        "yet", hint="give a CSV or Parquet file with the source's columns")
    if not path.is_file():
        raise DataError(f"pool {path} does not exist", hint="check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except pd.errors.EmptyDataError:
        raise DataError(f"pool {path} is empty", hint="give a pool with a header and rows"
                        ) from None
    except Exception as exc:  # pandas and pyarrow raise many unrelated types
        raise DataError(f"pool {path} is not readable: {exc}".splitlines()[0]) from None
    raise DataError(f"pool {path} is neither CSV nor Parquet ('{suffix}')",
                    hint="give a .csv or .parquet file")


def _line_namer(path: Path):
    """A function naming the rows of a mask: file lines for a CSV (header = 1), else rows."""
    csv = path.suffix.lower() in (".csv", ".txt", ".tsv")

    def name(mask: np.ndarray) -> str:
        at = np.flatnonzero(mask)
        more = f", ... ({len(at) - SHOWN} more)" if len(at) > SHOWN else ""
        if csv:
            return "line " + ", ".join(str(i + 2) for i in at[:SHOWN]) + more
        return "row " + ", ".join(str(i + 1) for i in at[:SHOWN]) + more + " (1 = first)"

    return name


def _numeric(values: pd.Series, column: str, where: str, line) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(np.float64) if values.dtype.kind == "b" else values
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (numbers.isna() & values.notna()).to_numpy()
    if bad.any():
        first = values[bad].iloc[0]
        raise DataError(f"column '{column}' of {where} is numeric in the dataset but holds "
                        f"text: {str(first)[:40]!r} ({line(bad)})", hint="give numbers there")
    return numbers


def _like_source(values: pd.Series, source: pd.Series) -> pd.Series:
    """A categorical column typed like the source's: "1" and 1 are the same category."""
    if source.dtype == object and values.dtype != object:
        return values.astype(object).where(values.isna(), values.astype(str))
    return values


def _pool_ids(frame: pd.DataFrame, id_column: str | None, where: str, line) -> pd.Index:
    if id_column and id_column in frame.columns:
        ids = frame[id_column]
        if ids.isna().any():
            raise DataError(f"id column '{id_column}' of {where} is empty in "
                            f"{line(ids.isna().to_numpy())}", hint="give every row its id")
        ids = pd.Index(ids.astype(str))
        if not ids.is_unique:
            raise DataError(f"id column '{id_column}' of {where} repeats ids in "
                            f"{line(ids.duplicated(keep=False))}",
                            hint="give each row its own id")
        return ids
    inputs = frame.drop(columns=[id_column] if id_column in frame.columns else [])
    return pd.Index([POOL_ID_PREFIX + i for i in content_ids(inputs)])


# ---------------------------------------------------------------- ranking


@dataclass(frozen=True)
class FailingGroup:
    """A group error analysis ranked, with its pool members.

    ``ceiling`` is how much the metric's error would drop if every val error
    inside were fixed: the weight of the group and its share of the budget.
    """

    key: str
    name: str
    ceiling: float
    members: np.ndarray  # bool, one per pool row


@dataclass
class Queue:
    """A labelling queue: the picked pool rows, best first, and why each was picked."""

    queue_id: str
    rows: pd.DataFrame  # indexed by id: the pool's columns + QUEUE_COLUMNS
    pool: str
    run_id: str
    created: str
    budget: int
    n_pool: int
    groups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    imports: list[dict[str, Any]] = field(default_factory=list)
    folder: Path | None = None
    csv_copy: str | None = None

    @property
    def ids(self) -> list[str]:
        return [str(i) for i in self.rows.index]

    def per_group(self) -> dict[str, int]:
        """How many picked rows each group got ("" : picked for nearness alone)."""
        return dict(Counter(self.rows["group"].fillna("").astype(str)))

    def imported_ids(self) -> dict[str, str]:
        """Each imported id with the action that added it."""
        return {i: entry["action_id"] for entry in self.imports for i in entry["ids"]}

    def to_dict(self) -> dict[str, Any]:
        return {"queue_id": self.queue_id, "pool": self.pool, "run_id": self.run_id,
                "created": self.created, "budget": self.budget, "n_pool": self.n_pool,
                "groups": list(self.groups), "per_group": self.per_group(),
                "notes": list(self.notes), "ids": self.ids, "imports": list(self.imports),
                "folder": str(self.folder) if self.folder else None,
                "csv_copy": self.csv_copy}


def rank_pool(pool: pd.DataFrame, *, model: Any, features: Sequence[str],
              groups: Sequence[FailingGroup], failing: pd.DataFrame, budget: int,
              seed: int = 0, neighbours: int = 5, progress: Progress | None = None
              ) -> tuple[pd.DataFrame, list[str]]:
    """Pick ``budget`` rows of ``pool`` worth labelling; returns (rows, notes).

    Parameters
    ----------
    pool : DataFrame (n, columns), indexed by id, with the model's ``features``.
    model : a fitted loopml Architecture (``predict_proba`` for classification).
    groups : the failing groups, with their members in the pool. Rows are
        picked per group, in proportion to each group's ceiling; the rest of
        the budget goes to the best rows of any group (or none).
    failing : the val examples the model got wrong (their feature columns).
    budget : rows to pick; more than the pool holds is an error.

    Each row's score is closeness x uncertainty: closeness is the mean of
    (a) the largest ceiling, relative to the top one, of the groups it belongs
    to and (b) ``exp(-d / d_median)`` with ``d`` its mean distance to its
    ``neighbours`` nearest failing val examples; uncertainty is the margin
    ``1 - (p1 - p2)``. The returned frame holds the pool's columns and
    score, group, margin, distance, predicted, confidence, reason.
    """
    report = progress or no_progress
    if budget < 1:
        raise LoopmlError(f"budget must be at least 1, not {budget}")
    if budget > len(pool):
        raise LoopmlError(f"budget {budget} is larger than the pool ({len(pool)} rows)",
                          hint=f"ask for at most {len(pool)} rows, or give a larger pool")
    notes: list[str] = []
    X = pool[list(features)]
    report("scoring", 0, 3)
    margin, predicted, confidence = _uncertainty(model, X)
    report("scoring", 1, 3)
    space = _space(model, X, failing[list(features)] if len(failing) else None)
    pool_space, failing_space = space
    distance = _distance_to_failing(pool_space, failing_space, neighbours)
    if failing_space is None:
        notes.append("no failing val examples: closeness counts group membership alone"
                     if groups else "no failing val examples and no failing group in the "
                     "pool: rows are ranked by the model's uncertainty alone")
    report("scoring", 2, 3)
    weight, best_group = _group_weight(groups, len(pool))
    near = np.exp(-distance / (np.median(distance) or 1.0)) if failing_space is not None \
        else np.zeros(len(pool))
    has_groups = bool(groups)
    closeness = 0.5 * weight + 0.5 * near if has_groups and failing_space is not None \
        else weight if has_groups else near if failing_space is not None else np.ones(len(pool))
    score = closeness * margin
    report("scoring", 3, 3)
    order = _picks(score, best_group, groups, pool_space, budget, seed=seed, notes=notes)
    names = {g.key: g.name for g in groups}
    rows = pool.iloc[order].copy()
    rows["score"] = score[order]
    rows["group"] = [best_group[i] or "" for i in order]
    rows["margin"] = margin[order]
    rows["distance"] = distance[order]
    rows["predicted"] = [plain_value(v) for v in predicted[order]]
    rows["confidence"] = confidence[order]
    rows["reason"] = [_reason(best_group[i], names, margin[i], distance[i], predicted[i],
                              failing_space is not None) for i in order]
    return rows, notes


def _uncertainty(model: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Margin ``1 - (p1 - p2)``, predicted class and its probability, per row.

    A regressor has no margin: every row counts as equally uncertain (1).
    """
    if not hasattr(model, "predict_proba") or getattr(model, "task", "") == "regression":
        predicted = np.asarray(model.predict(X))
        return np.ones(len(X)), predicted, np.full(len(X), np.nan)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else \
        np.column_stack([np.zeros(len(proba)), proba[:, 0]])
    predicted = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
    return 1.0 - (top2[:, 1] - top2[:, 0]), predicted, top2[:, 1]


def _space(model: Any, pool: pd.DataFrame, failing: pd.DataFrame | None
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pool and failing rows in the model's feature space, else standardized numbers.

    The model's fitted preprocessing is the space it separates classes in;
    a sparse one (TF-IDF text) too wide to hold densely falls back to the
    standardized numeric features.
    """
    transform = getattr(model, "feature_space", None)
    if transform is not None and hasattr(model, "preprocessor_"):
        try:
            both = [transform(pool)] + ([transform(failing)] if failing is not None else [])
        except (ValueError, TypeError, KeyError):
            both = None
        if both is not None:
            dense = [_dense(b) for b in both]
            if all(d is not None for d in dense):
                return dense[0], dense[1] if failing is not None else None
    numeric = [c for c in pool.columns if pd.api.types.is_numeric_dtype(pool[c])]
    if not numeric:
        return np.zeros((len(pool), 1)), (np.zeros((len(failing), 1))
                                          if failing is not None else None)
    values = pool[numeric].to_numpy(np.float64)
    mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
    std = np.where(std > 0, std, 1.0)

    def scaled(frame: pd.DataFrame) -> np.ndarray:
        return np.nan_to_num((frame[numeric].to_numpy(np.float64) - mean) / std)

    return scaled(pool), scaled(failing) if failing is not None else None


def _dense(matrix: Any, widest: int = 4096) -> np.ndarray | None:
    if hasattr(matrix, "toarray"):
        if matrix.shape[1] > widest:
            return None
        matrix = matrix.toarray()
    return np.nan_to_num(np.asarray(matrix, dtype=np.float64))


def _distance_to_failing(pool: np.ndarray, failing: np.ndarray | None,
                         neighbours: int) -> np.ndarray:
    """Mean distance of each pool row to its nearest failing val examples (NaN: none)."""
    if failing is None or not len(failing):
        return np.full(len(pool), np.nan)
    from sklearn.neighbors import NearestNeighbors

    k = min(neighbours, len(failing))
    index = NearestNeighbors(n_neighbors=k).fit(failing)
    distances, _ = index.kneighbors(pool)
    return distances.mean(axis=1)


def _group_weight(groups: Sequence[FailingGroup], n: int
                  ) -> tuple[np.ndarray, list[str | None]]:
    """Per row: the largest relative ceiling of its groups, and that group's key."""
    weight = np.zeros(n)
    best: list[str | None] = [None] * n
    top = max((g.ceiling for g in groups), default=0.0) or 1.0
    for g in sorted(groups, key=lambda g: g.ceiling):  # the largest ceiling wins
        w = max(g.ceiling, 0.0) / top
        inside = np.flatnonzero(g.members & (w >= weight))
        weight[inside] = w
        for i in inside:
            best[i] = g.key
    return weight, best


def _picks(score: np.ndarray, best_group: list[str | None], groups: Sequence[FailingGroup],
           space: np.ndarray, budget: int, *, seed: int, notes: list[str]) -> list[int]:
    """Greedy picks: per-group quotas by ceiling, then the best of the rest; no duplicates."""
    rng = np.random.default_rng(seed)
    tie = rng.random(len(score)) * 1e-12  # seeded tie-break among equal scores
    order = np.lexsort((tie, -score))
    threshold = DUPLICATE_SHARE * _typical_gap(space, rng)
    picked: list[int] = []
    taken = np.zeros(len(score), bool)
    group_of = np.asarray(best_group, dtype=object)[order]  # in score order
    for key, quota in group_quotas({g.key: g.ceiling for g in groups}, budget).items():
        quota = min(quota, budget - len(picked))
        members = order[group_of == key].tolist()  # vectorised: 100k rows per group
        got = _greedy(members, quota, space, threshold, picked, taken)
        if got < quota:
            notes.append(f"group {key}: {got} of its quota of {quota} found in the pool")
    _greedy(list(order), budget - len(picked), space, threshold, picked, taken)
    if len(picked) < budget:  # the pool is mostly near-duplicates: fill up regardless
        notes.append(f"only {len(picked)} rows are not near-duplicates of each other; the "
                     "rest of the budget is filled with near-duplicates")
        _greedy(list(order), budget - len(picked), space, -1.0, picked, taken)
    return picked


def group_quotas(ceilings: Mapping[str, float], budget: int) -> dict[str, int]:
    """Each failing group's share of ``budget``, in proportion to its ceiling, largest first.

    The ceiling is how much the error would drop if the group's val errors
    were fixed, so the budget goes where fixing pays most. Quotas are rounded
    and never add up to more than ``budget``; a group with no ceiling gets none.
    """
    total = sum(max(c, 0.0) for c in ceilings.values())
    quotas: dict[str, int] = {}
    if total <= 0:
        return quotas
    left = budget
    for key, ceiling in sorted(ceilings.items(), key=lambda kv: -kv[1]):
        quotas[key] = min(round(budget * max(ceiling, 0.0) / total), left)
        left -= quotas[key]
    return quotas


def _greedy(candidates: list[int], quota: int, space: np.ndarray, threshold: float,
            picked: list[int], taken: np.ndarray) -> int:
    got = 0
    chosen = space[picked] if picked else np.empty((0, space.shape[1]))
    for i in candidates:
        if got >= quota:
            break
        if taken[i]:
            continue
        if len(chosen) and threshold >= 0 and \
                np.sqrt(((chosen - space[i]) ** 2).sum(axis=1)).min() <= threshold:
            continue
        picked.append(int(i))
        taken[i] = True
        chosen = np.vstack([chosen, space[i][None, :]])
        got += 1
    return got


def _typical_gap(space: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> float:
    """The median distance of a pool row to its nearest other row (on a sample)."""
    if len(space) < 3:
        return 0.0
    from sklearn.neighbors import NearestNeighbors

    rows = space if len(space) <= sample else space[rng.choice(len(space), sample,
                                                               replace=False)]
    distances, _ = NearestNeighbors(n_neighbors=2).fit(rows).kneighbors(rows)
    return float(np.median(distances[:, 1]))


def _reason(group: str | None, names: Mapping[str, str], margin: float, distance: float,
            predicted: Any, near: bool) -> str:
    parts = [f"in {names.get(group, group)}"] if group else []
    parts.append(f"uncertain (margin {margin:.2f}, predicted {plain_value(predicted)})")
    if near:
        parts.append(f"distance {distance:.2f} to failing val examples")
    return "; ".join(parts)


# ---------------------------------------------------------------- the queue on disk


def new_queue_id() -> str:
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"


def write_queue(queue: Queue, state_dir: str | os.PathLike[str], *, dataset: Dataset,
                out: str | os.PathLike[str] | None = None) -> Queue:
    """Write the queue's folder in one step (built aside, then renamed), and ``out``."""
    root = Path(state_dir) / COLLECT_DIR
    root.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=root, prefix=f".{queue.queue_id}."))
    try:
        csv = queue.rows.reset_index()
        csv.to_csv(build / QUEUE_CSV, index=False)
        (build / LABEL_STUDIO_FILE).write_text(json.dumps(
            label_studio_tasks(queue, dataset), indent=1, default=_json_default))
        (build / QUEUE_FILE).write_text(json.dumps(queue.to_dict(), indent=1))
        folder = replace_dir_atomic(build, root / queue.queue_id)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    queue.folder = folder
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / QUEUE_CSV, target)
        queue.csv_copy = str(target)
        write_text_atomic(folder / QUEUE_FILE, json.dumps(queue.to_dict(), indent=1))
    return queue


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return str(value)


def label_studio_tasks(queue: Queue, dataset: Dataset) -> list[dict[str, Any]]:
    """The queue as Label Studio import tasks: data, the model's prediction, target group.

    A labelling config with ``<Choices name="label" toName="...">`` over the
    classes reads the predictions as pre-annotations.
    """
    columns = [c for c in queue.rows.columns if c not in QUEUE_COLUMNS]
    to_name = next((c for c, k in dataset.features.items() if k in ("text", "image")),
                   "data")
    tasks = []
    for row_id, row in queue.rows.iterrows():
        data = {c: _cell(row[c]) for c in columns}
        data.update(loopml_id=str(row_id), target_group=row["group"] or None,
                    reason=row["reason"])
        prediction: dict[str, Any] = {"model_version": queue.run_id,
                                      "score": _cell(row["confidence"]), "result": []}
        if dataset.task == "classification":
            prediction["result"] = [{"from_name": "label", "to_name": to_name,
                                     "type": "choices",
                                     "value": {"choices": [str(row["predicted"])]}}]
        tasks.append({"data": data, "predictions": [prediction]})
    return tasks


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return plain_value(value)


def load_queue(state_dir: str | os.PathLike[str], queue_id: str | None = None) -> Queue:
    """The queue ``queue_id`` (a unique prefix is enough); none given: the newest."""
    root = Path(state_dir) / COLLECT_DIR
    found = sorted(p.name for p in root.iterdir() if (p / QUEUE_FILE).is_file()) \
        if root.is_dir() else []
    if not found:
        raise LoopmlError("this project has no collection queue yet",
                          hint="make one with 'loopml collect --pool FILE --budget N'")
    if queue_id is None:
        name = found[-1]
    else:
        matches = [q for q in found if q.startswith(queue_id)]
        if len(matches) != 1:
            raise LoopmlError(f"{'no' if not matches else len(matches)} queue(s) match "
                              f"'{queue_id}'", hint=f"the queues are: {', '.join(found)}")
        name = matches[0]
    folder = root / name
    try:
        meta = json.loads((folder / QUEUE_FILE).read_text())
        rows = pd.read_csv(folder / QUEUE_CSV, dtype={ID_NAME: str}).set_index(ID_NAME)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"queue {folder} is damaged: {type(exc).__name__}: {exc}",
                        hint="make a new queue with 'loopml collect'") from None
    rows["group"] = rows["group"].fillna("").astype(str)
    return Queue(meta["queue_id"], rows, meta["pool"], meta["run_id"], meta["created"],
                 meta["budget"], meta["n_pool"], groups=meta.get("groups", []),
                 notes=meta.get("notes", []), imports=meta.get("imports", []),
                 folder=folder, csv_copy=meta.get("csv_copy"))


def record_import(queue: Queue, *, action_id: str, ids: Sequence[str], file: str) -> Queue:
    """Mark ``ids`` imported by ``action_id`` in the queue's ``queue.json``."""
    queue.imports.append({"action_id": action_id, "ids": list(ids), "file": file,
                          "created": datetime.now(UTC).isoformat(timespec="seconds")})
    write_text_atomic(queue.folder / QUEUE_FILE, json.dumps(queue.to_dict(), indent=1))
    return queue


# ---------------------------------------------------------------- importing labels


def read_labels(path: str | os.PathLike[str]) -> list[tuple[str, str, Any]]:
    """(where, id, label) per labelled row of a CSV (id,label) or a Label Studio export.

    ``where`` names the row for error messages ("line 3", "task 2"). A Label
    Studio task without a (non-cancelled) annotation is skipped; two
    annotations of one task that disagree are a conflict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file {path} does not exist", hint="check the path")
    if path.suffix.lower() == ".json":
        return _label_studio_labels(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"label file {path} is not a readable CSV: {exc}".splitlines()[0],
                        hint="give a CSV with the columns id,label") from None
    columns = [str(c).strip() for c in frame.columns]
    if ID_NAME not in columns or len(columns) != 2:
        raise DataError(f"label file {path} has the columns {columns}; expected two: "
                        "id and the label", hint="give a CSV with the header id,label")
    label = next(c for c in columns if c != ID_NAME)
    frame.columns = columns
    return [(f"line {i + 2}", str(r[ID_NAME]).strip(), r[label].strip())
            for i, r in frame.iterrows()]


def _label_studio_labels(path: Path) -> list[tuple[str, str, Any]]:
    try:
        tasks = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"label file {path} is not JSON: {exc}",
                        hint="give Label Studio's JSON export, or a CSV id,label") from None
    if not isinstance(tasks, list):
        raise DataError(f"label file {path} is not a Label Studio export (a list of tasks)")
    out = []
    for n, task in enumerate(tasks, start=1):
        where = f"task {n}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not ("loopml_id" in data or ID_NAME in data):
            raise DataError(f"{where} of {path} has no data.loopml_id",
                            hint="export the tasks loopml's label_studio.json imported")
        row_id = str(data.get("loopml_id", data.get(ID_NAME)))
        choices = set()
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            for result in annotation.get("result") or []:
                chosen = (result.get("value") or {}).get("choices") or []
                choices.update(map(str, chosen))
        if len(choices) > 1:
            raise DataError(f"{where} of {path} (id {row_id}) has conflicting labels "
                            f"{sorted(choices)}", hint="settle on one label per task")
        if choices:
            out.append((where, row_id, choices.pop()))
    return out


def labelled_rows(labels: Sequence[tuple[str, str, Any]], queue: Queue, dataset: Dataset, *,
                  allow_new_class: bool = False) -> pd.DataFrame:
    """The queue's rows with their labels from ``labels``: all checked before any is used.

    Refused, each naming the row: an id not in the queue, an id already
    imported, an id given twice (with the same label: a duplicate; with
    another: a conflict), an empty label, a class the dataset does not know
    (unless ``allow_new_class``), a non-number for a regression target.
    """
    if not labels:
        raise DataError("the label file holds no labels",
                        hint="give rows id,label (or annotated Label Studio tasks)")
    queued, imported = set(queue.ids), queue.imported_ids()
    seen: dict[str, tuple[str, Any]] = {}
    classes = {str(c): c for c in dataset.classes}
    values = []
    for where, row_id, label in labels:
        if row_id not in queued:
            raise DataError(f"{where}: id '{row_id}' is not in queue {queue.queue_id}",
                            hint=f"label the queue's rows ({len(queued)} ids, in "
                                 f"{queue.folder / QUEUE_CSV if queue.folder else 'queue.csv'})")
        if row_id in imported:
            raise DataError(f"{where}: id '{row_id}' was imported already (action "
                            f"{imported[row_id]})", hint="leave it out of the file")
        if row_id in seen:
            first, before = seen[row_id]
            kind = "repeats" if str(before) == str(label) else "conflicts with"
            raise DataError(f"{where}: id '{row_id}' {kind} {first} "
                            f"({before!r} vs {label!r})", hint="give each id once")
        if label is None or str(label).strip() == "":
            raise DataError(f"{where}: id '{row_id}' has an empty label",
                            hint="label it, or leave the row out")
        seen[row_id] = (where, label)
        values.append(_label_value(where, label, dataset, classes, allow_new_class))
    ids = list(seen)
    rows = queue.rows.loc[ids, [c for c in queue.rows.columns if c not in QUEUE_COLUMNS]]
    rows = rows[[c for c in rows.columns if c in dataset.features or c in dataset.metadata]]
    return rows.assign(**{dataset.target: values})


def _label_value(where: str, label: Any, dataset: Dataset, classes: Mapping[str, Any],
                 allow_new_class: bool) -> Any:
    text = str(label).strip()
    if dataset.task == "regression":
        try:
            return float(text)
        except ValueError:
            raise DataError(f"{where}: label {text!r} is not a number, and target "
                            f"'{dataset.target}' is numeric", hint="give a number") from None
    if text in classes:
        return classes[text]
    if not allow_new_class:
        raise DataError(f"{where}: label {text!r} is not a class of '{dataset.target}'",
                        hint=f"the classes are: {', '.join(classes)}; --allow-new-class "
                             "adds a class")
    return text


def import_group(rows_ids: Sequence[str], queue: Queue) -> str | None:
    """The group the imported rows were collected for: the most frequent one among them."""
    groups = [g for g in queue.rows.loc[list(rows_ids), "group"] if g]
    return Counter(groups).most_common(1)[0][0] if groups else None


# ---------------------------------------------------------------- the whole step


def plan_queue(pool_path: str | os.PathLike[str], *, dataset: Dataset, iteration: Iteration,
               report: ErrorReport, groups: Groups, budget: int,
               names: Sequence[str] | None = None, id_column: str | None = None,
               ignore: Sequence[str] = (), seed: int = 0,
               progress: Progress | None = None) -> Queue:
    """Read and check the pool, find the failing groups in it, rank it: the queue to write.

    ``report`` is the reference run's error analysis: its ranked groups (with
    their ceilings) are the failing groups, its val errors the examples to be
    near. ``names`` restricts to some of those groups (keys or names).
    Nothing is written here.
    """
    from loopml.groups import Rows, membership

    pool = read_pool(pool_path, dataset, id_column=id_column, ignore=ignore)
    if budget > len(pool):
        raise LoopmlError(f"budget {budget} is larger than the pool {pool_path} "
                          f"({len(pool)} rows)",
                          hint=f"ask for at most {len(pool)} rows, or give a larger pool")
    ranked = [g for g in report.ranked() if g.ceiling > 0]
    chosen = _chosen_groups(ranked, names)
    rows = Rows.from_frame(pool, like=dataset)
    failing, notes = [], []
    for stat in chosen:
        definition = groups.get(stat.key) or stat.definition
        if definition is None:
            notes.append(f"group {stat.key}: no stored definition; not applied to the pool")
            continue
        try:
            members = membership(definition, rows)
        except LoopmlError as exc:  # a confused pair needs labels the pool has none of
            if names:
                raise LoopmlError(f"group '{stat.key}' cannot be found in an unlabelled "
                                  f"pool: {exc.message}",
                                  hint="name a slice, cluster or trait group") from None
            notes.append(f"group {stat.key}: not applied to the pool ({exc.message})")
            continue
        failing.append(FailingGroup(stat.key, stat.name, stat.ceiling, members))
    if names and not any(g.members.any() for g in failing):
        raise LoopmlError(f"no row of the pool {pool_path} belongs to the group(s) "
                          f"{', '.join(names)}", hint="give a pool with such rows, or "
                          "leave out --group")
    picked, rank_notes = rank_pool(pool, model=iteration.model(),
                                   features=list(dataset.features), groups=failing,
                                   failing=_failing_examples(iteration, dataset, report),
                                   budget=budget, seed=seed, progress=progress)
    if names:
        picked = picked[picked["group"] != ""]
    return Queue(new_queue_id(), picked, str(pool_path), iteration.run_id,
                 datetime.now(UTC).isoformat(timespec="seconds"), budget, len(pool),
                 groups=[g.key for g in failing], notes=notes + rank_notes)


def _chosen_groups(ranked: list[GroupStat], names: Sequence[str] | None) -> list[GroupStat]:
    if not names:
        return ranked
    by_name = {**{g.name: g for g in ranked}, **{g.key: g for g in ranked}}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        listed = ", ".join(f"{g.key} ({g.name})" for g in ranked[:20]) or "none"
        raise LoopmlError(f"no failing group {', '.join(map(repr, unknown))} in the error "
                          "report", hint=f"the failing groups are: {listed}")
    return list({by_name[n].key: by_name[n] for n in names}.values())


def _failing_examples(iteration: Iteration, dataset: Dataset, report: ErrorReport
                      ) -> pd.DataFrame:
    """The val examples the reference run got wrong that the dataset still holds."""
    from loopml.errors.report import Scorer

    predictions = iteration.predictions()
    val = predictions[predictions["part"] == "val"]
    scorer = Scorer.from_predictions(val, dataset.task, report.metric, dataset.classes)
    ids = pd.Index(scorer.ids[scorer.is_error]).intersection(dataset.ids)
    return dataset.X(ids)
