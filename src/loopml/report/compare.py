"""The HTML report of a comparison (``loopml transfer --compare``).

One page per comparison, next to its ``comparison.json``: what was compared
(the candidates with their architecture and parameters), the val metric of
each candidate at each share of the train part with its spread over seeds and
the mean fit time, the chart of val metric against train rows (error bars one
std), and the recommendation at each share, which follows the autopilot's rule
(better only beyond the spread; among those within it, the cheapest). The test
part is never shown: a comparison only compares.
"""

from __future__ import annotations

import os
from pathlib import Path

from loopml.grow.compare import Comparison
from loopml.report.html import Report


def write_comparison_report(comparison: Comparison, path: str | os.PathLike[str], *,
                            title: str, project_name: str | None = None,
                            assets: str | os.PathLike[str] | None = None) -> Path:
    """Write ``comparison`` as an HTML page at ``path`` and return the path."""
    report = Report(title, subtitle=f"project {project_name}" if project_name else None)
    last = comparison.recommendation()
    section = report.add_section(
        "Recommendation", intro="A candidate is better only beyond the spread over seeds; "
                                "among those within the spread of the best, the cheapest.")
    section.add_text(last.sentence)
    for fraction in sorted(comparison.fractions):
        if fraction != max(comparison.fractions):
            section.add_text(comparison.recommendation(fraction).sentence, note=True)
    compared = report.add_section("Candidates")
    compared.add_table([{"candidate": c.label, "architecture": c.architecture,
                         "parameters": ", ".join(f"{k}={v}" for k, v in c.params.items())
                         or "defaults"} for c in comparison.candidates])
    compared.add_facts({"val examples": comparison.n_val,
                        "seeds": ", ".join(str(s) for s in comparison.seeds),
                        "train shares": ", ".join(f"{f:.0%}" for f in comparison.fractions)})
    scores = report.add_section(f"Val {comparison.metric} against train size")
    scores.add_figure(comparison.figure(),
                      caption="mean over seeds, error bars one standard deviation; the "
                              "seed also draws which train rows a share holds")
    best = {(last.best, max(comparison.fractions))}
    rows = comparison.rows()
    scores.add_table(rows, highlight=[i for i, r in enumerate(rows)
                                      if (r["candidate"], r["fraction"]) in best])
    return report.write(path, assets=assets)


__all__ = ["write_comparison_report"]
