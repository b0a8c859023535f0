"""Cepstral decorrelation: does the synthesised spectrum move the way the recording's does? Lower is better.

Mel-cepstral distortion (:mod:`tacotron2_lightning.mcd`) scores each frame on its own, so it pays twice for a sharp
formant slightly misplaced and once for a blurred one: a Tacotron2 that has not aligned, which drones one average
spectrum to its cap, scores *better* than one that speaks the words with an imperfect envelope (on the built-in
data, 4.5 dB at step 50 against 5.6-6.1 dB once aligned; ``benchmarks/metric_validity.py``). This measure asks
instead whether the spectrum changes where and as the recording's changes:

* the mel-cepstra ``c_0 .. c_order`` of both (``c_0``, the level, included: speech against silence is the
  clearest change there is);
* the frames aligned by the same DTW as MCD's (on ``c_1 .. c_order``), so timing and speaking rate are forgiven;
* for each coefficient, Pearson's correlation between the two aligned trajectories (0 for a coefficient that does
  not move in one of them: a constant spectrum carries no information);

    decorrelation = 1 - mean over the coefficients of that correlation

and, since DTW forgives any difference of timing, the length-weighted form multiplies it by the ratio of the
longer sequence's frames to the shorter's, as MCD-DTW-SL weights MCD-DTW (speech length): a model that never stops
babbles on to its cap, twice the recording, and pays for it. ``val/cepstral_decorrelation_sl``, the synthesis
objective's value, is that form.

Unweighted, 0 for the recording itself, ~0.01 for it time-stretched by 10 %, ~0.2 at 20 dB SNR, 1 for the
utterance's mean spectrum repeated, ~0.75 for another sentence's recording; unaligned checkpoints score 0.85-1
and aligned ones fall from ~0.87 as they train. Length-weighted, it ranks that ladder and every aligned checkpoint
above every unaligned one in two training runs, which neither MCD nor the unweighted form does (docs/benchmarks.md
"Judging a trial").
"""

from __future__ import annotations

import math

import numpy as np

from tacotron2_lightning.mcd import STANDARD_ORDER, _as_log_mel, dtw_path, mel_cepstra, usable_order

_FLAT = 1e-9  # a trajectory whose standard deviation is below this does not move


def cepstral_decorrelation(predicted: np.ndarray, target: np.ndarray, order: int = STANDARD_ORDER,
                           length_weighted: bool = False) -> float:
    """1 - the mean correlation of the DTW-aligned mel-cepstral trajectories of (C, T1) and (C, T2) natural-log
    mels (see the module); in [0, 2], 0 when they move alike (NaN when either holds a non-finite value);
    ``length_weighted`` multiplies it by ``max(T1, T2) / min(T1, T2)``. ``order`` is cut to the channels - 1."""
    predicted, target = _as_log_mel(predicted), _as_log_mel(target)
    if predicted.shape[0] != target.shape[0]:
        raise ValueError(f"predicted mel has {predicted.shape[0]} channels but the target has {target.shape[0]}")
    if not (np.isfinite(predicted).all() and np.isfinite(target).all()):
        return math.nan  # a diverged model's output is not "a spectrum that does not move"; NaN, as MCD gives
    order = usable_order(order, target.shape[0])
    a, b = mel_cepstra(predicted, order, with_c0=True), mel_cepstra(target, order, with_c0=True)
    pairs = np.array(dtw_path(a[:, 1:], b[:, 1:]))
    x, y = a[pairs[:, 0]], b[pairs[:, 1]]
    x, y = x - x.mean(0), y - y.mean(0)
    spread_x, spread_y = np.sqrt((x**2).sum(0)), np.sqrt((y**2).sum(0))
    moving = (spread_x > _FLAT * np.sqrt(len(x))) & (spread_y > _FLAT * np.sqrt(len(y)))
    correlations = np.zeros(x.shape[1])
    correlations[moving] = (x * y).sum(0)[moving] / (spread_x * spread_y)[moving]
    value = 1.0 - correlations.mean()
    if length_weighted:
        value *= max(len(a), len(b)) / min(len(a), len(b))
    return float(value)
