"""The one place that runs work in parallel.

Locally that is joblib on the machine's cores. Callers hand over a function
and its tasks; each task must be picklable (give it a ``clone`` of an
estimator, never a shared fitted one). A Ray backend for clusters plugs in
here later, so callers never change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from joblib import Parallel, delayed


def parallel_map(func: Callable[..., Any], tasks: Iterable[Any], *, n_jobs: int | None = None
                 ) -> Iterator[Any]:
    """Yield ``func(task)`` for every task, in order, running up to ``n_jobs`` at once.

    ``n_jobs=None`` or 1 runs in this process (no pickling, progress bars stay
    visible); -1 uses every core.
    """
    tasks = list(tasks)
    if n_jobs in (None, 1) or len(tasks) <= 1:
        yield from (func(task) for task in tasks)
        return
    yield from Parallel(n_jobs=n_jobs, return_as="generator")(delayed(func)(t) for t in tasks)
