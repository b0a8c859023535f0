"""Learning curves fitted by least squares, and what they predict at a later step, with how sure that is.

Two three-parameter families of a curve y(x) that levels off at ``a`` as x (the fraction of the budget) grows:

- ``power_law``: ``a + b * x**(-c)``, ``c > 0`` -- how losses of neural networks usually fall (slowly, for long);
- ``exponential``: ``a + b * exp(-c * x)``, ``c > 0`` -- a curve that settles within the budget.

``b`` is free, so a rising curve (an accuracy) fits as well as a falling one. The fit starts from the best point of a
grid over ``c`` (for a fixed ``c`` the model is linear in ``a`` and ``b``: one small least-squares solve), then
``scipy.optimize.curve_fit`` refines all three, which also gives their covariance.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

log = logging.getLogger(__name__)

_N_PARAMS = 3
_GRID = 40  # rates tried for the starting point, log-spaced inside the bounds


@dataclass(frozen=True)
class CurveModel:
    """A curve family ``function(x, a, b, c)``, its gradient in ``(a, b, c)``, and the bounds of the rate ``c``
    (in units of the budget: x = 1 is its end)."""

    function: Callable[..., np.ndarray]
    gradient: Callable[[float, float, float, float], np.ndarray]
    rate_bounds: tuple[float, float]


def _power_law(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a + b * np.power(x, -c)


def _power_law_gradient(x: float, a: float, b: float, c: float) -> np.ndarray:
    term = x ** (-c)
    return np.array([1.0, term, -b * term * math.log(x)])


def _exponential(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a + b * np.exp(-c * x)


def _exponential_gradient(x: float, a: float, b: float, c: float) -> np.ndarray:
    term = math.exp(-c * x)
    return np.array([1.0, term, -b * x * term])


# Rates: a power law steeper than x**-4 or an exponential faster than e**(-60 x) has settled within the first points
# and leaves nothing to extrapolate; below 0.01 either is a straight line over the budget.
MODELS = {
    "power_law": CurveModel(_power_law, _power_law_gradient, (0.01, 4.0)),
    "exponential": CurveModel(_exponential, _exponential_gradient, (0.01, 60.0)),
}


@dataclass(frozen=True)
class Extrapolation:
    """The fitted curve's value at the horizon and a Student-t predictive around it: ``scale`` holds both the
    parameters' uncertainty there and the points' own noise (a final value is one more noisy point)."""

    mean: float
    scale: float
    dof: int


def extrapolate(model: CurveModel, x: np.ndarray, y: np.ndarray, horizon: float) -> Extrapolation | None:
    """The curve of ``model`` fitted to the points ``(x, y)`` (x > 0), predicted at ``horizon``; None when there are
    too few points to leave a degree of freedom, or when the fit fails or comes out degenerate (non-finite)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size <= _N_PARAMS or not (np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all()):
        return None
    # Standardised values: a loss of 1e4 and one of 1e-3 meet the optimiser at the same scale.
    centre, spread = float(y.mean()), float(y.std())
    spread = spread if spread > 0 else 1.0
    z = (y - centre) / spread
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # an indeterminate covariance is caught below as inf
            params, covariance = curve_fit(model.function, x, z, p0=_start(model, x, z),
                                           bounds=([-np.inf, -np.inf, model.rate_bounds[0]],
                                                   [np.inf, np.inf, model.rate_bounds[1]]), max_nfev=2000)
            residuals = z - model.function(x, *params)
            noise = float(residuals @ residuals) / (x.size - _N_PARAMS)
            gradient = model.gradient(horizon, *params)
            variance = float(gradient @ covariance @ gradient) + noise
            mean = float(model.function(np.array([horizon]), *params)[0])
    except (RuntimeError, ValueError, OverflowError, ZeroDivisionError, np.linalg.LinAlgError) as error:
        log.debug("%s fit failed: %s", model.function.__name__.lstrip("_"), error)
        return None
    if not (math.isfinite(mean) and math.isfinite(variance) and variance >= 0):
        return None
    return Extrapolation(mean=centre + spread * mean, scale=spread * math.sqrt(variance), dof=x.size - _N_PARAMS)


def _start(model: CurveModel, x: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """The grid point (rate strictly inside its bounds, ``a`` and ``b`` solved exactly) with the least squares."""
    low, high = model.rate_bounds
    best: tuple[float, tuple[float, float, float]] | None = None
    for rate in np.geomspace(low, high, _GRID + 2)[1:-1]:
        design = np.column_stack([np.ones_like(x), model.function(x, 0.0, 1.0, rate)])
        if not np.isfinite(design).all():
            continue
        (a, b), *_ = np.linalg.lstsq(design, z, rcond=None)
        residuals = z - design @ np.array([a, b])
        cost = float(residuals @ residuals)
        if best is None or cost < best[0]:
            best = (cost, (float(a), float(b), float(rate)))
    if best is None:
        raise ValueError("no rate of the grid gives finite values at these points")
    return best[1]
