"""Tacotron2's training losses: NVIDIA's (MSE on both mels plus BCE on the stop gate), and two optional terms.

The optional terms change what is minimised, never what is reported: a weighted gate loss that teaches the gate
to stop sooner, and a guided-attention loss that pulls attention onto the diagonal.

Shapes: B batch, N text length, T mel frames, S decoder steps, C mel channels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from tacotron2_lightning.model import lengths_to_mask


class Tacotron2Loss(NamedTuple):
    total: Tensor  # mel_loss + gate_loss: what NVIDIA's training minimises and reports
    mel_loss: Tensor  # MSE(mel) + MSE(postnet mel)
    gate_loss: Tensor


def tacotron2_loss(mel_outputs: Tensor, mel_outputs_postnet: Tensor, gate_outputs: Tensor,
                   mel_targets: Tensor, gate_targets: Tensor) -> Tacotron2Loss:
    """NVIDIA's ``Tacotron2Loss`` on (masked) model outputs and collated targets.

    mel_* (B, C, T), gate_outputs and gate_targets (B, T). Computed in float32 so that a bf16-mixed run
    reports the same numbers as a float32 one would.
    """
    mel_targets = mel_targets.float().detach()
    mel_loss = F.mse_loss(mel_outputs.float(), mel_targets) + F.mse_loss(mel_outputs_postnet.float(), mel_targets)
    gate_loss = F.binary_cross_entropy_with_logits(gate_outputs.float(), gate_targets.float().detach())
    return Tacotron2Loss(mel_loss + gate_loss, mel_loss, gate_loss)


def weighted_gate_loss(gate_outputs: Tensor, gate_targets: Tensor, positive_weight: float) -> Tensor:
    """The gate's BCE with its "stop" frames weighted by ``positive_weight`` (Coqui's ``stopnet_pos_weight``).

    An utterance has one "stop" frame (r with ``n_frames_per_step=r``) against hundreds of "go on" frames, so
    the gate learns to stop late; weighting the stop frames teaches it sooner. ``positive_weight=1`` is
    NVIDIA's gate loss.

    gate_outputs (B, T) logits, gate_targets (B, T) 0/1 -> 0-dim float32 mean over all B*T frames.

    Raises:
        ValueError: If ``positive_weight`` is not positive.

    Example:
        >>> logits, targets = torch.zeros(1, 4), torch.tensor([[0.0, 0.0, 0.0, 1.0]])
        >>> float(weighted_gate_loss(logits, targets, 3.0)) > float(weighted_gate_loss(logits, targets, 1.0))
        True
    """
    if not positive_weight > 0:
        raise ValueError(f"positive_weight must be > 0, got {positive_weight!r}")
    return F.binary_cross_entropy_with_logits(
        gate_outputs.float(), gate_targets.float(), pos_weight=gate_outputs.new_tensor(positive_weight)
    )


def guided_attention_loss(alignments: Tensor, input_lengths: Tensor, decoder_lengths: Tensor,
                          sigma: float = 0.2) -> Tensor:
    """Penalty on attention far from the diagonal (Tachibana et al. 2017).

    ``A[s, n] * (1 - exp(-(n/N - s/S)^2 / (2 sigma^2)))`` summed over text positions and averaged over
    valid decoder steps: the variant that aligned a small model on CPU within two minutes, where the
    mean over every cell stayed a coarse staircase (docs/training.md, "What the default run trades for speed").

    alignments (B, S, N), input_lengths (B,) text lengths N_b, decoder_lengths (B,) decoder steps S_b ->
    0-dim float32; padded steps and text positions never count. 0 when each step attends at n/N = s/S.
    """
    batch, steps, n_text = alignments.shape
    text_valid = lengths_to_mask(input_lengths, n_text)  # (B, N)
    step_valid = lengths_to_mask(decoder_lengths.clamp(max=steps), steps)  # (B, S)
    n = torch.arange(n_text, device=alignments.device).float().view(1, 1, -1) / input_lengths.view(-1, 1, 1)
    s = torch.arange(steps, device=alignments.device).float().view(1, -1, 1) / decoder_lengths.view(-1, 1, 1)
    weight = 1.0 - torch.exp(-((n - s) ** 2) / (2.0 * sigma**2))  # (B, S, N)
    weight = weight * text_valid.unsqueeze(1) * step_valid.unsqueeze(2)
    per_step = (alignments.float() * weight).sum(2)  # (B, S)
    return per_step.sum() / step_valid.sum().clamp(min=1)


def forward_sum_loss(alignments: Tensor, input_lengths: Tensor, decoder_lengths: Tensor,
                     blank_logprob: float = -1.0) -> Tensor:
    """The forward-sum alignment loss (Badlani et al. 2022, "One TTS Alignment To Rule Them All").

    The negative log of the summed probability of every monotonic path that visits each text symbol in order, one
    or more decoder steps each: a CTC loss whose "tokens" are the text positions 1..N and whose per-step
    distributions are the attention's. Unlike guided attention it does not say *where* a symbol sounds, only that
    the symbols come in order, so it learns the timing from the content. Each decoder step may also emit a blank
    (log-probability ``blank_logprob`` before renormalising, as RAD-TTS), which lets a step not commit.

    With ``n_frames_per_step=r`` the time axis is the decoder steps (r frames each). An utterance with fewer
    decoder steps than symbols has no monotonic path and contributes 0 (``zero_infinity``).

    alignments (B, S, N) attention weights, input_lengths (B,) text lengths, decoder_lengths (B,) decoder steps ->
    0-dim float32, the mean over utterances of the loss per text symbol. Padded steps and positions never count.

    Example:
        >>> sharp = torch.eye(4).unsqueeze(0)  # step s attends symbol s
        >>> lengths = torch.tensor([4])
        >>> float(forward_sum_loss(sharp, lengths, lengths)) < float(forward_sum_loss(sharp.flip(2), lengths, lengths))
        True
    """
    batch, steps, n_text = alignments.shape
    text_valid = lengths_to_mask(input_lengths, n_text)  # (B, N)
    # Log-attention, padded text positions impossible; clamped so that a weight that underflowed to 0 is very
    # unlikely rather than -inf (whose gradient would be NaN).
    log_attention = alignments.float().clamp_min(1e-8).log().masked_fill(~text_valid.unsqueeze(1), -1e4)
    blank = log_attention.new_full((batch, steps, 1), blank_logprob)
    log_probs = F.log_softmax(torch.cat((blank, log_attention), dim=2), dim=2)  # (B, S, 1 + N), class 0 blank
    targets = torch.arange(1, n_text + 1, device=alignments.device).expand(batch, n_text)
    return F.ctc_loss(log_probs.transpose(0, 1), targets, decoder_lengths.clamp(max=steps), input_lengths,
                      blank=0, reduction="mean", zero_infinity=True)
