"""The one exception type the CLI turns into a clean message.

Every mistake a user can make (a missing file, a bad key in loopml.yaml, an
unknown run id) is raised as a :class:`LoopmlError` whose message says what is
wrong, where, and how to fix it. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LoopmlError(Exception):
    """A user-facing error: the message is shown as is, without a traceback."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ScopeError(LoopmlError):
    """loopml.yaml is missing, unreadable or invalid."""


class DataError(LoopmlError):
    """The data source cannot be read or does not fit the scope."""


class RunNotFoundError(LoopmlError):
    """A run id names no iteration of this project."""
