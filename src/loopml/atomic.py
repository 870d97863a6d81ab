"""Write a file whole or not at all.

Every state file loopml keeps (the scope, the split, iteration records,
predictions, models, reports, diagnoses, error reports, tags, group
definitions, added examples) goes through here: the content lands in a
temporary file (or folder) next to the target and is renamed over it, so a
reader never sees half a file and a crash leaves the old one in place.
Read-modify-writes of shared files hold a file lock (:func:`locked`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd


def _write_atomic(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path.

    The folder must exist; a missing one raises ``FileNotFoundError``.
    """
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    return _write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_parquet_atomic(frame: pd.DataFrame, path: str | os.PathLike[str], *,
                         index: bool = False) -> Path:
    """Write a DataFrame as Parquet atomically (a temporary file renamed over ``path``)."""
    return _write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=index))


def replace_dir_atomic(build: Path, target: Path) -> Path:
    """Move a fully written folder ``build`` to ``target`` in one rename.

    ``build`` must sit in the same file system (best: the same parent folder);
    an existing ``target`` is swapped out first and removed after, so a reader
    sees the old folder or the new one, never a half-written one.
    """
    build, target = Path(build), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(build, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


@contextlib.contextmanager
def locked(state_dir: str | os.PathLike[str], name: str, *, timeout: float = 120
           ) -> Iterator[None]:
    """Hold ``state_dir/.locks/<name>.lock`` for a read-modify-write of shared state.

    Two loopml processes changing the same file (tags, slice definitions, added
    examples, the split) take turns instead of losing one's write.
    """
    from filelock import FileLock, Timeout

    folder = Path(state_dir) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{name}.lock"), timeout=timeout)
    try:
        with lock:
            yield
    except Timeout:
        from loopml.exceptions import LoopmlError

        raise LoopmlError(f"another loopml process has held {folder / name}.lock for "
                          f"{timeout:.0f} s", hint="wait for it to finish, or remove the "
                          "lock file if no loopml process is running") from None
