"""The one shape of a progress callback, for every long-running function.

A stage that takes a while (a diagnosis sweep, an error analysis, a search)
takes ``progress=``, a function called as ``progress(step, done, total)``:
``step`` names what is being done ("fits", "slices", ...), ``done`` of
``total`` units are finished. The CLI turns the calls into a Rich bar; the
autopilot or a server may log them; tests may count them. Stages never
print.

>>> seen = []
>>> report = lambda step, done, total: seen.append((step, done, total))
>>> report("fits", 1, 3)
>>> seen
[('fits', 1, 3)]
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]


def no_progress(step: str, done: int, total: int) -> None:
    """The default ``progress=``: report nothing."""


def counter(progress: Progress | None, step: str, total: int) -> Callable[[], None]:
    """A function that advances ``step`` by one unit each call (after announcing 0 of total)."""
    report = progress or no_progress
    state = {"done": 0}
    report(step, 0, total)

    def advance() -> None:
        state["done"] += 1
        report(step, state["done"], total)

    return advance
