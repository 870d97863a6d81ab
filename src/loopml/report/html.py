"""A small builder for self-contained HTML reports.

A report is a title and a list of sections; a section holds text, facts,
tables and Plotly figures, in the order they were added. plotly.js comes from
the installed ``plotly`` package, never a CDN, so a report opens offline. By
default the written file embeds it inline (one file that can be mailed); given
an ``assets`` folder, one shared copy is written there once and the report
refers to it by a relative path, so a project with hundreds of reports holds
plotly.js (4.8 MB) once and its folder can still be moved as a whole.
Every string that comes from the user (titles, column names, class labels) is
HTML-escaped here, so callers never have to.

Example
-------
>>> report = Report("digits", subtitle="iteration 3")
>>> section = report.add_section("Metrics per split")
>>> section.add_table([{"metric": "accuracy", "train": 0.99, "val": 0.96}])
>>> report.write("report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from loopml.atomic import write_text_atomic

# What Plotly's own writer runs before plotly.js: MathJax is never fetched.
_PLOTLY_CONFIG_SCRIPT = "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
_FIGURE_CONFIG = {"displaylogo": False, "responsive": True}
#: the shared copy's name: versioned, so reports written by an older plotly keep theirs
PLOTLY_ASSET = f"plotly-{get_plotlyjs_version()}.min.js"

_CSS = """
:root { --ink: #1f2430; --muted: #5b6475; --line: #dde1e8; --paper: #ffffff;
        --band: #f5f7fa; --accent: #2f6fb0; --best: #fff4cc; --best-line: #e0a800; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--band); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
             Arial, sans-serif; }
header, main, footer { max-width: 1100px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 28px; }
h1 { font-size: 26px; margin: 0 0 4px; }
.subtitle { color: var(--muted); margin: 0 0 12px; }
nav { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 14px; padding-bottom: 8px; }
nav a { color: var(--accent); text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { background: var(--paper); border: 1px solid var(--line); border-radius: 8px;
          padding: 18px 22px; margin: 16px 0; }
h2 { font-size: 19px; margin: 0 0 10px; }
p { margin: 8px 0; }
.intro { color: var(--muted); }
.note { border-left: 3px solid var(--accent); background: var(--band);
        padding: 6px 12px; color: var(--muted); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.table-wrap { max-height: 520px; overflow: auto; margin: 10px 0; }
table { border-collapse: collapse; font-size: 14px; }
caption { caption-side: top; text-align: left; color: var(--muted); padding-bottom: 6px; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); text-align: left; }
th { position: sticky; top: 0; background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.best, tbody tr.best:nth-child(even) { background: var(--best); }
tr.best td:first-child { box-shadow: inset 3px 0 0 var(--best-line); }
figure { margin: 12px 0; }
figcaption { color: var(--muted); font-size: 14px; }
footer { color: var(--muted); font-size: 13px; padding-bottom: 28px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
         gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; font-size: 13px;
        background: var(--paper); overflow-wrap: anywhere; }
.card img { width: 100%; image-rendering: pixelated; background: #000; border-radius: 4px; }
.card .label { font-weight: 600; }
.card .meta { color: var(--muted); }
.card .text { max-height: 9em; overflow: auto; margin: 4px 0; }
.card.flag { border-color: #c0392b; }
"""

#: the look every report figure shares (sections add a legend or a height of their own)
FIGURE_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif"},
    "margin": {"l": 60, "r": 30, "t": 50, "b": 50},
}

_MISSING = "—"
_NUM = ' class="num"'


def format_value(value: object) -> str:
    """A value as short text: numbers to about 4 significant digits, missing as a dash.

    Reports are read by people comparing runs, so every number is shown the
    same way wherever it appears (tables, facts, captions).
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return _MISSING
        if math.isinf(number):
            return "∞" if number > 0 else "-∞"
        if number == 0:
            return "0"
        if abs(number) >= 1e5 or abs(number) < 1e-3:
            return f"{number:.3g}"
        if abs(number) >= 100:
            return f"{number:.0f}" if number.is_integer() else f"{number:.1f}"
        return f"{number:.4g}"
    return str(value)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Section:
    """One titled part of a report; blocks render in the order they were added.

    Made by :meth:`Report.add_section`; the ``add_*`` methods return the
    section so calls can be chained.
    """

    def __init__(self, title: str, *, anchor: str, intro: str | None = None) -> None:
        self.title = title
        self.anchor = anchor
        self.intro = intro
        self.n_figures = 0
        self._blocks: list[str] = []

    def add_text(self, text: str, *, note: bool = False) -> Section:
        """A paragraph; ``note=True`` sets it apart (caveats, rules of the method)."""
        css = ' class="note"' if note else ""
        self._blocks.append(f"<p{css}>{escape(text)}</p>")
        return self

    def add_facts(self, facts: Mapping[str, object]) -> Section:
        """Label/value pairs, for the short identity of a run (ids, versions, dates)."""
        items = "".join(
            f"<dt>{escape(str(key))}</dt><dd>{escape(format_value(value))}</dd>"
            for key, value in facts.items()
        )
        self._blocks.append(f'<dl class="facts">{items}</dl>')
        return self

    def add_table(
        self,
        rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
        *,
        caption: str | None = None,
        highlight: Iterable[int] = (),
    ) -> Section:
        """A table from a list of dicts (columns in first-seen order) or a DataFrame.

        ``highlight`` names row positions to mark (the best candidate, say);
        numbers are right-aligned and formatted by :func:`format_value`.
        """
        records = _records(rows)
        if not records:
            self._blocks.append(f"<p>{escape(caption or 'Table')}: no rows.</p>")
            return self
        columns = list(dict.fromkeys(key for record in records for key in record))
        numeric = {
            column: all(_is_number(r.get(column)) or r.get(column) is None for r in records)
            for column in columns
        }
        head = "".join(
            f'<th{_NUM if numeric[c] else ""} scope="col">{escape(str(c))}</th>'
            for c in columns
        )
        marked = set(highlight)
        body = "".join(
            _table_row(record, columns, numeric, best=i in marked)
            for i, record in enumerate(records)
        )
        cap = f"<caption>{escape(caption)}</caption>" if caption else ""
        self._blocks.append(
            f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )
        return self

    def add_cards(self, cards: Sequence[Mapping[str, Any]], *, caption: str | None = None
                  ) -> Section:
        """A grid of examples: each card has ``title``, optional ``image`` (a data: URI
        of a PNG), ``text``, ``lines`` (short facts) and ``flag`` (draw it in red)."""
        items = []
        for card in cards:
            image = card.get("image") or ""
            img = (f'<img src="{escape(image)}" alt="{escape(str(card.get("title", "")))}">'
                   if image.startswith("data:image/png;base64,") else "")
            text = f'<div class="text">{escape(str(card["text"]))}</div>' \
                if card.get("text") else ""
            lines = "".join(f'<div class="meta">{escape(str(line))}</div>'
                            for line in card.get("lines", ()))
            css = "card flag" if card.get("flag") else "card"
            items.append(f'<div class="{css}">{img}<div class="label">'
                         f'{escape(str(card.get("title", "")))}</div>{text}{lines}</div>')
        cap = f"<p>{escape(caption)}</p>" if caption else ""
        self._blocks.append(f'{cap}<div class="cards">{"".join(items)}</div>')
        return self

    def add_figure(self, fig: go.Figure, *, caption: str | None = None) -> Section:
        """A Plotly figure as a div; plotly.js itself is added once by the report."""
        height = fig.layout.height or 450
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            config=_FIGURE_CONFIG,
            default_height=f"{height}px",
        )
        cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
        self._blocks.append(f"<figure>{div}{cap}</figure>")
        self.n_figures += 1
        return self

    def render(self) -> str:
        intro = f'<p class="intro">{escape(self.intro)}</p>' if self.intro else ""
        blocks = "\n".join(self._blocks)
        return (
            f'<section id="{self.anchor}">\n<h2>{escape(self.title)}</h2>\n'
            f"{intro}\n{blocks}\n</section>"
        )


def _records(rows: Sequence[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if isinstance(rows, pd.DataFrame):
        frame = rows if isinstance(rows.index, pd.RangeIndex) else rows.reset_index()
        return frame.rename(columns=str).to_dict(orient="records")
    return [dict(row) for row in rows]


def _table_row(
    record: Mapping[str, Any], columns: list[str], numeric: Mapping[str, bool], *, best: bool
) -> str:
    cells = "".join(
        f'<td{_NUM if numeric[c] else ""}>{escape(format_value(record.get(c)))}</td>'
        for c in columns
    )
    return f'<tr class="best">{cells}</tr>' if best else f"<tr>{cells}</tr>"


class Report:
    """A self-contained HTML report: a title, an optional subtitle, and sections.

    Parameters
    ----------
    title : str
        Shown as the page heading and the browser tab title.
    subtitle : str, optional
        One line under the title (what was run, on which data).
    """

    def __init__(self, title: str, *, subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []

    def add_section(self, title: str, *, intro: str | None = None) -> Section:
        """Append a section and return it, so callers fill it in place."""
        section = Section(title, anchor=self._anchor(title), intro=intro)
        self.sections.append(section)
        return section

    def _anchor(self, title: str) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
        taken = {section.anchor for section in self.sections}
        anchor, n = base, 2
        while anchor in taken:
            anchor, n = f"{base}-{n}", n + 1
        return anchor

    @property
    def has_figures(self) -> bool:
        return any(section.n_figures for section in self.sections)

    def render(self, *, plotly_src: str | None = None) -> str:
        """The whole page as one string; plotly.js is added only if a figure needs it.

        ``plotly_src`` (a relative URL) loads plotly.js from that file instead
        of inlining it.
        """
        plotly, footer = "", "Written by loopml."
        if self.has_figures and plotly_src is not None:
            plotly = f'{_PLOTLY_CONFIG_SCRIPT}\n<script src="{escape(plotly_src)}"></script>'
            footer += (f" plotly.js is read from {escape(plotly_src)} in this project's "
                       "folder; nothing is fetched.")
        elif self.has_figures:
            plotly = f"{_PLOTLY_CONFIG_SCRIPT}\n<script>{get_plotlyjs()}</script>"
            footer += " Self-contained: plotly.js is embedded, nothing is fetched."
        subtitle = f'<p class="subtitle">{escape(self.subtitle)}</p>' if self.subtitle else ""
        nav = "".join(
            f'<a href="#{section.anchor}">{escape(section.title)}</a>' for section in self.sections
        )
        sections = "\n".join(section.render() for section in self.sections)
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(self.title)}</title>\n<style>{_CSS}</style>\n{plotly}\n</head>\n"
            f"<body>\n<header>\n<h1>{escape(self.title)}</h1>\n{subtitle}\n<nav>{nav}</nav>\n"
            f"</header>\n<main>\n{sections}\n</main>\n"
            f"<footer>{footer}</footer>\n</body>\n</html>\n"
        )

    def write(self, path: str | os.PathLike[str], *,
              assets: str | os.PathLike[str] | None = None) -> Path:
        """Write the report to ``path`` atomically and return the path.

        The page goes to a temporary file in the same folder first and is then
        renamed over ``path``, so a reader (or the dashboard) never sees half a
        report, and a failed write leaves the old file, or nothing, in place.
        The folder must exist; a missing one raises ``FileNotFoundError``.

        ``assets`` names a folder for one shared copy of plotly.js (created if
        missing, see :func:`plotly_asset`); the report then refers to it by a
        path relative to its own folder. None embeds plotly.js in the page.
        """
        path = Path(path)
        src = None
        if assets is not None and self.has_figures:
            if not path.parent.is_dir():  # same error, before anything is written
                raise FileNotFoundError(f"no folder {path.parent} to write {path.name} into")
            shared = plotly_asset(assets)
            src = Path(os.path.relpath(shared, path.parent.resolve())).as_posix()
        return write_text_atomic(path, self.render(plotly_src=src))


def plotly_asset(folder: str | os.PathLike[str]) -> Path:
    """The shared plotly.js in ``folder``, written there (atomically) if not there yet.

    Copied from the installed ``plotly`` package, so nothing is downloaded;
    the name carries plotly.js's version, so a copy is never stale. A copy
    of the wrong size (a damaged file) is rewritten.
    """
    folder = Path(folder).resolve()
    path = folder / PLOTLY_ASSET
    if path.is_file() and path.stat().st_size == _plotlyjs_size():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, get_plotlyjs())


@functools.cache
def _plotlyjs_size() -> int:
    return len(get_plotlyjs().encode("utf-8"))
