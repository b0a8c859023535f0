"""Mel cepstral distortion between a synthesised and a ground-truth log-mel spectrogram, DTW-aligned.

Cepstra: the orthonormal DCT-II of each natural-log mel frame over the mel channels, ``c_0`` (the frame's
energy) dropped so that a level offset does not dominate. The two sequences, of different lengths (free-running
decoding stops where its gate says), are aligned by dynamic time warping on the Euclidean distance of their
cepstra, and

    MCD = mean over the aligned frame pairs of (10 / ln 10) * sqrt(2 * sum_{k>=1} (c_k - c'_k)^2)   [dB]

the usual constant for natural-log cepstra (Kubichek 1993). Values are comparable between models scored on
the same data and mel settings, not with published numbers from SPTK mel-cepstra.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct
from scipy.spatial.distance import cdist

_DB = 10.0 / math.log(10.0)


def mel_cepstra(log_mel: np.ndarray) -> np.ndarray:
    """(C, T) natural-log mel -> (T, C - 1) cepstra without ``c_0``."""
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if log_mel.ndim != 2 or log_mel.shape[0] < 2 or log_mel.shape[1] < 1:
        raise ValueError(f"expected a (channels >= 2, frames >= 1) log-mel, got shape {log_mel.shape}")
    return dct(log_mel, type=2, norm="ortho", axis=0)[1:].T


def dtw_path(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """The minimum-cost monotonic alignment of (Ta, D) and (Tb, D) frames (steps right, down, diagonal), from
    (0, 0) to (Ta - 1, Tb - 1), on the Euclidean distance.

    The accumulated cost of a cell needs only the two anti-diagonals before it, so the recursion runs one
    anti-diagonal at a time as a vector operation: Ta + Tb numpy steps instead of Ta * Tb Python ones. The table
    is kept by anti-diagonal (``by_diagonal[i + j, i]``), where each diagonal's neighbours are plain slices, and
    an anti-diagonal of the row-major cost matrix is a strided slice of its flat view (step Tb - 1).
    """
    cost = cdist(a, b)  # (Ta, Tb)
    rows, cols = cost.shape
    flat = cost.ravel()
    # by_diagonal[d, i]: the accumulated cost of cell (i, d - i) of the table padded with a row and column of inf.
    by_diagonal = np.full((rows + cols + 1, rows + 1), np.inf)
    by_diagonal[0, 0] = 0.0
    for d in range(2, rows + cols + 1):
        lo, hi = max(1, d - cols), min(rows, d - 1)  # rows i of the padded table on this diagonal
        count = hi - lo + 1
        start = (lo - 1) * cols + (d - lo - 1)  # cost[lo - 1, d - lo - 1]; the next cell is cols - 1 further
        step_cost = flat[start: start + (count - 1) * (cols - 1) + 1: cols - 1] if cols > 1 else flat[start:
                                                                                                       start + count]
        previous, before = by_diagonal[d - 1], by_diagonal[d - 2]
        best = np.minimum(np.minimum(before[lo - 1: hi], previous[lo - 1: hi]), previous[lo: hi + 1])
        by_diagonal[d, lo: hi + 1] = best + step_cost
    path, i, j = [], rows, cols
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        d = i + j
        # ties: diagonal first, then up, then left
        step = int(np.argmin((by_diagonal[d - 2, i - 1], by_diagonal[d - 1, i - 1], by_diagonal[d - 1, i])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def mel_cepstral_distortion(predicted: np.ndarray, target: np.ndarray) -> float:
    """MCD in dB between (C, T1) and (C, T2) natural-log mels, over their DTW alignment (see the module)."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape[0] != target.shape[0]:
        raise ValueError(f"predicted mel has {predicted.shape[0]} channels but the target has {target.shape[0]}")
    a, b = mel_cepstra(predicted), mel_cepstra(target)
    pairs = np.array(dtw_path(a, b))
    differences = a[pairs[:, 0]] - b[pairs[:, 1]]
    return float(np.mean(_DB * np.sqrt(2.0 * (differences**2).sum(-1))))
