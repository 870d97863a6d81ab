"""The model a server answers with, swapped whole when the deployed version moves.

A server is told what to serve by a ``resolve()`` callable (the lead's wiring
reads the registry alias ``champion``); :class:`LiveModel` asks it again every
``poll_seconds``. A new version is loaded in a worker thread, off the request
path, and replaces ``current`` in one assignment: a batch reads ``current``
once, so it is predicted whole by the old model or whole by the new one, and
no request waits for the load or fails during it. A version that does not load
(a damaged folder, a registry that is down) leaves the old model serving and is
tried again at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from loopml.models.packaged import PackagedModel, load

#: the deployed model: (version, model folder)
Resolver = Callable[[], tuple[str, Path]]

logger = logging.getLogger("loopml.serve")


class LiveModel:
    """``current`` is the (version, model) pair every new batch is predicted with."""

    def __init__(self, resolve: Resolver, *, poll_seconds: float = 2.0,
                 on_swap: Callable[[str], None] | None = None,
                 on_failure: Callable[[], None] | None = None) -> None:
        self.resolve = resolve
        self.poll_seconds = poll_seconds
        self.on_swap = on_swap
        self.on_failure = on_failure
        self.current: tuple[str, PackagedModel] | None = None

    @property
    def version(self) -> str:
        return self.model_pair[0]

    @property
    def model_pair(self) -> tuple[str, PackagedModel]:
        current = self.current
        if current is None:
            raise RuntimeError("no model is loaded yet: call refresh() first")
        return current

    def refresh(self) -> bool:
        """Load the resolved version if it is not the one serving; True when it swapped.

        Blocking (it reads a model folder): run it in a thread from async code.
        """
        version, folder = self.resolve()
        version = str(version)
        if self.current is not None and self.current[0] == version:
            return False
        model = load(folder)
        self.current = (version, model)  # one assignment: readers see old or new, never half
        if self.on_swap is not None:
            self.on_swap(version)
        return True

    async def watch(self) -> None:
        """Poll ``resolve`` until cancelled; a failed poll keeps the old model serving."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                swapped = await asyncio.to_thread(self.refresh)
            except Exception as exc:  # the server must keep serving the model it has
                logger.warning("keeping model version %s: the deployed model did not load: %s",
                               self.current[0] if self.current else "?", exc)
                if self.on_failure is not None:
                    self.on_failure()
                continue
            if swapped:
                logger.info("now serving model version %s", self.version)
