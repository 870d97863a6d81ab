"""The whole report of one run: the iteration, plus every section its evidence allows.

This is the one place that assembles a run's ``report.html``. Training,
diagnosis and error analysis do not write reports; the project asks for the
report to be rebuilt after each of them, handing over the typed evidence it
has (a :class:`~loopml.diagnose.Diagnosis`, an
:class:`~loopml.errors.report.ErrorReport`), so every section is drawn from
the same objects the autopilot reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from loopml.iteration import Iteration
from loopml.report.iteration import iteration_report

if TYPE_CHECKING:
    from loopml.data.dataset import Dataset
    from loopml.diagnose import Diagnosis
    from loopml.errors.report import ErrorReport
    from loopml.grow.ledger import LedgerEntry


def write_run_report(iteration: Iteration, predictions: pd.DataFrame, dataset: Dataset, *,
                     diagnosis: Diagnosis | None = None, errors: ErrorReport | None = None,
                     candidates: Sequence[Iteration] | None = None,
                     lifts: Sequence[LedgerEntry] = (), lifts_note: str | None = None,
                     project_name: str = "", assets: Path | None = None) -> Path:
    """(Re)write ``iteration``'s report with the sections of the evidence given.

    ``lifts`` are the ledger entries measured on this run (oldest first);
    ``lifts_note`` says why they cannot be shown (a damaged ledger).

    ``assets`` is the project's folder for the one shared copy of plotly.js
    (every run's report refers to it); None embeds plotly.js in the report.
    """
    report = iteration_report(
        iteration=iteration.to_dict(), predictions=predictions,
        task=dataset.task, metric=iteration.metric,
        classes=[str(c) for c in dataset.classes] or None,
        candidates=[c.to_dict() for c in candidates] if candidates else None,
        project_name=project_name)
    if diagnosis is not None:
        from loopml.report.diagnosis import add_diagnosis_section

        add_diagnosis_section(report, diagnosis)
    if errors is not None:
        from loopml.report.errors import add_errors_section

        add_errors_section(report, errors)
    if lifts or lifts_note is not None:
        from loopml.report.lift import add_lift_section

        add_lift_section(report, lifts, note=lifts_note)
    return report.write(iteration.report_path, assets=assets)
