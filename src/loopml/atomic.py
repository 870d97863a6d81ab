"""Write a file whole or not at all.

Every state file loopml keeps (the scope, reports, diagnoses, error reports,
tags, slice definitions) goes through here: the text lands in a temporary
file in the same folder and is renamed over the target, so a reader never
sees half a file and a crash leaves the old one in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path.

    The folder must exist; a missing one raises ``FileNotFoundError``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
