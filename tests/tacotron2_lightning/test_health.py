"""Alignment health measures separate a diagonal alignment from a stuck or uniform one."""

from __future__ import annotations

import numpy as np
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



# Word timings (symbol, first frame) of a 20-symbol, 40-frame utterance that pauses: the second word starts late.
WORDS = torch.tensor([[[0, 0], [6, 4], [10, 26], [15, 30]]])


def attention_at(positions: list[float], chars: int) -> torch.Tensor:
    """(1, steps, chars) attention whose expected position at step s is positions[s] (two neighbours share it)."""
    alignment = torch.zeros(1, len(positions), chars)
    for step, position in enumerate(positions):
        low = min(int(position), chars - 2)
        alignment[0, step, low] = 1.0 - (position - low)
        alignment[0, step, low + 1] = position - low
    return alignment


def following(words: torch.Tensor, frames: int) -> list[float]:
    """The true position at every frame: linear between word onsets."""
    onsets = words[0].numpy()
    return np.interp(np.arange(frames), onsets[:, 1], onsets[:, 0]).tolist()


def test_attention_on_each_word_as_it_starts_has_no_error():
    alignment = attention_at(following(WORDS, 40), 20)
    lengths = (torch.tensor([20]), torch.tensor([40]))
    assert health.alignment_error(alignment, WORDS, *lengths) == pytest.approx(0.0, abs=1e-5)
    assert health.alignment_error_ratio(alignment, WORDS, *lengths) == pytest.approx(0.0, abs=1e-5)
    # The constant-rate line misses them: |4/40*20 - 6|, |26/40*20 - 10|, |30/40*20 - 15| over four words.
    _, line, valid = health.word_position_errors(alignment, WORDS, *lengths)
    assert valid.all() and line[0].tolist() == pytest.approx([0.0, 4.0, 3.0, 0.0])


def test_constant_rate_attention_has_ratio_one():
    alignment = attention_at([f / 40 * 20 for f in range(40)], 20)
    lengths = (torch.tensor([20]), torch.tensor([40]))
    assert health.alignment_error(alignment, WORDS, *lengths) == pytest.approx(7.0 / 4)
    assert health.alignment_error_ratio(alignment, WORDS, *lengths) == pytest.approx(1.0)


def test_word_errors_read_the_decoder_step_of_each_frame_and_ignore_padding():
    # r = 2: 20 decoder steps for 40 frames; a padded second utterance (12 symbols, 24 frames) whose padded text
    # positions hold attention that must not count, and a padded word row.
    r = 2
    first = attention_at(following(WORDS, 40)[::r], 24)
    second = attention_at([s * r / 24 * 12 for s in range(20)], 24)
    second[0, :, 12:] = 5.0  # weight on padding: masked out
    alignments = torch.cat([first, second])
    words = torch.tensor([[[0, 0], [6, 4], [10, 26], [15, 30]], [[0, 0], [6, 12], [-1, -1], [-1, -1]]])
    input_lengths, output_lengths = torch.tensor([20, 12]), torch.tensor([40, 24])
    errors, line, valid = health.word_position_errors(alignments, words, input_lengths, output_lengths, r)
    assert valid.tolist() == [[True] * 4, [True, True, False, False]]
    assert errors.abs().max() < 1e-5  # both follow their words; the second one at the constant rate
    assert line[1].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.0])
    assert torch.isnan(health.alignment_error(alignments, torch.full((2, 1, 2), -1), input_lengths, output_lengths))
