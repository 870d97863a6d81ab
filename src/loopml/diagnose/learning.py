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
#: a count of examples needed beyond this many times the data is no estimate at all
MAX_REACH = 100.0


def _power_law(n, a, b, c):
    return a * np.power(n, -b) + c


@dataclass
class Extrapolation:
    """What the learning curve says about adding more data of the same kind.

    ``reliable`` is False when the count of examples needed is not worth
    printing: its interval is unbounded or undefined, it lies beyond
    :data:`MAX_REACH` times the data, or the fit's uncertainty is unknown.
    ``examples_needed`` still holds the point estimate, for a reader that
    wants it; the message says "no reliable estimate" instead of the number.
    """

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
    reliable: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"fitted": self.fitted, "a": self.a, "b": self.b, "asymptote": self.asymptote,
                "target_error": self.target_error, "examples_needed": self.examples_needed,
                "interval": list(self.interval) if self.interval else None,
                "flattened": self.flattened, "slope_per_doubling": self.slope_per_doubling,
                "message": self.message, "reliable": self.reliable}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Extrapolation:
        """Read :meth:`to_dict`'s JSON: a null count of examples needed is infinity.

        (It is None only when nothing was asked: no fit, or no target error.) A
        file from before ``reliable`` was stored is judged from its interval.
        """
        fitted, target = bool(data["fitted"]), optional_number(data["target_error"])
        needed = data["examples_needed"]
        asked = fitted and target is not None
        interval = data["interval"]
        out = cls(fitted, number(data["a"]), number(data["b"]), number(data["asymptote"]),
                  target, _count(needed) if asked or needed is not None else None,
                  None if interval is None else (_count(interval[0]), _count(interval[1])),
                  bool(data["flattened"]), number(data["slope_per_doubling"]),
                  str(data["message"]))
        out.reliable = (bool(data["reliable"]) if "reliable" in data
                        else _unreliable(out, None) is None)
        return out


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
    with np.errstate(over="ignore"):  # a flat draw needs more examples than a float holds
        return float(np.power(a / (target - c), 1 / b))


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
        # order statistics, not interpolation: draws beyond reach are infinite, on purpose,
        # and interpolating between two of them gives NaN
        low = float(np.percentile(needed, 10, method="lower"))
        high = float(np.percentile(needed, 90, method="higher"))
        out.interval = (_count(low), _count(high))
    reason = _unreliable(out, float(sizes[-1]))
    out.reliable = reason is None
    out.message = _message(out, sizes[-1]) if reason is None else _no_estimate(out, reason)
    return out


def _unreliable(out: Extrapolation, n_max: float | None) -> str | None:
    """Why the count of examples needed is no estimate worth printing (None: it is one)."""
    needed = out.examples_needed
    if not out.fitted or needed is None:
        return None  # nothing was estimated, so nothing is misleading
    if n_max is not None and needed <= n_max:
        return None  # already reached: no extrapolation involved
    if not np.isfinite(needed):  # "never": believable when the draws, or the data, agree
        low = out.interval[0] if out.interval else None
        if (low is not None and np.isinf(low)) or (low is None and out.flattened):
            return None
        return "the fit cannot tell whether more data reaches it at all"
    if out.interval is None:
        return "the fit's uncertainty could not be computed"
    if not np.isfinite(out.interval[1]):
        return "the 80% interval of the examples needed is unbounded"
    if n_max is not None and needed > MAX_REACH * n_max:
        return f"it would take over {MAX_REACH:.0f} times today's {n_max:,.0f} examples"
    return None


def _no_estimate(out: Extrapolation, reason: str) -> str:
    return (f"no reliable estimate of the examples that would reach the target error "
            f"{out.target_error:.4g} ({reason}); " +
            ("the curve has flattened" if out.flattened else
             f"val error fell by {out.slope_per_doubling:.4g} over the last doubling"))


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
        return (f"the fitted curve already reaches the target error {target:.4g} at "
                f"{n_max:.0f} examples")
    if not np.isfinite(out.examples_needed or np.inf):
        return (f"more data of the same kind will not reach the target error {target:.4g}: "
                f"the curve levels off at {out.asymptote:.4g}" +
                (" and has already flattened" if out.flattened else ""))
    low, high = out.interval or (out.examples_needed, out.examples_needed)
    return (f"about {out.examples_needed:,.0f} training examples would reach the target "
            f"error {target:.4g} (80% interval {low:,.0f} to {high:,.0f}), against "
            f"{n_max:.0f} now")
