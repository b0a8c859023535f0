"""Anomalies in a metric series, judged against trailing windows: NaN/Inf, spikes (robust z-score against the
median and MAD) and jumps (a change far bigger than the typical change). Pure numpy, vectorised over the
series, so judging a whole history costs about what judging one value does."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_TINY = 1e-12  # relative scale floor: in a perfectly constant series any change is an anomaly


def _row_medians(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median of each row's non-NaN values and their count; a sort is far cheaper than ``np.nanmedian``."""
    ordered = np.sort(rows, axis=1)  # NaN sorts last
    count = (~np.isnan(rows)).sum(axis=1)
    low, high = np.maximum((count - 1) // 2, 0)[:, None], np.maximum(count // 2, 0)[:, None]
    median = (np.take_along_axis(ordered, low, 1) + np.take_along_axis(ordered, high, 1))[:, 0] / 2
    return np.where(count > 0, median, np.nan), count


def _scale(deviations: np.ndarray, median_factor: float, mean_factor: float, level: np.ndarray) -> np.ndarray:
    """Robust spread per row: median-based, falling back to mean-based when over half the deviations are 0."""
    median, count = _row_medians(deviations)
    scale = median_factor * median
    mean = np.where(np.isnan(deviations), 0.0, deviations).sum(axis=1) / np.maximum(count, 1)
    scale = np.where(scale > 0, scale, mean_factor * mean)
    return np.where(scale > 0, scale, _TINY * np.maximum(1.0, np.abs(level)))


def detect_anomalies(x: np.ndarray, start: int, window: int, min_history: int, z_threshold: float,
            jump_factor: float) -> list[tuple[int, str, float]]:
    """(index, kind, score) of the anomalies at indices >= start, each judged on the ``window`` values before."""
    first = max(start - 1, 0)  # one earlier value: a return from a spike is not a jump
    if first >= len(x):
        return []
    reference = np.where(np.isfinite(x), x, np.nan)  # NaN/Inf are anomalies, not part of any baseline
    pad = np.full(window, np.nan)
    past = sliding_window_view(np.concatenate([pad, reference]), window)[first:len(x)]  # past[k] = x[i-window:i]
    change = np.abs(np.diff(reference, prepend=np.nan))  # NaN next to a NaN/Inf: no change measured there
    past_change = sliding_window_view(np.concatenate([pad, change]), window)[first:len(x)]
    with np.errstate(all="ignore"):
        level, count = _row_medians(past)
        z = np.abs(x[first:] - level) / _scale(np.abs(past - level[:, None]), 1.4826, 1.2533, level)
        ratio = change[first:] / _scale(past_change, 1.0, 1.0, level)
    finite = np.isfinite(x[first:])
    enough = count >= min_history
    spike = finite & enough & (z > z_threshold)
    after_spike = np.concatenate([[False], spike[:-1]])
    jump = finite & enough & ~spike & ~after_spike & (ratio > jump_factor)
    found = []
    for k in range(start - first, len(finite)):
        if not finite[k]:
            found.append((first + k, "non_finite", float("inf")))
        elif spike[k]:
            found.append((first + k, "spike", float(z[k])))
        elif jump[k]:
            found.append((first + k, "jump", float(ratio[k])))
    return found
