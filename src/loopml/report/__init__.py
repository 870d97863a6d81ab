"""Self-contained HTML reports: plotly.js embedded, nothing fetched, opens offline.

:class:`Report` and :class:`Section` are the builder every stage uses;
:func:`build_iteration_report` writes the report of one trained iteration.
"""

from loopml.report.html import Report, Section, format_value
from loopml.report.iteration import build_iteration_report, iteration_report

__all__ = ["Report", "Section", "build_iteration_report", "format_value", "iteration_report"]
