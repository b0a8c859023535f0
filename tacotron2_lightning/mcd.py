"""Mel-cepstral distortion (MCD) between a synthesised and a ground-truth log-mel spectrogram, as TTS papers report it.

Mel-cepstrum: the real cepstrum of each frame's log amplitude on the mel axis. NVIDIA's mel is the natural log of a
mel filterbank over the STFT magnitude, so a frame's M channels sample ``log|H(w)|`` at M mel-spaced points, and

    log|H(w_m)| = c_0 + 2 * sum_{k>=1} c_k cos(k w_m),   w_m = pi (m + 1/2) / M

gives ``c_k = DCT-II_ortho(log mel)_k / sqrt(2 M)``: the coefficients SPTK's ``mcep`` (and ESPnet's MCD evaluation
through pysptk) compute, in the same units, without a waveform round trip. As in the literature:

* low order: ``c_1 .. c_order`` (``order`` 24, the usual choice at 22 kHz), so the spectral envelope counts and
  the harmonics' fine structure does not;
* ``c_0`` (the frame's level) excluded;
* frames silent in both signals left out: a frame is silent when its level is ``silence_db`` below the loudest
  frame of its own utterance (recordings' digital silence sits at the log floor, 1e-5, ~100 dB down); the two
  sequences are still aligned over all their frames, so leading, trailing or extra silence costs where it faces
  speech;
* the two sequences, of different lengths (free-running decoding stops where its gate says), aligned by dynamic
  time warping on the Euclidean distance of their cepstra, and

    MCD = mean over aligned, not-both-silent frame pairs of (10 / ln 10) sqrt(2 sum_{k=1}^{order} (c_k - c'_k)^2)  [dB]

(Kubichek 1993). Published Tacotron2-class systems score roughly 3-7 dB against their recordings; 0 is identical.
Scores are comparable between models judged on the same data and mel settings.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct
from scipy.spatial.distance import cdist

_DB = 10.0 / math.log(10.0)


STANDARD_ORDER = 24
SILENCE_DB = 40.0
_AMPLITUDE_DB = 20.0 / math.log(10.0)  # natural-log amplitude -> dB


def _as_log_mel(log_mel: np.ndarray) -> np.ndarray:
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if log_mel.ndim != 2 or log_mel.shape[0] < 2 or log_mel.shape[1] < 1:
        raise ValueError(f"expected a (channels >= 2, frames >= 1) log-mel, got shape {log_mel.shape}")
    return log_mel


def mel_cepstra(log_mel: np.ndarray, order: int | None = STANDARD_ORDER, with_c0: bool = False) -> np.ndarray:
    """(C, T) natural-log mel -> (T, order) mel-cepstra ``c_1 .. c_order`` in the literature's units (see the
    module); ``order`` is cut to ``C - 1``, and ``None`` keeps all; ``with_c0`` puts the level ``c_0`` first
    ((T, order + 1))."""
    log_mel = _as_log_mel(log_mel)
    channels = log_mel.shape[0]
    if order is not None and (isinstance(order, bool) or not isinstance(order, int) or order < 1):
        raise ValueError(f"order must be an integer >= 1 (or None: all), got {order!r}")
    order = channels - 1 if order is None else usable_order(order, channels)
    cepstra = dct(log_mel, type=2, norm="ortho", axis=0)[: order + 1].T / math.sqrt(2 * channels)
    if with_c0:
        cepstra[:, 0] *= math.sqrt(2.0)  # the orthonormal DCT's row 0 is sqrt(1/M), not sqrt(2/M)
        return cepstra
    return cepstra[:, 1:]


def usable_order(order: int | None, channels: int) -> int | None:
    """``order``, at most ``channels - 1``: a mel of fewer channels than the standard order keeps all it has."""
    return None if order is None else min(order, channels - 1)


def silent_frames(log_mel: np.ndarray, silence_db: float = SILENCE_DB) -> np.ndarray:
    """(T,) bool: frames whose level (mean log amplitude over the channels) is ``silence_db`` or more below the
    utterance's loudest frame."""
    level = _as_log_mel(log_mel).mean(axis=0) * _AMPLITUDE_DB
    return level <= level.max() - silence_db


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


def mel_cepstral_distortion(predicted: np.ndarray, target: np.ndarray, order: int | None = STANDARD_ORDER,
                            silence_db: float | None = SILENCE_DB) -> float:
    """MCD in dB between (C, T1) and (C, T2) natural-log mels, over their DTW alignment (see the module).

    ``order`` is cut to the mel's channels - 1 where it has fewer; ``order=None`` uses every coefficient and
    ``silence_db=None`` keeps silent frames (the project's MCD before 2026-12, scaled to the literature's units); NaN
    when every aligned pair is silent in both.
    """
    predicted, target = _as_log_mel(predicted), _as_log_mel(target)
    if predicted.shape[0] != target.shape[0]:
        raise ValueError(f"predicted mel has {predicted.shape[0]} channels but the target has {target.shape[0]}")
    order = usable_order(order, target.shape[0])
    a, b = mel_cepstra(predicted, order), mel_cepstra(target, order)
    pairs = np.array(dtw_path(a, b))
    if silence_db is not None:
        both_silent = silent_frames(predicted, silence_db)[pairs[:, 0]] & silent_frames(target, silence_db)[pairs[:, 1]]
        pairs = pairs[~both_silent]
        if len(pairs) == 0:
            return math.nan
    differences = a[pairs[:, 0]] - b[pairs[:, 1]]
    return float(np.mean(_DB * np.sqrt(2.0 * (differences**2).sum(-1))))
