"""The training losses: NVIDIA's, the weighted gate loss and the guided-attention loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from tacotron2_lightning.loss import guided_attention_loss, tacotron2_loss, weighted_gate_loss


def gate_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 20) random gate logits and NVIDIA's targets: 0, then 1 from each utterance's last frame on."""
    logits = torch.randn(2, 20, generator=torch.Generator().manual_seed(0)) * 3
    targets = torch.zeros(2, 20)
    targets[0, 19:] = 1
    targets[1, 11:] = 1
    return logits, targets


def shifted_diagonal(size: int, shift: int) -> torch.Tensor:
    """(1, size, size) one-hot attention on the diagonal, ``shift`` text positions late (clamped at the end)."""
    alignment = torch.zeros(1, size, size)
    for step in range(size):
        alignment[0, step, min(step + shift, size - 1)] = 1.0
    return alignment


def test_weighted_gate_loss_with_weight_one_is_nvidia_gate_loss():
    logits, targets = gate_batch()
    mel = torch.zeros(2, 4, 20)
    nvidia = tacotron2_loss(mel, mel, logits, mel, targets).gate_loss
    torch.testing.assert_close(weighted_gate_loss(logits, targets, 1.0), nvidia)
    torch.testing.assert_close(nvidia, F.binary_cross_entropy_with_logits(logits, targets))


def test_weighted_gate_loss_scales_only_the_stop_frames():
    logits, targets = gate_batch()
    stop_term = (targets * -F.logsigmoid(logits)).mean()  # the stop frames' share of the unweighted mean
    extra = weighted_gate_loss(logits, targets, 4.0) - weighted_gate_loss(logits, targets, 1.0)
    torch.testing.assert_close(extra, 3.0 * stop_term)
    # Without stop frames, the weight changes nothing.
    torch.testing.assert_close(weighted_gate_loss(logits, torch.zeros_like(targets), 4.0),
                               weighted_gate_loss(logits, torch.zeros_like(targets), 1.0))


@pytest.mark.parametrize("weight", [0.0, -2.0])
def test_weighted_gate_loss_names_a_bad_weight(weight):
    logits, targets = gate_batch()
    with pytest.raises(ValueError, match=f"positive_weight must be > 0, got {weight!r}"):
        weighted_gate_loss(logits, targets, weight)


def test_guided_attention_loss_is_zero_on_the_diagonal_and_grows_off_it():
    lengths = torch.tensor([12])
    losses = [float(guided_attention_loss(shifted_diagonal(12, shift), lengths, lengths)) for shift in range(5)]
    assert losses[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(losses)), losses


def test_guided_attention_loss_is_large_for_attention_stuck_at_the_start():
    stuck = torch.zeros(1, 40, 10)
    stuck[0, :, 0] = 1.0
    assert guided_attention_loss(stuck, torch.tensor([10]), torch.tensor([40])) > 0.4


def test_guided_attention_loss_ignores_padding():
    # The second utterance is 6 steps x 6 characters inside a padded 12 x 12: what lies outside never counts.
    alignments = torch.cat((shifted_diagonal(12, 2), torch.zeros(1, 12, 12)))
    alignments[1, :6, :6] = shifted_diagonal(6, 1)[0]
    padded = alignments.clone()
    padded[1, 6:, :] = 1.0
    padded[1, :, 6:] = 1.0
    lengths = torch.tensor([12, 6])
    torch.testing.assert_close(guided_attention_loss(padded, lengths, lengths),
                               guided_attention_loss(alignments, lengths, lengths))
    # The mean is over valid steps of the whole batch: 12 + 6 of them.
    first = guided_attention_loss(alignments[:1], lengths[:1], lengths[:1]) * 12
    second = guided_attention_loss(alignments[1:, :6, :6], lengths[1:], lengths[1:]) * 6
    torch.testing.assert_close(guided_attention_loss(alignments, lengths, lengths), (first + second) / 18)
