"""Mel-cepstral distortion after DTW: the literature's units and constant, the order, the silence rule, the alignment,
and the fast recursion against a plain one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tacotron2_lightning.mcd import dtw_path, mel_cepstra, mel_cepstral_distortion, silent_frames


def reference_dtw_path(a, b):
    """The textbook O(Ta * Tb) recursion, cell by cell: the oracle for the vectorised one."""
    cost = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    total = np.full((len(a) + 1, len(b) + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
    path, i, j = [], len(a), len(b)
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin((total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


@pytest.mark.parametrize("lengths", [(1, 1), (1, 9), (7, 1), (30, 30), (50, 80), (81, 40)])
def test_dtw_path_equals_the_cell_by_cell_recursion(lengths):
    rng = np.random.default_rng(sum(lengths))
    a, b = rng.normal(size=(lengths[0], 5)), rng.normal(size=(lengths[1], 5))
    assert dtw_path(a, b) == reference_dtw_path(a, b)


def dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II written out: row k is sqrt(2/n) cos(pi (i + 1/2) k / n), row 0 divided by sqrt 2."""
    n = np.arange(size)
    matrix = np.cos(np.pi * (n[None, :] + 0.5) * n[:, None] / size) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


def test_cepstra_are_the_orthonormal_dct_of_each_frame_in_cepstral_units_without_c0():
    rng = np.random.default_rng(0)
    log_mel = rng.normal(size=(16, 7))
    np.testing.assert_allclose(dct_matrix(16) @ dct_matrix(16).T, np.eye(16), atol=1e-12)
    by_dct = (dct_matrix(16) @ log_mel).T / math.sqrt(2 * 16)
    np.testing.assert_allclose(mel_cepstra(log_mel, order=None), by_dct[:, 1:], atol=1e-12)
    np.testing.assert_allclose(mel_cepstra(log_mel, order=5), by_dct[:, 1:6], atol=1e-12)
    np.testing.assert_allclose(mel_cepstra(log_mel, order=5, with_c0=True)[:, 1:], by_dct[:, 1:6], atol=1e-12)


def test_cepstra_recover_the_coefficients_of_a_log_spectrum_written_as_a_cosine_series():
    # log|H(w)| = c0 + 2 sum_k c_k cos(k w), sampled at the channel centres w_m = pi (m + 1/2) / M: the
    # definition SPTK's mel-cepstrum follows, so values and MCD are on the literature's scale.
    channels = 80
    w = np.pi * (np.arange(channels) + 0.5) / channels
    true = {0: -4.0, 1: 0.8, 2: -0.3, 7: 0.05, 24: 0.01}
    log_spectrum = true[0] + 2 * sum(c * np.cos(k * w) for k, c in true.items() if k)
    recovered = mel_cepstra(log_spectrum[:, None], order=30, with_c0=True)[0]
    np.testing.assert_allclose(recovered, [true.get(k, 0.0) for k in range(31)], atol=1e-12)


def test_the_order_decides_which_detail_counts():
    target = np.zeros((80, 10))
    w = np.pi * (np.arange(80) + 0.5) / 80
    predicted = target + 2 * 0.5 * np.cos(30 * w)[:, None]  # harmonic-scale ripple: c30 off by 0.5
    assert mel_cepstral_distortion(predicted, target) == pytest.approx(0.0, abs=1e-9)  # order 24: not counted
    assert mel_cepstral_distortion(predicted, target, order=None) == pytest.approx(
        10 / math.log(10) * math.sqrt(2 * 0.5**2))


def test_frames_silent_in_both_are_left_out_and_silence_against_speech_is_not():
    rng = np.random.default_rng(1)
    speech = rng.normal(-3.0, 1.0, size=(80, 20))
    floor = np.full((80, 10), math.log(1e-5))
    target = np.concatenate([speech, floor], axis=1)
    hiss = np.concatenate([speech, floor + rng.normal(0, 0.3, size=floor.shape)], axis=1)  # still ~90 dB down
    assert silent_frames(target).tolist() == [False] * 20 + [True] * 10
    assert silent_frames(hiss).tolist() == [False] * 20 + [True] * 10
    assert mel_cepstral_distortion(hiss, target) == pytest.approx(0.0, abs=1e-9)
    assert mel_cepstral_distortion(hiss, target, silence_db=None) > 0.1  # the old rule scored the hiss
    talking_through = np.concatenate([speech, rng.normal(-3.0, 1.0, size=(80, 10))], axis=1)
    assert mel_cepstral_distortion(talking_through, target) > 0.5  # speech where the recording is silent costs


def test_mcd_is_zero_for_identical_time_stretched_or_level_shifted_mels():
    rng = np.random.default_rng(0)
    mel = rng.normal(size=(16, 30))
    assert mel_cepstral_distortion(mel, mel) == pytest.approx(0.0, abs=1e-9)
    # DTW absorbs a slower tempo
    assert mel_cepstral_distortion(np.repeat(mel, 2, axis=1), mel) == pytest.approx(0.0, abs=1e-9)
    assert mel_cepstral_distortion(mel + 3.0, mel) == pytest.approx(0.0, abs=1e-9)  # only c0 changes, dropped


def test_mcd_of_one_shifted_cepstral_coefficient_is_the_textbook_constant():
    target = np.zeros((16, 10))
    shift = np.zeros(16)
    shift[3] = 0.5 * math.sqrt(2 * 16)
    predicted = target + (dct_matrix(16).T @ shift)[:, None]  # c3 += 0.5 in every frame
    np.testing.assert_allclose(mel_cepstra(predicted)[:, 2], 0.5)
    expected = 10 / math.log(10) * math.sqrt(2 * 0.5**2)
    assert mel_cepstral_distortion(predicted, target) == pytest.approx(expected)


def test_dtw_path_is_monotonic_and_matches_repeated_frames():
    a = np.array([[0.0], [1.0], [2.0]])
    b = np.array([[0.0], [1.0], [1.0], [2.0]])
    assert dtw_path(a, b) == [(0, 0), (1, 1), (1, 2), (2, 3)]


def test_mcd_names_bad_shapes():
    with pytest.raises(ValueError, match="predicted mel has 16 channels but the target has 80"):
        mel_cepstral_distortion(np.zeros((16, 3)), np.zeros((80, 3)))
    with pytest.raises(ValueError, match="expected a \\(channels >= 2, frames >= 1\\) log-mel, got shape \\(16,\\)"):
        mel_cepstra(np.zeros(16))
    with pytest.raises(ValueError, match="order must be an integer >= 1 \\(or None: all\\), got 0"):
        mel_cepstra(np.zeros((16, 3)), order=0)
    assert mel_cepstra(np.zeros((16, 3)), order=24).shape == (3, 15)  # a smaller mel keeps what it has


# Paired test
