"""The prediction log's database URL: checked, resolved and reached before a server starts.

Why here and not in the scope: only ``loopml.serve`` imports SQLAlchemy, and
the scope's URL may only be complete once ``${NAME}`` parts are filled from
the environment. Every message shows the URL through
:func:`loopml.scope.mask_url`, so a password never reaches a terminal or a log.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from loopml.exceptions import LoopmlError
from loopml.scope import mask_url


def check_log_url(url: str) -> str:
    """Refuse a URL SQLAlchemy cannot parse or has no dialect for, before anything opens it.

    The driver itself (psycopg, ...) is imported only on connecting, so a
    missing one is reported by :func:`reachable`.
    """
    try:
        sa.make_url(url).get_dialect()
    except NoSuchModuleError:  # before its base class, ArgumentError
        scheme = url.split("://", 1)[0][:80]
        raise ValueError(f"{scheme!r} is not a database scheme SQLAlchemy knows; use e.g. "
                         "postgresql+psycopg://, postgresql:// or sqlite:///") from None
    except ArgumentError:
        raise ValueError(f"{mask_url(url)[:200]!r} is not a database URL; write e.g. "
                         "postgresql+psycopg://user@host:5432/db or sqlite:///path.db") from None
    return url


def from_folder(url: str, folder: Path) -> str:
    """``url`` with a relative SQLite path taken from ``folder`` (other URLs unchanged)."""
    parsed = sa.make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:" \
            or database.startswith("file:") or Path(database).is_absolute():
        return url
    return parsed.set(database=str((folder / database).resolve())).render_as_string(
        hide_password=False)


def reachable(url: str, *, timeout: int = 10) -> None:
    """Refuse a database server that does not answer (or whose driver is missing).

    Without this a wrong host or port shows up as a traceback from the server's
    startup, after the command seemed to start. SQLite files are left to the
    log itself, which makes their folder.
    """
    parsed = sa.make_url(url)
    if parsed.drivername.startswith("sqlite"):
        return
    shown = mask_url(url)
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": timeout}
                                  if parsed.get_backend_name() == "postgresql" else {})
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except ImportError as exc:
        raise LoopmlError(f"cannot open the prediction log at {shown}: its driver is not "
                          f"installed ({exc})", hint="install it, e.g. pip install "
                          "'psycopg[binary]' for postgresql+psycopg://") from None
    except sa.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        if parsed.password:
            reason = reason.replace(parsed.password, "***")
        raise LoopmlError(f"cannot reach the prediction log at {shown}: {reason[:300]}",
                          hint="start the database or fix the URL (serve.log_url in "
                               "loopml.yaml, or --log-url)") from None
