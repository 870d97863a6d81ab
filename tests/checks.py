"""Checks shared by the bad-input tests: a refusal is clean, and nothing changed.

Imported as ``from checks import ...`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

from pathlib import Path


def refused(result, *needles: str) -> None:
    """A CLI result that is a user error: exit 2, a message, no traceback, every needle."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "error:" in result.output
    for needle in needles:
        assert needle in result.output, result.output


def state_files(project: Path, *, store: bool = False) -> dict[str, bytes]:
    """Every file of ``project``'s ``.loopml/`` (names and bytes), to show nothing changed.

    Lock files are left out (taking a lock is not a change); so is the MLflow
    store unless ``store``, since SQLite may touch it on a read.
    """
    state = Path(project) / ".loopml"
    return {str(p.relative_to(state)): p.read_bytes() for p in sorted(state.rglob("*"))
            if p.is_file() and ".locks" not in p.relative_to(state).parts
            and (store or p.name != "mlflow.db")}
