"""Write a file whole or not at all.

Every state file loopml keeps (the scope, the split, iteration records,
predictions, models, reports, diagnoses, error reports, tags, group
definitions, added examples) goes through here: the content lands in a
temporary file (or folder) next to the target and is renamed over it, so a
reader never sees half a file and a crash leaves the old one in place.
Read-modify-writes of shared files hold a file lock (:func:`locked`).

Temporary names carry the writer's process id (``.<name>.<pid>-<random>.tmp``),
so two writers never share one, and what a killed writer left behind can be
told from what a live one is writing (:func:`leftover_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def _write_atomic(path: str | os.PathLike[str], write: Callable[[str], None], *,
                  mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name),
                               suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path.

    The folder must exist; a missing one raises ``FileNotFoundError``. ``mode``
    0o600 keeps a secret private from its first byte (the temporary file is
    made 0600 and only widened to ``mode`` before the rename).
    """
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"),
                         mode=mode)


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
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
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


# ---------------------------------------------------------------- leftovers of dead writers

LEFTOVER_AGE_S = 60.0  # a temporary without a known writer is a leftover after this long
_WRITER = re.compile(r"^\..+\.(?:old-)?(\d+)-[A-Za-z0-9_]+(?:\.tmp)?$")


def temporary_prefix(name: str) -> str:
    """``.<name>.<pid>-``: the start of a temporary file or folder this process writes."""
    return f".{name}.{os.getpid()}-"


def process_identity(pid: int | None = None) -> dict[str, Any]:
    """Who a process is: pid, start time (clock ticks since boot) and host.

    The start time tells a process from a later one that got the same pid.
    """
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": _start_time(pid), "host": socket.gethostname()}


def process_alive(identity: dict[str, Any]) -> bool | None:
    """Whether the process ``identity`` names still runs (None: another host, cannot tell)."""
    if identity.get("host") != socket.gethostname():
        return None
    try:
        pid = int(identity["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    start = _start_time(pid)
    if start is None:
        return _pid_exists(pid)  # no /proc (macOS): the pid alone
    return identity.get("start") in (None, start)


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat; None without /proc or when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_temporaries(folder: str | os.PathLike[str], *, depth: int = 3,
                         now: float | None = None) -> list[Path]:
    """Temporary files and folders under ``folder`` whose writer is gone.

    Looks ``depth`` folders down (``.loopml/runs/<id>/artifacts/`` is 3) at
    dot-names ending in ``.tmp`` or holding ``.old-``. One is a leftover when
    the pid in its name no longer runs, or, with no pid in its name, when it
    is older than :data:`LEFTOVER_AGE_S`. A live writer's files are never listed.
    """
    now = time.time() if now is None else now
    found: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        name = entry.name
        if name.startswith(".") and (name.endswith(".tmp") or ".old-" in name):
            if _left_over(entry, now):
                found.append(Path(entry.path))
        elif depth > 0 and not name.startswith(".") and entry.is_dir(follow_symlinks=False):
            found += leftover_temporaries(entry.path, depth=depth - 1, now=now)
    return found


def _left_over(entry: os.DirEntry, now: float) -> bool:
    match = _WRITER.match(entry.name)
    if match is not None and int(match.group(1)) != os.getpid():
        return not _pid_exists(int(match.group(1)))
    if match is not None:
        return False  # ours
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > LEFTOVER_AGE_S
    except OSError:
        return False


def remove_path(path: str | os.PathLike[str]) -> None:
    """Remove a file or a folder; one already gone is fine.

    A folder is first renamed to a temporary name of this process, so it
    vanishes in one step: a kill midway leaves a leftover that
    :func:`leftover_temporaries` finds, never a half-emptied folder under its name.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        doomed = path.with_name(f"{temporary_prefix(path.name)}{secrets.token_hex(4)}.tmp")
        try:
            os.replace(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
