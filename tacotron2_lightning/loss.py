"""NVIDIA's Tacotron2 loss: MSE on both mel outputs plus BCE on the stop gate, unweighted means."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor
from torch.nn import functional as F


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
