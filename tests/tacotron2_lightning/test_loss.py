"""The training losses: NVIDIA's, the weighted gate loss and the guided-attention loss."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn import functional as F

from tacotron2_lightning.loss import forward_sum_loss, guided_attention_loss, tacotron2_loss, weighted_gate_loss


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


def soft(alignment: torch.Tensor, sharpness: float = 8.0) -> torch.Tensor:
    """A one-hot alignment made a softmax distribution over text positions."""
    return torch.softmax(alignment * sharpness, dim=2)


def staircase(steps: int, n_text: int, onsets: list[int]) -> torch.Tensor:
    """(1, steps, n_text) one-hot attention that moves to symbol k at step ``onsets[k]``."""
    alignment = torch.zeros(1, steps, n_text)
    for k, start in enumerate(onsets):
        end = onsets[k + 1] if k + 1 < len(onsets) else steps
        alignment[0, start:end, k] = 1.0
    return alignment


def test_forward_sum_loss_prefers_monotonic_attention_at_any_pace():
    lengths, steps = torch.tensor([6]), torch.tensor([12])
    even = staircase(12, 6, [0, 2, 4, 6, 8, 10])
    uneven = staircase(12, 6, [0, 1, 2, 7, 9, 11])  # another timing, still in order: as good
    backwards = even.flip(2)
    skipping = staircase(12, 6, [0, 3, 3, 6, 9, 9])[:, :, [0, 1, 3, 4, 5, 5]]  # symbols 2 never attended
    loss = {name: float(forward_sum_loss(soft(a), lengths, steps))
            for name, a in [("even", even), ("uneven", uneven), ("backwards", backwards), ("skipping", skipping)]}
    assert max(loss["even"], loss["uneven"]) < min(loss["backwards"], loss["skipping"]) / 3, loss


def test_forward_sum_loss_ignores_padding_and_matches_one_at_a_time():
    generator = torch.Generator().manual_seed(0)
    alignments = torch.softmax(torch.randn(3, 14, 7, generator=generator), dim=2)
    text_lengths, step_lengths = torch.tensor([7, 4, 5]), torch.tensor([14, 9, 11])
    pad_mask = torch.arange(7) >= text_lengths.unsqueeze(1)
    alignments = torch.softmax(torch.randn(3, 14, 7, generator=generator).masked_fill(pad_mask.unsqueeze(1), -1e9), 2)
    batched = forward_sum_loss(alignments, text_lengths, step_lengths)
    singles = [forward_sum_loss(alignments[i : i + 1, : step_lengths[i], : text_lengths[i]], text_lengths[i : i + 1],
                                step_lengths[i : i + 1]) for i in range(3)]
    torch.testing.assert_close(batched, torch.stack(singles).mean())
    garbage = alignments.clone()
    garbage[1, 9:] = 0.3  # padded steps hold anything
    torch.testing.assert_close(forward_sum_loss(garbage, text_lengths, step_lengths), batched)


def test_forward_sum_loss_is_ctc_over_blank_and_text_positions():
    """Against F.ctc_loss written out for one utterance: classes [blank, symbol 1..N], blank at log-prob -1 before
    renormalising."""
    alignments = torch.softmax(torch.randn(1, 9, 4, generator=torch.Generator().manual_seed(1)), dim=2)
    logits = torch.cat((torch.full((1, 9, 1), -1.0), alignments.log()), dim=2)
    expected = F.ctc_loss(F.log_softmax(logits, 2).transpose(0, 1), torch.tensor([[1, 2, 3, 4]]), torch.tensor([9]),
                          torch.tensor([4]), reduction="mean")
    torch.testing.assert_close(forward_sum_loss(alignments, torch.tensor([4]), torch.tensor([9])), expected)


def test_forward_sum_loss_with_fewer_steps_than_symbols_is_zero_not_inf_and_has_finite_gradients():
    logits = torch.randn(2, 6, 8, requires_grad=True)
    alignments = torch.softmax(logits, dim=2)
    loss = forward_sum_loss(alignments, torch.tensor([8, 3]), torch.tensor([5, 6]))  # first: 5 steps for 8 symbols
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # With r > 1 the time axis is decoder steps: the same attention over S steps, whatever r produced them.
    assert float(forward_sum_loss(alignments[1:], torch.tensor([3]), torch.tensor([6]))) == pytest.approx(
        2 * float(loss), rel=1e-5)
