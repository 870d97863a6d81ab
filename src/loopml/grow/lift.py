"""The lift of an action: did the examples it added help, overall and per group?

The same action helps one model and hurts another (shift augmentation lifts an
RBF SVC on digits and sinks a logistic regression), so loopml never assumes:
it retrains the *reference* run's architecture and settings twice per seed,

- **before**: on the train part without the action's examples,
- **after**: on the train part with them,

and scores both on the *same* val ids (the val part minus any of the action's
own rows, so a collect action that placed rows in val cannot move the
yardstick). Seeds are ``factory.seed + i`` for ``i < seeds``: the model's seed
and its early-stopping holdout change together, so the spread over seeds is
the noise a difference must beat.

A reference trained on a share ``f`` of the train part
(``Project.train(train_fraction=f)``, tag :data:`FRACTION_TAG`) is lifted at
that share, not on the whole part: *before* is the seeded share ``f`` of the
train part without the action's examples (:func:`loopml.train.train_subset`,
drawn with each fit's seed, so the spread includes which rows were drawn) and
*after* is that share plus all of the action's train examples.

The rule for a change "beyond the spread" is deliberately simple: the
difference of the means must exceed the larger of the two standard deviations
over seeds (sample std, ``ddof=1``; 0 with one seed). A change within it is
reported as such, never as a gain or a loss. Every stored group with at least
:data:`MIN_GROUP_VAL` val members is scored the same way, and every group that
got worse beyond the spread is listed in :attr:`Lift.worse`, so a harmful
action is shown, not averaged away.

Nothing here writes, except :func:`record_lift`, which makes the lift an MLflow
run whose folder holds ``lift.json`` (:data:`loopml.track.LIFT_FILE`, which
the tracker's tidy-up counts as a whole run's record).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from loopml.atomic import write_text_atomic
from loopml.data.dataset import Dataset
from loopml.data.split import Split
from loopml.exceptions import LoopmlError
from loopml.groups import Groups, Rows, membership
from loopml.iteration import Iteration
from loopml.metrics import METRICS
from loopml.models.registry import EstimatorFactory
from loopml.parallel import parallel_map
from loopml.progress import Progress, counter
from loopml.track import LIFT_FILE, Tracker
from loopml.train import fit_candidate, train_subset

#: a group needs this many val members to be scored (fewer: its metric is noise)
MIN_GROUP_VAL = 5
OVERALL = "overall"
#: the tag of a run trained on a share of the train part (``Project.train``)
FRACTION_TAG = "loopml.train_fraction"


class LiftVerdict(StrEnum):
    """What a change in the metric amounts to, against the seed spread."""

    GAIN = "gain"
    LOSS = "loss"
    WITHIN_SPREAD = "within spread"
    UNDEFINED = "undefined"  # the metric is not defined on these rows (one class only)


@dataclass(frozen=True)
class SeedScores:
    """The metric of one side (before or after) on one set of rows, one value per seed."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        finite = [v for v in self.values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds (0 with one seed)."""
        finite = [v for v in self.values if np.isfinite(v)]
        return float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _plain(self.mean), "std": _plain(self.std),
                "values": [_plain(v) for v in self.values]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeedScores:
        return cls(tuple(float("nan") if v is None else float(v) for v in data["values"]))


@dataclass(frozen=True)
class GroupLift:
    """The metric before and after the action on one set of val rows (a group, or all)."""

    key: str
    name: str
    n_val: int
    before: SeedScores
    after: SeedScores
    greater_is_better: bool

    @property
    def delta(self) -> float:
        """After minus before, in the metric's unit (its sign follows the metric)."""
        return self.after.mean - self.before.mean

    @property
    def gain(self) -> float:
        """The delta in the good direction: positive is better, whatever the metric."""
        return self.delta if self.greater_is_better else -self.delta

    @property
    def spread(self) -> float:
        """The larger of the two seed spreads: the noise a delta must beat."""
        return max(self.before.std, self.after.std)

    @property
    def verdict(self) -> LiftVerdict:
        """Gain or loss when ``|delta| > spread`` (and not zero), else within the spread."""
        if not (np.isfinite(self.before.mean) and np.isfinite(self.after.mean)):
            return LiftVerdict.UNDEFINED
        if self.delta == 0 or abs(self.delta) <= self.spread:
            return LiftVerdict.WITHIN_SPREAD
        return LiftVerdict.GAIN if self.gain > 0 else LiftVerdict.LOSS

    def describe(self, metric: str) -> str:
        return (f"{metric} {_num(self.before.mean)}±{_num(self.before.std)} -> "
                f"{_num(self.after.mean)}±{_num(self.after.std)} "
                f"({self.delta:+.4f}, {self.verdict})")

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "n_val": self.n_val,
                "before": self.before.to_dict(), "after": self.after.to_dict(),
                "delta": _plain(self.delta), "gain": _plain(self.gain),
                "spread": _plain(self.spread), "verdict": str(self.verdict),
                "greater_is_better": self.greater_is_better}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupLift:
        return cls(key=data["key"], name=data["name"], n_val=int(data["n_val"]),
                   before=SeedScores.from_dict(data["before"]),
                   after=SeedScores.from_dict(data["after"]),
                   greater_is_better=bool(data["greater_is_better"]))


@dataclass
class Lift:
    """The measured lift of one action on one reference run (see the module doc)."""

    action_id: str
    reference_run: str
    architecture: str
    metric: str
    seeds: list[int]
    n_train_before: int
    n_train_after: int
    n_val: int
    val_digest: str  # a hash of the val ids both sides were scored on
    overall: GroupLift
    groups: list[GroupLift] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_id: str | None = None  # the MLflow run that records it, once recorded
    #: the reference's share of the train part, taken on both sides (None: all of it)
    train_fraction: float | None = None

    @property
    def worse(self) -> list[GroupLift]:
        """The groups that got worse beyond the seed spread."""
        return [g for g in self.groups if g.verdict is LiftVerdict.LOSS]

    @property
    def better(self) -> list[GroupLift]:
        return [g for g in self.groups if g.verdict is LiftVerdict.GAIN]

    def describe(self) -> str:
        """One line: the overall change, and the groups that got worse."""
        added = self.n_train_after - self.n_train_before
        share = (f" trained on {self.train_fraction:.0%} of train ({self.n_train_before} rows)"
                 if self.train_fraction is not None else "")
        line = (f"lift of {self.action_id} (+{added} train examples) on {self.architecture} "
                f"{self.reference_run[:8]}{share} over {len(self.seeds)} seed(s): val "
                f"{self.overall.describe(self.metric)}")
        if self.worse:
            names = ", ".join(g.name for g in self.worse[:3])
            more = f" and {len(self.worse) - 3} more" if len(self.worse) > 3 else ""
            line += f"; {len(self.worse)} group(s) worse beyond the spread: {names}{more}"
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"action_id": self.action_id, "reference_run": self.reference_run,
                "architecture": self.architecture, "metric": self.metric,
                "seeds": list(self.seeds), "n_train_before": self.n_train_before,
                "n_train_after": self.n_train_after, "n_val": self.n_val,
                "val_digest": self.val_digest, "overall": self.overall.to_dict(),
                "groups": [g.to_dict() for g in self.groups],
                "worse": [g.key for g in self.worse], "notes": list(self.notes),
                "run_id": self.run_id, "train_fraction": self.train_fraction,
                "describe": self.describe()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lift:
        """The Lift :meth:`to_dict` wrote; KeyError / TypeError / ValueError if damaged.

        ``train_fraction`` may be absent: lifts recorded before it existed were
        all measured on the whole train part.
        """
        fraction = data.get("train_fraction")
        return cls(action_id=data["action_id"], reference_run=data["reference_run"],
                   architecture=data["architecture"], metric=data["metric"],
                   seeds=[int(s) for s in data["seeds"]],
                   n_train_before=int(data["n_train_before"]),
                   n_train_after=int(data["n_train_after"]), n_val=int(data["n_val"]),
                   val_digest=data["val_digest"], overall=GroupLift.from_dict(data["overall"]),
                   groups=[GroupLift.from_dict(g) for g in data["groups"]],
                   notes=[str(n) for n in data["notes"]], run_id=data["run_id"],
                   train_fraction=None if fraction is None else float(fraction))


# ---------------------------------------------------------------- measuring


def measure_lift(reference: Iteration, dataset: Dataset, split: Split, *, action_id: str,
                 factory: EstimatorFactory, groups: Groups, metric: str, seeds: int = 3,
                 n_jobs: int | None = None, progress: Progress | None = None) -> Lift:
    """Retrain ``reference``'s architecture with and without ``action_id``'s examples.

    Parameters
    ----------
    reference : Iteration
        The run whose architecture and recorded settings are retrained.
    dataset, split : Dataset, Split
        The current data (with the action's examples) and its split.
    action_id : str
        The full id of the action (``dataset.provenance["action_id"]``).
    factory : EstimatorFactory
        The project's estimator maker; seed ``i`` is ``factory.seed + i``.
    groups : Groups
        The stored groups scored on val (those with fewer than
        :data:`MIN_GROUP_VAL` val members, or that cannot be applied, are left
        out with a note).
    metric : str
        The scope metric.
    seeds : int, default 3
        Fits per side; with a reference trained on a share of train
        (:func:`train_fraction_of`), seed ``s`` also draws that share.
        ``2 * seeds`` fits in all, run by
        :func:`loopml.parallel.parallel_map` when ``n_jobs`` > 1.
    progress : callable, optional
        Hears ``("fits", done, 2 * seeds)``.

    Returns
    -------
    Lift
        Not recorded yet: :func:`record_lift` makes it an MLflow run.
    """
    train_before, train_after, val = lift_ids(dataset, split, action_id)
    _check_seeds(seeds)
    fraction = train_fraction_of(reference)
    if len(val) == 0:
        raise LoopmlError("the val part is empty: there is nothing to measure the lift on",
                          hint="re-split the project with a val part ('loopml resplit')")
    estimator = factory.like(reference.architecture, reference.params)
    seed_list = [factory.seed + i for i in range(seeds)]
    shares = {seed: train_subset(dataset, split, fraction, seed=seed, ids=train_before)
              for seed in seed_list}
    own = train_after.difference(train_before, sort=False)
    tasks = [(after, seed) for after in (False, True) for seed in seed_list]
    advance = counter(progress, "fits", len(tasks))

    def fit(task: tuple[bool, int]) -> tuple[np.ndarray, np.ndarray | None, list]:
        after, seed = task
        model = clone(estimator).set_params(random_state=seed)
        ids = shares[seed].append(own) if after else shares[seed]
        fitted = fit_candidate(reference.architecture, model, dataset, split,
                               train_ids=ids).estimator
        return _predict(fitted, dataset, val)

    outputs = []
    for output in parallel_map(fit, tasks, n_jobs=n_jobs):
        outputs.append(output)
        advance()
    before, after = outputs[:seeds], outputs[seeds:]
    y = dataset.y(val)
    rows = Rows.of(dataset, val, predictions=_reference_predictions(reference, val))
    spec = METRICS[metric]
    notes: list[str] = []

    def side(mask: np.ndarray | None, fits: list) -> SeedScores:
        return SeedScores(tuple(_score(spec.name, y, pred, proba, classes, mask)
                                for pred, proba, classes in fits))

    def lift_of(key: str, name: str, mask: np.ndarray | None) -> GroupLift:
        n = len(val) if mask is None else int(mask.sum())
        return GroupLift(key, name, n, side(mask, before), side(mask, after),
                         spec.greater_is_better)

    scored, small = [], 0
    for key, group in groups.items():
        try:
            mask = membership(group, rows)
        except (LoopmlError, ValueError, TypeError) as exc:
            notes.append(f"group '{group.name}' not scored: {exc}")
            continue
        if mask.sum() >= MIN_GROUP_VAL:
            scored.append(lift_of(key, group.name, mask))
        else:
            small += 1
    if small:
        notes.append(f"{small} group(s) with fewer than {MIN_GROUP_VAL} val members not scored")
    return Lift(action_id=action_id, reference_run=reference.run_id,
                architecture=reference.architecture, metric=spec.name, seeds=seed_list,
                n_train_before=len(shares[seed_list[0]]),
                n_train_after=len(shares[seed_list[0]]) + len(own),
                n_val=len(val), val_digest=_digest(val), overall=lift_of(OVERALL, OVERALL, None),
                groups=sorted(scored, key=lambda g: g.gain), notes=notes,
                train_fraction=fraction)


def train_fraction_of(reference: Iteration) -> float | None:
    """The share of the train part ``reference`` was trained on; None for all of it.

    Read from its :data:`FRACTION_TAG` tag; a tag that is not a number in
    (0, 1] is a LoopmlError (the lift would otherwise train on the wrong rows).
    """
    tag = reference.tags.get(FRACTION_TAG)
    if tag is None:
        return None
    try:
        fraction = float(tag)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction <= 1:
        raise LoopmlError(f"run {reference.run_id[:8]} has tag {FRACTION_TAG}={tag!r}, not a "
                          "share of the train part in (0, 1]",
                          hint="retrain the reference ('loopml train --train-fraction F') or "
                               "name another run (--run)")
    return None if fraction >= 1 else fraction


def lift_ids(dataset: Dataset, split: Split, action_id: str
             ) -> tuple[pd.Index, pd.Index, pd.Index]:
    """(train without the action, train with it, val without the action's own rows).

    An action with no train examples in the data (all dropped, or all placed
    in val / test) has no lift to measure: a LoopmlError says which.
    """
    ids = dataset.provenance.index[dataset.provenance["action_id"] == action_id]
    train = split.ids("train")
    own = train.intersection(ids)
    if len(own) == 0:
        where = split.parts.reindex(ids).value_counts().to_dict() if len(ids) else {}
        placed = ", ".join(f"{n} in {p}" for p, n in where.items())
        raise LoopmlError(
            f"action {action_id} has no train examples in the current data"
            + (f" ({placed})" if placed else ": its examples are gone"),
            hint="the lift retrains with and without an action's train examples; "
                 "'loopml data' lists the actions and where their examples are")
    before = train.difference(ids, sort=False)
    val = split.ids("val")
    return before, train, val.difference(ids, sort=False)


def _check_seeds(seeds: int) -> None:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise LoopmlError(f"seeds must be a whole number of at least 1, got {seeds!r}",
                          hint="3 or more gives a spread to judge the lift against")


def _predict(estimator: Any, dataset: Dataset, ids: pd.Index
             ) -> tuple[np.ndarray, np.ndarray | None, list]:
    X = dataset.X(ids)
    if dataset.task != "classification":
        return np.asarray(estimator.predict(X)), None, []
    proba = np.asarray(estimator.predict_proba(X))
    classes = list(estimator.classes_)
    return np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)], proba, classes


def _score(metric: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None,
           classes: list, mask: np.ndarray | None) -> float:
    spec = METRICS[metric]
    if mask is not None:
        y, pred = y[mask], pred[mask]
        proba = None if proba is None else proba[mask]
    if spec.needs_proba and proba is None:
        return float("nan")
    if spec.task == "classification":
        # Compared as text: the data's labels and the model's classes_ may differ in
        # dtype (int64 vs object), and scikit-learn cannot type an object array of ints.
        y, pred = np.asarray(y).astype(str), np.asarray(pred).astype(str)
        classes = [str(c) for c in classes]
    return float(spec.compute(y, pred, proba=proba, classes=classes or None))


def _reference_predictions(reference: Iteration, val: pd.Index) -> np.ndarray | None:
    """The reference run's val predictions, for groups of confused pairs; None if not all."""
    try:
        stored = reference.predictions()
    except LoopmlError:
        return None
    by_id = stored[stored["part"] == "val"].set_index("id")["y_pred"]
    aligned = by_id.reindex(val.astype(str))
    return None if aligned.isna().any() else aligned.to_numpy()


def _digest(ids: pd.Index) -> str:
    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- recording


def record_lift(lift: Lift, tracker: Tracker, *, tags: dict[str, str] | None = None) -> Lift:
    """Make the lift an MLflow run; its folder holds ``lift.json``. Sets ``lift.run_id``.

    Metrics: ``lift_val_<metric>_before`` / ``_after`` / ``_before_std`` /
    ``_after_std`` / ``_delta`` overall, and the same with ``lift_<group>_``
    for every scored group (the key, with characters MLflow refuses as ``_``).
    """
    all_tags = {"loopml.verb": "lift", "loopml.action_id": lift.action_id,
                "loopml.reference_run": lift.reference_run,
                "loopml.architecture": lift.architecture,
                "loopml.lift_verdict": str(lift.overall.verdict), **(tags or {})}
    with tracker.run(name=f"lift {lift.action_id}", tags=all_tags) as run:
        lift.run_id = run.run_id
        metrics = _metrics("val", lift.overall, lift.metric)
        for group in lift.groups:
            metrics.update(_metrics(_metric_key(group.key), group, lift.metric))
        run.log(params={"action_id": lift.action_id, "reference_run": lift.reference_run,
                        "seeds": len(lift.seeds), "n_train_before": lift.n_train_before,
                        "n_train_after": lift.n_train_after, "n_val": lift.n_val,
                        "train_fraction": lift.train_fraction or 1.0},
                metrics={k: v for k, v in metrics.items() if np.isfinite(v)})
        write_text_atomic(run.local_dir / LIFT_FILE, json.dumps(lift.to_dict(), indent=2) + "\n")
    return lift


def _metrics(prefix: str, group: GroupLift, metric: str) -> dict[str, float]:
    base = f"lift_{prefix}_{metric}"
    return {f"{base}_before": group.before.mean, f"{base}_after": group.after.mean,
            f"{base}_before_std": group.before.std, f"{base}_after_std": group.after.std,
            f"{base}_delta": group.delta}


def _metric_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", key)[:180]


def _plain(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _num(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) else "n/a"
