"""The retraining trigger: alarmed production rows -> data, a challenger, a judged promotion.

``loopml monitor --retrain`` (:meth:`loopml.project.Project.retrain`) closes
the loop in four steps, each a function here that takes plain inputs:

1. :func:`select_rows` picks the champion's logged rows the alarms point at:
   every row of a window where a feature, the predictions or the performance
   alarmed, and the members of a group whose share or error alarmed in that
   window (or every row, when asked). Rows a past retrain trained on are left
   out (a row is used once).
2. :func:`split_feedback` cuts them three ways. Rows without feedback become a
   labelling queue written like ``loopml collect``'s (:func:`production_queue`;
   ``loopml collect import`` merges their labels later). Rows with feedback
   join the data as collected examples, except the newest
   :data:`CHECK_SHARE` of them (at least :data:`MIN_CHECK_ROWS`): the *recent
   production* check set. Why the newest: they are the traffic the challenger
   would serve next. Why held out: a model judged on rows it trained on looks
   better than it is, so the promotion would be biased. They are never added.
3. :func:`train_challenger` trains the champion run's architecture and
   settings (or another family) on the updated data: a normal tracked run,
   tagged ``loopml.challenger_of``.
4. :func:`judge` compares challenger and champion on the *same* rows, twice:
   on val and on the recent production rows, with a paired bootstrap of the
   per-row loss difference (:data:`RULE`). Promotion needs both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.data.dataset import ID_NAME, Dataset
from loopml.data.split import Split
from loopml.exceptions import LoopmlError
from loopml.grow.collect import QUEUE_COLUMNS, Queue, new_queue_id
from loopml.iteration import Iteration
from loopml.jsonable import json_ready
from loopml.models.registry import EstimatorFactory
from loopml.serve.monitor import MonitorResult, as_class, label_score, logged_inputs, row_losses
from loopml.track import Tracker
from loopml.train import fit_candidate, record_iteration

CHECK_SHARE = 0.3  # the newest share of the labelled rows held out to judge the challenger
MIN_CHECK_ROWS = 20  # fewer held-out rows cannot show a gain beyond chance
RESAMPLES = 2000
CONFIDENCE = 0.95
CHALLENGER_TAG = "loopml.challenger_of"
DECISION_PREFIX = "retrain-"  # .loopml/deployments/retrain-<stamp>.json
WINDOW_KINDS = ("feature", "prediction", "performance")  # an alarm of the whole window
RULE = (f"paired bootstrap ({RESAMPLES} resamples, {CONFIDENCE:.0%} CI) of the per-row loss "
        "difference champion - challenger (0/1 error; absolute error for regression) on the "
        "same rows: promoted only if the CI on the recent production rows lies above 0 "
        "(better beyond chance) AND the CI on val reaches 0 or above (not worse beyond "
        "chance: val holds the old traffic, where a fix of the new rows need not gain but "
        "must not lose)")


# ---------------------------------------------------------------- choosing rows


def select_rows(log: pd.DataFrame, monitored: MonitorResult, members: Mapping[str, np.ndarray],
                *, all_rows: bool = False, used: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of ``log`` (the monitored rows, oldest first) the alarms point at.

    ``members``: group key -> bool mask over ``log``. Adds a column ``alarm``
    naming the first alarm that picked each row (``alarm_group``: its group
    key, "" for a window's alarm). Raises when nothing alarmed
    and not ``all_rows``.
    """
    reasons = pd.Series([None] * len(log), index=log.index, dtype=object)
    groups = pd.Series([""] * len(log), index=log.index, dtype=object)
    if all_rows:
        reasons[:] = "all rows (--all)"
    else:
        if not monitored.alarms:
            raise LoopmlError(f"nothing alarmed in the {len(log)} monitored row(s) of version "
                              f"{monitored.version}: there is nothing to retrain on",
                              hint="retrain on every logged row with --all, or wait for an "
                                   "alarm")
        ends = np.cumsum([w.rows for w in monitored.windows])
        for check in monitored.alarms:
            lo, hi = int(ends[check.window] - monitored.windows[check.window].rows), \
                int(ends[check.window])
            mask = np.zeros(len(log), bool)
            mask[lo:hi] = True
            if check.kind not in WINDOW_KINDS:
                mask &= members.get(check.name, np.zeros(len(log), bool))
            label = f"{check.kind} {check.name} (window {check.window})"
            first = mask & reasons.isna().to_numpy()
            reasons[first] = label
            groups[first] = "" if check.kind in WINDOW_KINDS else check.name
    picked = log.assign(alarm=reasons, alarm_group=groups)[reasons.notna().to_numpy()]
    return picked[~picked["request_id"].astype(str).isin(set(used))]


@dataclass
class Feedback:
    """The selected rows cut three ways (each a slice of the log, oldest first)."""

    train: pd.DataFrame  # labelled, added as collected examples
    check: pd.DataFrame  # the newest labelled rows: judge only, never trained on
    unlabelled: pd.DataFrame  # the labelling queue


def split_feedback(rows: pd.DataFrame, *, share: float = CHECK_SHARE,
                   min_check: int = MIN_CHECK_ROWS) -> Feedback:
    """Hold out the newest ``share`` of the labelled rows (at least ``min_check``) to judge."""
    labelled = rows[rows["label"].notna()]
    order = pd.to_datetime(labelled["time"], utc=True).argsort(kind="stable")
    labelled = labelled.iloc[order]
    n_check = max(min_check, int(np.ceil(share * len(labelled))))
    if len(labelled) < n_check + 1:
        raise LoopmlError(
            f"{len(labelled)} of the {len(rows)} selected production row(s) have feedback "
            f"labels; judging a challenger needs at least {min_check} held-out labelled rows "
            "and one more to train on", hint=f"send labels to POST /feedback (at least "
            f"{min_check + 1}), or label the rows with 'loopml collect' and import them")
    return Feedback(train=labelled.iloc[:-n_check], check=labelled.iloc[-n_check:],
                    unlabelled=rows[rows["label"].isna()])


def inputs_frame(rows: pd.DataFrame, dataset: Dataset) -> pd.DataFrame:
    """The logged inputs as the dataset's feature columns, indexed like ``rows``."""
    frame = logged_inputs(rows)
    missing = [c for c in dataset.features if c not in frame]
    if missing:
        raise LoopmlError(f"the logged inputs lack the feature column(s) {missing[:5]}",
                          hint="was the champion trained on other data? deploy a run of "
                               "this project's data")
    return frame[list(dataset.features)]


def checked_labels(rows: pd.DataFrame, dataset: Dataset) -> list[Any]:
    """The feedback labels as the dataset's values; an unknown class names its request."""
    if dataset.task != "classification":
        values = pd.to_numeric(rows["label"], errors="coerce")
        bad = rows.loc[values.isna().to_numpy(), "request_id"]
        if len(bad):
            raise LoopmlError(f"the feedback label of request {bad.iloc[0]} is not a number",
                              hint="send a number to POST /feedback for that request")
        return values.tolist()
    classes = {as_class(c): c for c in dataset.classes}
    out = []
    for request_id, label in zip(rows["request_id"], rows["label"], strict=True):
        if as_class(label) not in classes:
            raise LoopmlError(f"the feedback label {label!r} of request {request_id} is not a "
                              f"class of '{dataset.target}'",
                              hint=f"the classes are: {', '.join(map(str, classes))}; correct "
                                   "it with POST /feedback (the latest label counts)")
        out.append(classes[as_class(label)])
    return out


def production_queue(rows: pd.DataFrame, dataset: Dataset, *, version: str, run_id: str
                     ) -> Queue:
    """The unlabelled rows as a labelling queue (ids are the request ids), newest first."""
    X = inputs_frame(rows, dataset)
    confidence = [max(p.values()) if isinstance(p, Mapping) and p else np.nan
                  for p in rows.get("probabilities", [None] * len(rows))]
    group = rows["alarm_group"].astype(str).tolist()
    queued = X.assign(score=[1 - c if np.isfinite(c) else np.nan for c in confidence],
                      group=group, margin=np.nan, distance=np.nan,
                      predicted=rows["prediction"].tolist(), confidence=confidence,
                      reason=[f"production, version {version}: alarm {a}"
                              for a in rows["alarm"]])
    queued.index = pd.Index(rows["request_id"].astype(str), name=ID_NAME)
    queued = queued.iloc[::-1][[*X.columns, *QUEUE_COLUMNS]]
    alarms = list(dict.fromkeys(rows["alarm"]))
    return Queue(new_queue_id(), queued, f"production log of version {version}", run_id,
                 datetime.now(UTC).isoformat(timespec="seconds"), len(queued), len(queued),
                 groups=sorted({g for g in group if g}),
                 notes=[f"from production: version {version}; alarms: {', '.join(alarms)}"])


# ---------------------------------------------------------------- the challenger


def train_challenger(champion: Iteration, dataset: Dataset, split: Split, *,
                     factory: EstimatorFactory, tracker: Tracker, metric: str, version: str,
                     architecture: str | None = None, tags: Mapping[str, str] | None = None
                     ) -> Iteration:
    """The champion's architecture and settings (or ``architecture``) fitted on the new data."""
    name = architecture or champion.architecture
    estimator = factory.like(name, champion.params) if name == champion.architecture \
        else factory.make(name)
    try:
        fit = fit_candidate(name, estimator, dataset, split)
    except (ValueError, TypeError) as exc:
        raise LoopmlError(f"training the challenger ({name}) failed: {exc}".splitlines()[0],
                          hint="try another family with --arch") from exc
    return record_iteration(fit, dataset, split, metric=metric, tracker=tracker,
                            seed=factory.seed, tags={CHALLENGER_TAG: version, **(tags or {})})


@dataclass
class Comparison:
    """Challenger vs champion on one set of rows; ``difference`` > 0: the challenger is better."""

    rows: int
    metric: str
    champion: float
    challenger: float
    difference: float  # mean per-row loss of the champion minus the challenger's
    ci_low: float
    ci_high: float
    verdict: str  # better | worse | within chance


def compare(task: str, metric: str, y_true: Sequence[Any], champion: Sequence[Any],
            challenger: Sequence[Any], *, seed: int = 0) -> Comparison:
    """The paired bootstrap CI of the loss difference on the same rows (see :data:`RULE`)."""
    y_true = list(y_true)
    d = row_losses(task, y_true, list(champion)) - row_losses(task, y_true, list(challenger))
    rng = np.random.default_rng(seed)
    means = np.concatenate([d[rng.integers(0, len(d), size=(200, len(d)))].mean(axis=1)
                            for _ in range(RESAMPLES // 200)])
    alpha = (1 - CONFIDENCE) / 2
    low, high = (float(v) for v in np.quantile(means, [alpha, 1 - alpha]))
    name, base, _ = label_score(task, metric, y_true, list(champion))
    _, new, _ = label_score(task, metric, y_true, list(challenger))
    verdict = "better" if low > 0 else "worse" if high < 0 else "within chance"
    return Comparison(len(d), name, base, new, float(d.mean()), low, high, verdict)


@dataclass
class RetrainDecision:
    """What ``monitor --retrain`` did and why: the rows, the challenger, the two comparisons."""

    stamp: str
    champion: dict[str, Any]
    challenger_run: str
    architecture: str
    val: Comparison
    production: Comparison
    promoted: bool
    reasons: list[str]
    selected: int
    trained: int
    held_out: int
    queued: int
    action_id: str | None
    queue: dict[str, Any] | None
    alarms: list[str]
    examples: list[dict[str, str]] = field(default_factory=list)
    new_champion: str | None = None
    rule: str = RULE
    check_share: str = (f"the newest {CHECK_SHARE:.0%} of the labelled rows (at least "
                        f"{MIN_CHECK_ROWS}): the traffic the challenger would serve next, "
                        "never trained on, so the promotion check is not biased")
    path: Path | None = None
    monitored: MonitorResult | None = field(default=None, repr=False)  # not in to_dict

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, monitored=None))
        out.pop("monitored")
        out["path"] = str(self.path) if self.path else None
        return json_ready(out)


def judge(val: Comparison, production: Comparison) -> tuple[bool, list[str]]:
    """Promote only when better beyond chance on production and not worse beyond it on val."""
    reasons = []
    if production.verdict != "better":
        reasons.append(f"not better on the {production.rows} recent production rows beyond "
                       f"chance: loss difference {production.difference:+.4f}, CI "
                       f"[{production.ci_low:+.4f}, {production.ci_high:+.4f}] reaches 0 or less")
    if val.verdict == "worse":
        reasons.append(f"worse on val beyond chance ({val.rows} rows): loss difference "
                       f"{val.difference:+.4f}, CI [{val.ci_low:+.4f}, {val.ci_high:+.4f}] "
                       "lies below 0")
    if not reasons:
        reasons.append(f"better on the {production.rows} recent production rows (CI "
                       f"[{production.ci_low:+.4f}, {production.ci_high:+.4f}] above 0) and "
                       f"not worse on val (difference {val.difference:+.4f}, CI up to "
                       f"{val.ci_high:+.4f})")
    return not reasons[0].startswith(("not better", "worse")), reasons


def used_requests(folder: Path) -> set[str]:
    """Request ids past retrains added as examples (each row trains once)."""
    out: set[str] = set()
    for file in sorted(folder.glob(f"{DECISION_PREFIX}*.json")):
        try:
            out.update(e["request_id"] for e in json.loads(file.read_text())["examples"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
