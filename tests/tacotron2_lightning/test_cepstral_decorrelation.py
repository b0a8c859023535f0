"""Cepstral decorrelation: 0 for speech that moves as the recording does, 1 for a spectrum that does not move."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tacotron2_lightning.cepstral_decorrelation import cepstral_decorrelation


def utterance(frames: int = 60, seed: int = 0) -> np.ndarray:
    """A log-mel whose envelope drifts smoothly over time, with silence at both ends."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(80, frames)).cumsum(axis=1) * 0.2
    mel = steps - 3.0
    mel[:, :5] = mel[:, -5:] = math.log(1e-5)
    return mel


def test_the_recording_itself_its_slower_copy_and_a_level_shift_score_zero():
    mel = utterance()
    assert cepstral_decorrelation(mel, mel) == pytest.approx(0.0, abs=1e-12)
    assert cepstral_decorrelation(np.repeat(mel, 2, axis=1), mel) == pytest.approx(0.0, abs=1e-9)  # DTW
    assert cepstral_decorrelation(mel + 1.5, mel) == pytest.approx(0.0, abs=1e-9)  # correlation ignores offsets


def test_a_spectrum_that_does_not_move_scores_one():
    mel = utterance()
    average = np.repeat(mel.mean(axis=1, keepdims=True), mel.shape[1], axis=1)
    assert cepstral_decorrelation(average, mel) == pytest.approx(1.0)
    assert cepstral_decorrelation(mel[:, :1], mel) == pytest.approx(1.0)  # one frame: nothing moves


def test_more_noise_scores_worse_and_another_utterance_worse_still():
    mel = utterance()
    rng = np.random.default_rng(3)
    scores = [cepstral_decorrelation(mel + rng.normal(0, sigma, size=mel.shape), mel) for sigma in (0.1, 0.5, 2.0)]
    assert 0 < scores[0] < scores[1] < scores[2] < 1
    assert cepstral_decorrelation(utterance(seed=9), mel) > scores[0]


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="predicted mel has 16 channels but the target has 80"):
        cepstral_decorrelation(np.zeros((16, 3)), np.zeros((80, 3)))


def test_the_length_weighted_form_charges_for_speech_that_runs_on():
    mel = utterance()
    twice = np.repeat(mel, 2, axis=1)  # the same speech, twice as slow: DTW forgives it entirely
    assert cepstral_decorrelation(twice, mel) == pytest.approx(0.0, abs=1e-9)
    noisy = mel + np.random.default_rng(5).normal(0, 0.5, size=mel.shape)
    plain = cepstral_decorrelation(noisy, mel)
    assert cepstral_decorrelation(noisy, mel, length_weighted=True) == pytest.approx(plain)  # same length
    longer = np.concatenate([noisy, noisy[:, -30:]], axis=1)  # 90 frames for 60
    assert cepstral_decorrelation(longer, mel, length_weighted=True) == pytest.approx(
        1.5 * cepstral_decorrelation(longer, mel))


def test_a_diverged_output_scores_nan_not_a_still_spectrum():
    mel = utterance()
    diverged = mel.copy()
    diverged[:, 10] = np.nan
    assert math.isnan(cepstral_decorrelation(diverged, mel))
    assert math.isnan(cepstral_decorrelation(diverged, mel, length_weighted=True))
