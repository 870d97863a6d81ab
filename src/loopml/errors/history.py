"""Each group's error on every run, so the report shows whether the work on it paid off.

A slice found once stays defined (the project's group store,
:mod:`loopml.groups.store`), so each later ``loopml errors`` re-scores it on
the new run's predictions, next to every trait.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from loopml.errors.report import GroupHistory, RunRate, Scorer
from loopml.groups import Group

MAX_RUNS = 20


def rescore(runs: list[Any], masks: list[tuple[Group, pd.Series]], *, task: str,
            metric: str, classes: list) -> list[GroupHistory]:
    """Each group's error rate on every run (oldest first) over the val ids it shares.

    ``masks`` pairs each group with its membership, a bool Series indexed by id.
    Groups that no run has rows of are left out.
    """
    history = {g.key: GroupHistory(g.key, g.kind, g.name, []) for g, _ in masks}
    for run in runs[-MAX_RUNS:]:
        try:
            preds = run.predictions()
        except FileNotFoundError:
            continue
        val = preds[preds["part"] == "val"]
        if val.empty:
            continue
        scorer = Scorer.from_predictions(val, task, metric, classes)
        for group, mask in masks:
            inside = mask.reindex(scorer.ids, fill_value=False).to_numpy(dtype=bool)
            loss = scorer.loss[inside]
            history[group.key].runs.append(RunRate(
                run_id=run.run_id, architecture=run.architecture, created=run.created,
                size=int(inside.sum()), n_errors=int((inside & scorer.is_error).sum()),
                rate=float(loss.mean()) if len(loss) else float("nan")))
    return [h for h in history.values()
            if any(r.rate is not None and np.isfinite(r.rate) for r in h.runs)]
