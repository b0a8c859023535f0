"""NVIDIA's decoder loops, one ``decode_step`` per decoder step: the oracle and the baseline.

:meth:`Decoder.forward <tacotron2_lightning.model.Decoder.forward>` computes the teacher-forced maths faster
(time-parallel work hoisted out of the loop, the recurrence one autograd node with its weight gradients one GEMM
each), and :meth:`Decoder.inference <tacotron2_lightning.model.Decoder.inference>` runs free-running synthesis
through :class:`~tacotron2_lightning.inference_step.InferenceStep`. These are the loops they replaced, kept
unchanged so that tests can hold the fast paths to them and ``benchmarks/throughput.py`` can time both in one
process. Nothing trains or synthesises with them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.model import Decoder, Tacotron2, lengths_to_mask


class ReferenceDecoder(Decoder):
    """A :class:`~tacotron2_lightning.model.Decoder` whose teacher-forced pass is NVIDIA's per-step loop."""

    def forward(self, memory: Tensor, mel_targets: Tensor, memory_lengths: Tensor,
                attention_prior: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """memory (B, N, E), mel_targets (B, C, T) -> mel (B, C, T), gate logits (B, T), alignments (B, S, N);
        ``attention_prior`` (B, S, N) added to each step's attention energies, as the fast decoder does."""
        r = self.n_frames_per_step
        prenet_frames = self.teacher_forced_prenet(mel_targets)  # all steps at once

        pad_mask = ~lengths_to_mask(memory_lengths, memory.size(1))
        processed_memory = self.attention_layer.memory_layer(memory)
        state = self.initial_state(memory)
        frames, gates, alignments = [], [], []
        for step, prenet_frame in enumerate(prenet_frames):
            bias = None if attention_prior is None else attention_prior[:, step]
            frame, gate, state = self.decode_step(prenet_frame, state, memory, processed_memory, pad_mask, bias)
            frames.append(frame)
            gates.append(gate.squeeze(1))
            alignments.append(state.attention_weights)

        gate_outputs = torch.stack(gates, dim=1)  # (B, S)
        if r > 1:
            gate_outputs = gate_outputs.repeat_interleave(r, dim=1)
        return self._frames_to_mel(torch.stack(frames, dim=1)), gate_outputs, torch.stack(alignments, dim=1)

    @torch.no_grad()
    def inference(self, memory: Tensor, memory_lengths: Tensor | None = None, max_decoder_steps: int | None = None,
                  warn_at_cap: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """NVIDIA's ``Decoder.inference``: ``prenet``, ``decode_step`` and a stop check per step, the whole batch
        decoding until every utterance's gate has fired or ``max_decoder_steps`` (one int) is reached.
        Returns what :meth:`Decoder.inference` returns (frames after each utterance's stop not zeroed)."""
        batch = memory.size(0)
        r = self.n_frames_per_step
        cap = self.max_decoder_steps if max_decoder_steps is None else int(max_decoder_steps)
        pad_mask = None if memory_lengths is None else ~lengths_to_mask(memory_lengths, memory.size(1))
        processed_memory = self.attention_layer.memory_layer(memory)
        state = self.initial_state(memory)
        frame = memory.new_zeros(batch, self.n_mel_channels * r)
        steps = torch.full((batch,), cap, dtype=torch.long, device=memory.device)
        fired = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        frames, gates, alignments = [], [], []
        for step in range(cap):
            frame, gate, state = self.decode_step(self.prenet(frame), state, memory, processed_memory, pad_mask)
            frames.append(frame)
            gates.append(gate.squeeze(1))
            alignments.append(state.attention_weights)
            newly = (torch.sigmoid(gate.squeeze(1)) > self.gate_threshold) & ~fired
            steps = torch.where(newly, step + 1, steps)
            fired = fired | newly
            if bool(fired.all()):
                break
        gate_outputs = torch.stack(gates, dim=1)
        if r > 1:
            gate_outputs = gate_outputs.repeat_interleave(r, dim=1)
        return (self._frames_to_mel(torch.stack(frames, dim=1)), gate_outputs, torch.stack(alignments, dim=1),
                steps * r)


class ReferenceTacotron2(Tacotron2):
    """:class:`~tacotron2_lightning.model.Tacotron2` training through :class:`ReferenceDecoder`; same state_dict.

    Example:
        >>> from tacotron2_lightning.config import Tacotron2Config
        >>> model = Tacotron2(Tacotron2Config(symbols_embedding_dim=32, encoder_embedding_dim=32))
        >>> reference = ReferenceTacotron2(model.config)
        >>> reference.load_state_dict(model.state_dict())
        <All keys matched successfully>
    """

    def __init__(self, config: Tacotron2Config | None = None):
        super().__init__(config)
        self.decoder = ReferenceDecoder(self.config)
