"""Slice discovery: loopml's ``find_slices`` against the ``sliceline`` package.

Data: 10 categorical features of 5 to 10 levels, 5% of rows in error at
random, plus two planted 2-feature slices (``f0 = v1 AND f1 = v2`` and
``f2 = v4 AND f6 = v3``, about 3% of rows each) in error 60% of the time.

1. 100,000 rows, depth <= 3, min support 1%: loopml ``find_slices`` against
   ``sliceline.Slicefinder(alpha=0.95, k=5, max_l=3, min_sup=0.01)``. Targets:
   loopml ranks both planted slices 1st and 2nd; sliceline / loopml >= 10x in
   time and >= 5x in peak memory.
2. 1,000,000 rows, loopml only: < 60 s and < 4 GB.
3. A wide table, scikit-learn's digits (64 numeric pixels, 1,797 rows) with
   a Gaussian naive Bayes' cross-validated errors: a few seconds.

How it is measured: every input (the frame, the errors, sliceline's object
array) is built before the clock or the trace starts. Time is wall-clock
(``time.perf_counter``) with ``tracemalloc`` off, best of 3 calls for loopml
and one call for sliceline (it takes about a minute). Peak memory is measured
in a separate call under ``tracemalloc``: the peak of traced memory during
that call, which covers Python objects and numpy's data buffers (numpy reports
them to ``tracemalloc``; scipy.sparse matrices are numpy arrays underneath).
Memory held by compiled code that bypasses numpy's allocator is not seen, for
either side. sliceline runs as installed here: without numba, so with its
NumPy fallbacks.
"""

from __future__ import annotations

import time
import tracemalloc
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_predict
from sklearn.naive_bayes import GaussianNB

from loopml.errors.slices import find_slices
from loopml.groups import Predicate, Slice

LEVELS = (5, 6, 7, 8, 9, 10, 5, 6, 7, 8)
PLANTED = ({"f0": "v1", "f1": "v2"}, {"f2": "v4", "f6": "v3"})


def _data(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"f{i}": np.char.add("v", rng.integers(0, k, n).astype(str))
                          for i, k in enumerate(LEVELS)})
    planted = np.zeros(n, dtype=bool)
    for slc in PLANTED:
        planted |= np.logical_and.reduce([frame[c].to_numpy() == v for c, v in slc.items()])
    errors = (rng.random(n) < np.where(planted, 0.6, 0.05)).astype(float)
    return frame, errors


def _expected() -> set[Slice]:
    return {Slice(tuple(Predicate(c, "eq", v) for c, v in slc.items())) for slc in PLANTED}


def _seconds(fn: Callable[[], object], repeat: int = 1) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _sliceline(X: np.ndarray, errors: np.ndarray):
    from sliceline import Slicefinder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "numba not available"
        return Slicefinder(alpha=0.95, k=5, max_l=3, min_sup=0.01, verbose=False).fit(X, errors)


def _sliceline_top2(model, columns: list[str]) -> set[Slice]:
    return {Slice(tuple(Predicate(c, "eq", v) for c, v in zip(columns, row, strict=True)
                        if v is not None)) for row in model.top_slices_[:2]}


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def _versus_sliceline() -> list[dict]:
    frame, errors = _data(100_000)
    X = frame.to_numpy()
    ours = lambda: find_slices(frame, errors, max_depth=3, min_support=0.01)  # noqa: E731
    theirs = lambda: _sliceline(X, errors)  # noqa: E731
    top2 = {s.slice for s in ours().slices[:2]}
    t_ours, t_theirs = _seconds(ours, repeat=3), _seconds(theirs)
    m_ours, m_theirs = _peak_bytes(ours), _peak_bytes(theirs)
    found = top2 == _expected()
    theirs_found = _sliceline_top2(theirs(), list(frame.columns)) == _expected()
    return [
        {"name": "100k x 10: loopml ranks both planted slices 1st and 2nd",
         "value": "yes" if found else "no", "target": "yes", "ok": found},
        {"name": "100k x 10: sliceline ranks both planted slices 1st and 2nd",
         "value": "yes" if theirs_found else "no"},
        {"name": "100k x 10: loopml find_slices time", "value": f"{t_ours:.3f} s"},
        {"name": "100k x 10: sliceline Slicefinder.fit time", "value": f"{t_theirs:.1f} s"},
        {"name": "100k x 10: time, sliceline / loopml", "value": f"{t_theirs / t_ours:.0f}x",
         "target": ">= 10x", "ok": t_theirs / t_ours >= 10},
        {"name": "100k x 10: loopml peak memory", "value": _mb(m_ours)},
        {"name": "100k x 10: sliceline peak memory", "value": _mb(m_theirs)},
        {"name": "100k x 10: peak memory, sliceline / loopml",
         "value": f"{m_theirs / m_ours:.0f}x", "target": ">= 5x", "ok": m_theirs / m_ours >= 5},
    ]


def _million() -> list[dict]:
    frame, errors = _data(1_000_000, seed=1)
    ours = lambda: find_slices(frame, errors, max_depth=3, min_support=0.01)  # noqa: E731
    found = {s.slice for s in ours().slices[:2]} == _expected()
    seconds, peak = _seconds(ours, repeat=3), _peak_bytes(ours)
    return [
        {"name": "1M x 10: loopml ranks both planted slices 1st and 2nd",
         "value": "yes" if found else "no", "target": "yes", "ok": found},
        {"name": "1M x 10: loopml find_slices time", "value": f"{seconds:.2f} s",
         "target": "< 60 s", "ok": seconds < 60},
        {"name": "1M x 10: loopml peak memory", "value": _mb(peak), "target": "< 4 GB",
         "ok": peak < 4e9},
    ]


def _wide() -> list[dict]:
    X, y = load_digits(return_X_y=True, as_frame=True)
    errors = (cross_val_predict(GaussianNB(), X, y, cv=5) != y).to_numpy(dtype=float)
    seconds = _seconds(lambda: find_slices(X, errors), repeat=3)
    return [{"name": "digits 1797 x 64 numeric, depth 3: loopml find_slices time",
             "value": f"{seconds:.2f} s", "target": "< 5 s", "ok": seconds < 5}]


def run() -> list[dict]:
    return _versus_sliceline() + _million() + _wide()
