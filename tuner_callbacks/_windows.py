"""Pure statistics over a window of recent metric values, relative to their magnitude so one bound fits any scale."""

from __future__ import annotations

from collections.abc import Sequence


def _mean_magnitude(values: Sequence[float]) -> float:
    # Guards a window of zeros: any nonzero change then reads as huge, which is what it is.
    return max(sum(abs(y) for y in values) / len(values), 1e-12)


def relative_slope(values: Sequence[float]) -> float:
    """Least-squares slope per check over the mean magnitude: ``[1.0, 0.99, 0.98]`` gives about -0.01 (1%/check)."""
    n = len(values)
    x_mean, y_mean = (n - 1) / 2, sum(values) / n
    covariance = sum((x - x_mean) * (y - y_mean) for x, y in enumerate(values))
    variance = sum((x - x_mean) ** 2 for x in range(n))
    return covariance / variance / _mean_magnitude(values)


def relative_spread(values: Sequence[float]) -> float:
    """(max - min) over the mean magnitude: ``[1.0, 1.01, 0.995]`` gives about 0.015 (stayed within 1.5%)."""
    return (max(values) - min(values)) / _mean_magnitude(values)
