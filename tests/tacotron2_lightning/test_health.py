"""Alignment health measures separate a diagonal alignment from a stuck or uniform one."""

from __future__ import annotations

import pytest
import torch

from tacotron2_lightning import health


def diagonal(steps: int, chars: int) -> torch.Tensor:
    """(1, steps, chars) one-hot attention walking the text at a constant rate."""
    alignment = torch.zeros(1, steps, chars)
    for s in range(steps):
        alignment[0, s, min(chars - 1, s * chars // steps)] = 1.0
    return alignment


def stuck(steps: int, chars: int) -> torch.Tensor:
    alignment = torch.zeros(1, steps, chars)
    alignment[0, :, 0] = 1.0
    return alignment


def test_alignment_score_is_one_for_sharp_and_one_over_n_for_uniform():
    assert health.alignment_score(diagonal(40, 10)) == pytest.approx(1.0)
    assert health.alignment_score(torch.full((2, 40, 10), 0.1)) == pytest.approx(0.1)


def test_alignment_score_ignores_padded_decoder_steps():
    alignment = torch.cat([diagonal(20, 10), torch.full((1, 20, 10), 0.1)], dim=1)  # 20 real, 20 padded
    assert health.alignment_score(alignment, torch.tensor([20])) == pytest.approx(1.0)
    assert health.alignment_score(alignment) == pytest.approx(0.55)


def test_diagonality_high_for_diagonal_low_for_stuck():
    assert health.diagonality(diagonal(40, 10)) == pytest.approx(1.0)
    assert health.diagonality(stuck(40, 10)) < 0.3


def test_diagonality_uses_each_utterances_own_lengths():
    # Utterance 2 has 5 real characters and 20 real steps inside a (40, 10) padded tensor.
    alignment = torch.zeros(2, 40, 10)
    alignment[0] = diagonal(40, 10)[0]
    alignment[1, :20, :5] = diagonal(20, 5)[0]
    score = health.diagonality(alignment, torch.tensor([10, 5]), torch.tensor([40, 20]))
    assert score == pytest.approx(1.0)


def test_monotonicity_detects_backward_jumps():
    assert health.monotonicity(diagonal(30, 10)) == pytest.approx(1.0)
    backwards = diagonal(30, 10).flip(1)
    assert health.monotonicity(backwards) < 0.7


def test_gate_stop_rate_counts_utterances_below_the_cap():
    assert health.gate_stop_rate(torch.tensor([12, 50, 30, 50]), cap_frames=50) == pytest.approx(0.5)


def test_duration_ratios_are_per_utterance_frames_over_true_frames():
    ratios = health.duration_ratios(torch.tensor([10, 30, 0]), torch.tensor([20, 30, 5]))
    assert ratios.tolist() == [0.5, 1.0, 0.0]


def test_mel_cepstral_distortions_ignore_padding_and_are_zero_for_the_recording_itself():
    torch.manual_seed(0)
    target = torch.randn(2, 16, 30)
    predicted = torch.cat([target, torch.full((2, 16, 5), 99.0)], dim=2)  # padding that must not count
    lengths = torch.tensor([30, 20])
    distortions = health.mel_cepstral_distortions(predicted, lengths, target, lengths)
    assert distortions.tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    worse = health.mel_cepstral_distortions(predicted + torch.randn_like(predicted), lengths, target, lengths)
    assert (worse > 1.0).all()

