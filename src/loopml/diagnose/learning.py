"""Read a learning curve: fit a power law, extrapolate, or say it has flattened.

Val error against training-set size usually follows ``e(n) = a·n^(-b) + c``:
``c`` is the error more data of the same kind cannot remove. From the fit we
estimate how many examples would reach a target error, with an interval from
the fit's parameter uncertainty, or say that the target lies below ``c``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from loopml.diagnose.curves import CurvePoint
from loopml.diagnose.evidence import number, optional_number

DRAWS = 400


def _power_law(n, a, b, c):
    return a * np.power(n, -b) + c


@dataclass
class Extrapolation:
    """What the learning curve says about adding more data of the same kind."""

    fitted: bool
    a: float = float("nan")
    b: float = float("nan")
    asymptote: float = float("nan")
    target_error: float | None = None
    examples_needed: float | None = None
    interval: tuple[float, float] | None = None
    flattened: bool = False
    slope_per_doubling: float = float("nan")
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"fitted": self.fitted, "a": self.a, "b": self.b, "asymptote": self.asymptote,
                "target_error": self.target_error, "examples_needed": self.examples_needed,
                "interval": list(self.interval) if self.interval else None,
                "flattened": self.flattened, "slope_per_doubling": self.slope_per_doubling,
                "message": self.message}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Extrapolation:
        """Read :meth:`to_dict`'s JSON: a null count of examples needed is infinity.

        (It is None only when nothing was asked: no fit, or no target error.)
        """
        fitted, target = bool(data["fitted"]), optional_number(data["target_error"])
        needed = data["examples_needed"]
        asked = fitted and target is not None
        interval = data["interval"]
        return cls(fitted, number(data["a"]), number(data["b"]), number(data["asymptote"]),
                   target, _count(needed) if asked or needed is not None else None,
                   None if interval is None else (_count(interval[0]), _count(interval[1])),
                   bool(data["flattened"]), number(data["slope_per_doubling"]),
                   str(data["message"]))


def _count(value: Any) -> float:
    """A count of examples; null, or NaN from percentiles of infinite draws, is infinity."""
    return float("inf") if value is None or not np.isfinite(value) else float(value)


@dataclass
class LearningCurve:
    """Val and train error against training-set size, and what more data would do.

    ``gain_from_doubling`` is the expected fall in val error from twice the
    iteration's training data (NaN: unknown); ``max_train`` the largest size
    the folds allow.
    """

    points: list[CurvePoint]
    extrapolation: Extrapolation
    max_train: int
    gain_from_doubling: float

    def to_dict(self) -> dict[str, Any]:
        return {"points": [p.to_dict() for p in self.points],
                "extrapolation": self.extrapolation.to_dict(), "max_train": self.max_train,
                "gain_from_doubling": self.gain_from_doubling}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearningCurve:
        return cls([CurvePoint.from_dict(p) for p in data["points"]],
                   Extrapolation.from_dict(data["extrapolation"]), int(data["max_train"]),
                   number(data["gain_from_doubling"]))


def _needed(a: float, b: float, c: float, target: float) -> float:
    if target <= c or a <= 0 or b <= 0:
        return float("inf")
    return float((a / (target - c)) ** (1 / b))


def extrapolate(sizes: np.ndarray, errors: np.ndarray, *, target_error: float | None,
                tolerance: float, seed: int = 0) -> Extrapolation:
    """Fit the curve, and say how far more data goes toward ``target_error``."""
    ok = np.isfinite(errors)
    sizes, errors = np.asarray(sizes, float)[ok], np.asarray(errors, float)[ok]
    if len(sizes) < 4:
        return Extrapolation(False, message="too few curve points to fit")
    # the last doubling of data: how much did the val error fall?
    half = np.interp(sizes[-1] / 2, sizes, errors)
    slope = float(half - errors[-1])
    flattened = slope < tolerance
    span = max(float(errors.max()), 1e-12)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, cov = curve_fit(_power_law, sizes, errors, p0=(span * sizes[0] ** 0.5, 0.5,
                                    max(float(errors.min()) * 0.5, 0.0)),
                                    bounds=([0, 0.01, 0], [np.inf, 3, span]), maxfev=20000)
    except (RuntimeError, ValueError):
        return Extrapolation(False, flattened=flattened, slope_per_doubling=slope,
                             message="the curve does not follow a power law")
    a, b, c = map(float, params)
    out = Extrapolation(True, a, b, c, target_error, flattened=flattened,
                        slope_per_doubling=slope)
    if target_error is None:
        out.message = _flat_message(out, sizes[-1])
        return out
    out.examples_needed = _needed(a, b, c, target_error)
    if np.all(np.isfinite(cov)):
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(params, cov, size=DRAWS, check_valid="ignore")
        needed = np.array([_needed(*d, target_error) for d in draws])
        with np.errstate(invalid="ignore"):  # draws beyond reach are infinite, on purpose
            low, high = np.percentile(needed, [10, 90])
        out.interval = (_count(low), _count(high))
    out.message = _message(out, sizes[-1])
    return out


def _flat_message(out: Extrapolation, n_max: float) -> str:
    if out.flattened:
        return (f"the curve has flattened: doubling the data from {n_max / 2:.0f} to "
                f"{n_max:.0f} lowered val error by only {out.slope_per_doubling:.4g}; more "
                "data of the same kind will not help much")
    return (f"val error is still falling ({out.slope_per_doubling:.4g} over the last "
            f"doubling) toward an asymptote of {out.asymptote:.4g}")


def _message(out: Extrapolation, n_max: float) -> str:
    target = out.target_error
    if out.examples_needed is not None and out.examples_needed <= n_max:
        return f"the target error {target:.4g} is already within reach at {n_max:.0f} examples"
    if not np.isfinite(out.examples_needed or np.inf):
        return (f"more data of the same kind will not reach the target error {target:.4g}: "
                f"the curve levels off at {out.asymptote:.4g}" +
                (" and has already flattened" if out.flattened else ""))
    interval = ""
    if out.interval:
        low, high = out.interval
        interval = (f" (80% interval {low:,.0f} to " +
                    ("unbounded" if not np.isfinite(high) else f"{high:,.0f}") + ")")
    return (f"about {out.examples_needed:,.0f} training examples would reach the target "
            f"error {target:.4g}{interval}, against {n_max:.0f} now")
