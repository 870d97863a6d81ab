"""The one Rich console loopml writes human output to.

Progress bars and tables go to stderr so that ``--json`` output on stdout
stays a single parseable document.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def progress(*, transient: bool = True) -> Progress:
    """A progress bar in loopml's one style."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                    console=console, transient=transient)
