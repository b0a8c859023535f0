"""Tacotron2, reproducing NVIDIA's public implementation (github NVIDIA/tacotron2, commit 185cd24e).

Module and parameter names follow NVIDIA's ``model.py`` and ``layers.py`` exactly, so that
``state_dict()`` is key-for-key and shape-for-shape NVIDIA's and the published LJSpeech checkpoint loads
as is. The maths is NVIDIA's too; what differs:

* the decoder's recurrent state is passed explicitly instead of living on ``self``;
* ``n_frames_per_step > 1`` trains (NVIDIA's code only runs with 1): the gate predicts once per
  decoder step and is repeated over the step's frames;
* ``inference`` decodes a batch of utterances, each stopping on its own gate or its own step cap, with
  padding masked in the encoder and postnet so that each utterance decodes exactly as it would alone; once
  some have stopped, the remaining steps decode only the others.

Shapes: B batch, N text length, T mel frames, S = T / n_frames_per_step decoder steps, C mel channels.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.decoder_recurrence import RecurrenceWeights, teacher_forced_recurrence
from tacotron2_lightning.inference_step import InferenceStep

log = logging.getLogger(__name__)


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on valid positions."""
    if max_len is None:
        max_len = int(lengths.max())
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def padding_bias(lengths: Tensor, max_len: int, dtype: torch.dtype) -> Tensor:
    """(B,) lengths -> (B, max_len) attention-energy bias: 0 on valid positions, -inf on padding."""
    valid = lengths_to_mask(lengths, max_len)
    return torch.zeros(valid.shape, dtype=dtype, device=lengths.device).masked_fill(~valid, float("-inf"))


def decoder_steps(frames: Tensor | int, n_frames_per_step: int) -> Tensor | int:
    """Decoder steps that produce ``frames`` mel frames, ``n_frames_per_step`` per step (rounded up).

    ``frames`` is an int or an integer tensor such as (B,) lengths; the result has the same type.

    Example:
        >>> decoder_steps(7, 2)
        4
    """
    return -(-frames // n_frames_per_step)


class LinearNorm(nn.Module):
    """A Linear layer with NVIDIA's Xavier-uniform initialisation (state_dict keys ``linear_layer.*``)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, w_init_gain: str = "linear"):
        super().__init__()
        self.linear_layer = nn.Linear(in_dim, out_dim, bias=bias)
        nn.init.xavier_uniform_(self.linear_layer.weight, gain=nn.init.calculate_gain(w_init_gain))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_layer(x)


class ConvNorm(nn.Module):
    """A "same"-padded Conv1d with NVIDIA's Xavier-uniform initialisation (state_dict keys ``conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, bias: bool = True,
                 w_init_gain: str = "linear"):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=bias)
        nn.init.xavier_uniform_(self.conv.weight, gain=nn.init.calculate_gain(w_init_gain))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class LocationLayer(nn.Module):
    """Features of where attention has been: conv over (previous, cumulative) weights, then a projection."""

    def __init__(self, n_filters: int, kernel_size: int, attention_dim: int):
        super().__init__()
        self.location_conv = ConvNorm(2, n_filters, kernel_size, bias=False)
        self.location_dense = LinearNorm(n_filters, attention_dim, bias=False, w_init_gain="tanh")

    def forward(self, attention_weights_cat: Tensor) -> Tensor:
        # (B, 2, N) -> (B, n_filters, N) -> (B, N, attention_dim)
        return self.location_dense(self.location_conv(attention_weights_cat).transpose(1, 2))

    def composed_weight(self) -> Tensor:
        """The convolution then the projection as one convolution weight (attention_dim, 2, kernel): no
        nonlinearity lies between them, so ``conv1d(x, composed_weight())`` is ``forward(x)`` transposed."""
        conv = self.location_conv.conv.weight  # (n_filters, 2, kernel)
        return (self.location_dense.linear_layer.weight @ conv.reshape(conv.size(0), -1)).reshape(-1, *conv.shape[1:])


class Attention(nn.Module):
    """Location-sensitive additive attention (Chorowski et al. 2015), as NVIDIA's."""

    def __init__(self, attention_rnn_dim: int, embedding_dim: int, attention_dim: int,
                 attention_location_n_filters: int, attention_location_kernel_size: int):
        super().__init__()
        self.query_layer = LinearNorm(attention_rnn_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.memory_layer = LinearNorm(embedding_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.v = LinearNorm(attention_dim, 1, bias=False)
        self.location_layer = LocationLayer(
            attention_location_n_filters, attention_location_kernel_size, attention_dim
        )

    def forward(self, query: Tensor, memory: Tensor, processed_memory: Tensor,
                attention_weights_cat: Tensor, pad_mask: Tensor | None,
                energy_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """query (B, attention_rnn_dim), memory (B, N, E), processed_memory (B, N, attention_dim),
        attention_weights_cat (B, 2, N), pad_mask (B, N) True on padding -> context (B, E), weights (B, N).

        ``energy_bias`` (B, N), when given, is added to the energies before the softmax: the weighted log of an
        alignment prior (:mod:`tacotron2_lightning.alignment_prior`) in teacher-forced training.
        """
        processed_query = self.query_layer(query).unsqueeze(1)  # (B, 1, attention_dim)
        processed_location = self.location_layer(attention_weights_cat)  # (B, N, attention_dim)
        energies = self.v(torch.tanh(processed_query + processed_location + processed_memory)).squeeze(-1)
        if energy_bias is not None:
            energies = energies + energy_bias
        if pad_mask is not None:
            energies = energies.masked_fill(pad_mask, float("-inf"))
        weights = F.softmax(energies, dim=1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights


class Prenet(nn.Module):
    """Two bias-free ReLU layers with dropout that stays on in eval(), as NVIDIA's (p = ``dropout``)."""

    def __init__(self, in_dim: int, sizes: list[int], dropout: float):
        super().__init__()
        in_sizes = [in_dim] + sizes[:-1]
        self.layers = nn.ModuleList(LinearNorm(i, o, bias=False) for i, o in zip(in_sizes, sizes, strict=True))
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        for linear in self.layers:
            x = F.dropout(F.relu(linear(x)), p=self.dropout, training=self.dropout > 0)
        return x


def _masked(x: Tensor, valid: Tensor | None) -> Tensor:
    """Zeros x (B, C, L) where valid (B, L) is False; identity when no mask is given."""
    return x if valid is None else x * valid.unsqueeze(1).to(x.dtype)


class Postnet(nn.Module):
    """Five conv + BatchNorm layers refining the decoder's mel (residual added by the caller)."""

    def __init__(self, config: Tacotron2Config):
        super().__init__()
        c = config
        dims = [c.n_mel_channels] + [c.postnet_embedding_dim] * (c.postnet_n_convolutions - 1) + [c.n_mel_channels]
        self.convolutions = nn.ModuleList()
        for i in range(c.postnet_n_convolutions):
            last = i == c.postnet_n_convolutions - 1
            self.convolutions.append(nn.Sequential(
                ConvNorm(dims[i], dims[i + 1], c.postnet_kernel_size, w_init_gain="linear" if last else "tanh"),
                nn.BatchNorm1d(dims[i + 1]),
            ))

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:
        """x (B, C, T) -> (B, C, T). With ``valid`` (B, T), padding is zeroed before every layer so that
        padded frames act as the convolutions' zero padding (batched inference == one at a time)."""
        for conv in self.convolutions[:-1]:
            x = F.dropout(torch.tanh(conv(_masked(x, valid))), 0.5, self.training)
        return F.dropout(self.convolutions[-1](_masked(x, valid)), 0.5, self.training)


class Encoder(nn.Module):
    """Character convolutions then a bidirectional LSTM over the valid part of each sequence."""

    def __init__(self, config: Tacotron2Config):
        super().__init__()
        dim = config.encoder_embedding_dim
        self.convolutions = nn.ModuleList(
            nn.Sequential(ConvNorm(dim, dim, config.encoder_kernel_size, w_init_gain="relu"), nn.BatchNorm1d(dim))
            for _ in range(config.encoder_n_convolutions)
        )
        self.lstm = nn.LSTM(dim, dim // 2, 1, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, input_lengths: Tensor, mask_padding: bool = False) -> Tensor:
        """x (B, E, N) embedded text -> (B, max(input_lengths), E).

        NVIDIA's training lets the pad embedding leak into the convolutions; ``mask_padding`` zeroes it
        instead (used at inference so a padded batch encodes each utterance as it would alone).
        """
        valid = lengths_to_mask(input_lengths, x.size(2)) if mask_padding else None
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(_masked(x, valid))), 0.5, self.training)
        packed = nn.utils.rnn.pack_padded_sequence(
            x.transpose(1, 2), input_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        self.lstm.flatten_parameters()
        outputs, _ = self.lstm(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return outputs


class DecoderState(NamedTuple):
    """Recurrent state carried from one decoder step to the next."""

    attention_hidden: Tensor  # (B, attention_rnn_dim)
    attention_cell: Tensor
    decoder_hidden: Tensor  # (B, decoder_rnn_dim)
    decoder_cell: Tensor
    attention_weights: Tensor  # (B, N)
    attention_weights_cum: Tensor  # (B, N)
    attention_context: Tensor  # (B, E)


class Decoder(nn.Module):
    """Autoregressive mel decoder with location-sensitive attention over the encoder outputs."""

    def __init__(self, config: Tacotron2Config):
        super().__init__()
        c = config
        self.n_mel_channels = c.n_mel_channels
        self.n_frames_per_step = c.n_frames_per_step
        self.encoder_embedding_dim = c.encoder_embedding_dim
        self.attention_rnn_dim = c.attention_rnn_dim
        self.decoder_rnn_dim = c.decoder_rnn_dim
        self.max_decoder_steps = c.max_decoder_steps
        self.gate_threshold = c.gate_threshold
        self.p_attention_dropout = c.p_attention_dropout
        self.p_decoder_dropout = c.p_decoder_dropout
        # (back, front) of the inference attention window around the previous step's peak, or None.
        self.inference_window = (c.inference_window_back, c.inference_window_front) if c.inference_window else None
        frame_dim = c.n_mel_channels * c.n_frames_per_step

        self.prenet = Prenet(frame_dim, [c.prenet_dim, c.prenet_dim], c.prenet_dropout)
        self.attention_rnn = nn.LSTMCell(c.prenet_dim + c.encoder_embedding_dim, c.attention_rnn_dim)
        self.attention_layer = Attention(
            c.attention_rnn_dim, c.encoder_embedding_dim, c.attention_dim,
            c.attention_location_n_filters, c.attention_location_kernel_size,
        )
        self.decoder_rnn = nn.LSTMCell(c.attention_rnn_dim + c.encoder_embedding_dim, c.decoder_rnn_dim, 1)
        self.linear_projection = LinearNorm(c.decoder_rnn_dim + c.encoder_embedding_dim, frame_dim)
        self.gate_layer = LinearNorm(c.decoder_rnn_dim + c.encoder_embedding_dim, 1, w_init_gain="sigmoid")

    def initial_state(self, memory: Tensor) -> DecoderState:
        batch, max_len, _ = memory.shape
        zeros = memory.new_zeros
        return DecoderState(
            zeros(batch, self.attention_rnn_dim), zeros(batch, self.attention_rnn_dim),
            zeros(batch, self.decoder_rnn_dim), zeros(batch, self.decoder_rnn_dim),
            zeros(batch, max_len), zeros(batch, max_len), zeros(batch, self.encoder_embedding_dim),
        )

    def decode_step(self, prenet_frame: Tensor, state: DecoderState, memory: Tensor, processed_memory: Tensor,
                    pad_mask: Tensor | None, energy_bias: Tensor | None = None) -> tuple[Tensor, Tensor, DecoderState]:
        """One decoder step: prenet_frame (B, prenet_dim) -> frame (B, C*r), gate logit (B, 1), new state.
        ``energy_bias`` (B, N): added to the attention energies (an inference window's -inf outside it)."""
        cell_input = torch.cat((prenet_frame, state.attention_context), -1)
        attention_hidden, attention_cell = self.attention_rnn(
            cell_input, (state.attention_hidden, state.attention_cell)
        )
        attention_hidden = F.dropout(attention_hidden, self.p_attention_dropout, self.training)

        weights_cat = torch.stack((state.attention_weights, state.attention_weights_cum), dim=1)
        context, weights = self.attention_layer(attention_hidden, memory, processed_memory, weights_cat, pad_mask,
                                                energy_bias)
        weights_cum = state.attention_weights_cum + weights

        decoder_hidden, decoder_cell = self.decoder_rnn(
            torch.cat((attention_hidden, context), -1), (state.decoder_hidden, state.decoder_cell)
        )
        decoder_hidden = F.dropout(decoder_hidden, self.p_decoder_dropout, self.training)

        hidden_and_context = torch.cat((decoder_hidden, context), dim=1)
        frame = self.linear_projection(hidden_and_context)
        gate = self.gate_layer(hidden_and_context)
        new_state = DecoderState(
            attention_hidden, attention_cell, decoder_hidden, decoder_cell, weights, weights_cum, context
        )
        return frame, gate, new_state

    def _frames_to_mel(self, frames: Tensor) -> Tensor:
        # (B, S, C*r) -> (B, C, S*r)
        return frames.reshape(frames.size(0), -1, self.n_mel_channels).transpose(1, 2)

    def teacher_forced_prenet(self, mel_targets: Tensor) -> Tensor:
        """The prenet of every step's input under teacher forcing, all steps at once: mel_targets (B, C, T), T a
        multiple of n_frames_per_step -> (S, B, prenet_dim), step 0 fed the all-zero "go" frame."""
        batch, _, n_frames = mel_targets.shape
        r = self.n_frames_per_step
        if n_frames % r:
            raise ValueError(
                f"mel_targets has {n_frames} frames, not a multiple of n_frames_per_step={r}; "
                "pad it as the collate function does"
            )
        # (B, C, T) -> (S, B, C*r): each decoder step sees the previous step's r frames.
        targets = mel_targets.transpose(1, 2).reshape(batch, n_frames // r, -1).transpose(0, 1)
        go_frame = mel_targets.new_zeros(1, batch, self.n_mel_channels * r)
        return self.prenet(torch.cat((go_frame, targets[:-1]), dim=0))

    def forward(self, memory: Tensor, mel_targets: Tensor, memory_lengths: Tensor,
                attention_prior: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced decoding: NVIDIA's per-step maths (``decode_step``), computed faster.

        What does not depend on the recurrence runs once for all steps: the prenet, the attention LSTM's input
        projection of the prenet frames, the frame projection and the gate. The recurrence itself is one
        autograd node with a written-out backward pass (:mod:`tacotron2_lightning.decoder_recurrence`), whose
        weight gradients are one GEMM each over all steps. ``tacotron2_lightning.reference_decoder`` keeps the
        plain loop this reproduces.

        memory (B, N, E), mel_targets (B, C, T) with T a multiple of n_frames_per_step ->
        mel (B, C, T), gate logits (B, T), alignments (B, S, N). ``attention_prior`` (B, S, N), when given, is
        added to each step's attention energies (the weighted log alignment prior; None is NVIDIA's attention).
        """
        r = self.n_frames_per_step
        prenet_frames = self.teacher_forced_prenet(mel_targets)  # (S, B, prenet_dim)
        attention_rnn, decoder_rnn, attention = self.attention_rnn, self.decoder_rnn, self.attention_layer
        # The attention LSTM's input weights split by what they multiply: the prenet frames (all steps in one
        # GEMM, here) and the previous context, which joins the recurrent weights inside the loop.
        w_prenet, w_context = attention_rnn.weight_ih.split([prenet_frames.size(2), self.encoder_embedding_dim],
                                                            dim=1)
        attention_bases = F.linear(prenet_frames, w_prenet, attention_rnn.bias_ih + attention_rnn.bias_hh)
        weights = RecurrenceWeights(
            attention_lstm=torch.cat((w_context, attention_rnn.weight_hh), dim=1),
            decoder_lstm=torch.cat((decoder_rnn.weight_ih, decoder_rnn.weight_hh), dim=1),
            decoder_bias=decoder_rnn.bias_ih + decoder_rnn.bias_hh,
            query=attention.query_layer.linear_layer.weight,
            location=attention.location_layer.composed_weight(),
            energy=attention.v.linear_layer.weight,
        )
        energy_bias = padding_bias(memory_lengths, memory.size(1), memory.dtype)
        if attention_prior is not None:  # (B, S, N) -> (S, B, N)
            energy_bias = (attention_prior.transpose(0, 1) + energy_bias).to(memory.dtype)
        hiddens, contexts, alignments = teacher_forced_recurrence(
            attention_bases, memory, attention.memory_layer(memory), energy_bias, weights,
            self.p_attention_dropout, self.p_decoder_dropout, self.training)

        hidden_and_context = torch.cat((hiddens, contexts), dim=2)  # (S, B, D + E)
        frames = self.linear_projection(hidden_and_context).transpose(0, 1)  # (B, S, C*r)
        gate_outputs = self.gate_layer(hidden_and_context).squeeze(2).transpose(0, 1)  # (B, S)
        if r > 1:
            gate_outputs = gate_outputs.repeat_interleave(r, dim=1)
        return self._frames_to_mel(frames), gate_outputs, alignments.transpose(0, 1)

    @torch.no_grad()
    def inference(self, memory: Tensor, memory_lengths: Tensor | None = None,
                  max_decoder_steps: int | Tensor | None = None,
                  warn_at_cap: bool = True) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Free-running decoding until each utterance's gate fires or it reaches its step cap.

        ``max_decoder_steps`` is one cap for the whole batch (an int; the config's when None) or a (B,)
        integer tensor of per-utterance caps. Once an utterance stops, later steps decode only the
        utterances still going (a stopped one costs nothing more); each utterance decodes exactly as it
        would alone.

        Returns mel (B, C, S*r), gate logits (B, S*r), alignments (B, S, N), all zero after an utterance's
        stop, and the number of frames each utterance produced (B,), counting the frame group on which its
        gate fired (its cap times r when the gate never fired).
        """
        if torch.is_autocast_enabled(memory.device.type):
            # The step updates its state in place, which needs one dtype: the loop runs in float32 (as the
            # training recurrence does); the postnet after it still autocasts.
            with torch.autocast(memory.device.type, enabled=False):
                return self.inference(memory.float(), memory_lengths, max_decoder_steps, warn_at_cap)
        batch = memory.size(0)
        r = self.n_frames_per_step
        requested = self.max_decoder_steps if max_decoder_steps is None else max_decoder_steps
        caps = _per_utterance_caps(requested, batch, memory.device)
        step_function = InferenceStep(self, memory)
        state = step_function.initial_state()
        # -inf on each utterance's padding, added to the attention energies (None: no padding).
        padding = None if memory_lengths is None else padding_bias(memory_lengths, memory.size(1), memory.dtype)
        frame = memory.new_zeros(batch, self.n_mel_channels * r)
        steps = caps.clone()
        gate_fired = torch.zeros(batch, dtype=torch.bool, device=memory.device)
        # The utterances still decoding (batch indices) and their caps; the state, memory, padding and previous
        # frame hold only their rows.
        rows, row_caps = torch.arange(batch, device=memory.device), caps
        next_cap = int(caps.min())
        segments = [_Segment(rows, [], [], [])]
        positions = torch.arange(memory.size(1), device=memory.device)
        peaks = torch.zeros(batch, dtype=torch.long, device=memory.device)  # the window's centre: the last peak
        for step in range(int(caps.max())):
            energy_bias = padding
            if self.inference_window is not None:
                back, front = self.inference_window
                offsets = positions.unsqueeze(0) - peaks.unsqueeze(1)  # (B, N)
                window = memory.new_zeros(offsets.shape).masked_fill((offsets < -back) | (offsets >= front),
                                                                     float("-inf"))
                energy_bias = window if padding is None else window + padding
            frame, gate, weights, state = step_function(self.prenet(frame), state, energy_bias)
            if self.inference_window is not None:
                peaks = weights.argmax(dim=1)
            segments[-1].frames.append(frame)
            segments[-1].gates.append(gate)
            segments[-1].alignments.append(weights)
            fired = torch.sigmoid(gate) > self.gate_threshold
            if step + 1 < next_cap and not bool(fired.any()):
                continue
            done = fired | (row_caps == step + 1)
            steps[rows] = torch.where(fired, step + 1, steps[rows])
            gate_fired[rows] = fired
            going = torch.nonzero(~done).squeeze(1)
            if going.numel() == 0:
                break
            rows, row_caps, frame, peaks = rows[going], row_caps[going], frame[going], peaks[going]
            state = state.select(going)
            step_function.select(going)
            padding = None if padding is None else padding[going]
            next_cap = int(row_caps.min())
            segments.append(_Segment(rows, [], [], []))
        frames, gates, alignments = _assembled(segments, batch)
        if warn_at_cap and not bool(gate_fired.all()):
            log.warning(
                "Reached max_decoder_steps=%s before the gate fired for %d of %d utterance(s)",
                caps.tolist() if isinstance(requested, Tensor) else requested, int((~gate_fired).sum()), batch,
            )
        if r > 1:
            gates = gates.repeat_interleave(r, dim=1)
        return self._frames_to_mel(frames), gates, alignments, steps * r


def _per_utterance_caps(max_decoder_steps: int | Tensor, batch: int, device: torch.device) -> Tensor:
    """A cap for the batch (int) or per utterance ((B,) integer tensor) -> (B,) long caps on ``device``."""
    if isinstance(max_decoder_steps, Tensor):
        caps = max_decoder_steps
        integer = not (caps.dtype.is_floating_point or caps.dtype.is_complex or caps.dtype == torch.bool)
        if caps.shape == (batch,) and integer and bool((caps >= 1).all()):
            return caps.to(device=device, dtype=torch.long)
        got = f"a {tuple(caps.shape)} {caps.dtype} tensor {caps.tolist()}"
    elif isinstance(max_decoder_steps, numbers.Integral) and not isinstance(max_decoder_steps, bool):
        if max_decoder_steps >= 1:
            return torch.full((batch,), int(max_decoder_steps), dtype=torch.long, device=device)
        got = repr(max_decoder_steps)
    else:
        got = repr(max_decoder_steps)
    raise ValueError(
        f"max_decoder_steps must be a positive int or a ({batch},) integer tensor of positive per-utterance "
        f"caps, got {got}"
    )


class _Segment(NamedTuple):
    """Decoder steps run on the same utterances: their batch rows (A,), then each step's (A, ...) outputs."""

    rows: Tensor
    frames: list[Tensor]
    gates: list[Tensor]
    alignments: list[Tensor]


def _assembled(segments: list[_Segment], batch: int) -> tuple[Tensor, Tensor, Tensor]:
    """The segments of compacted decoding -> frames (B, S, C*r), gates (B, S), alignments (B, S, N), zero where
    an utterance had stopped. Written once at the end: one copy per segment, not an allocation per step."""
    outputs = []
    for field in ("frames", "gates", "alignments"):
        stacked = [torch.stack(getattr(segment, field), dim=1) for segment in segments]  # (A, steps, ...)
        if len(stacked) == 1:  # no utterance stopped before the last step
            outputs.append(stacked[0])
            continue
        out = stacked[0].new_zeros((batch, sum(t.size(1) for t in stacked), *stacked[0].shape[2:]))
        start = 0
        for segment, values in zip(segments, stacked, strict=True):
            out[:, start : start + values.size(1)].index_copy_(0, segment.rows, values)
            start += values.size(1)
        outputs.append(out)
    return outputs[0], outputs[1], outputs[2]


class Inference(NamedTuple):
    """What :meth:`Tacotron2.inference` returns: NVIDIA's four outputs, then each utterance's length.

    Everything after an utterance's stop is zeroed (gate logits: set to 1e3, "stop").
    """

    mel: Tensor  # (B, C, T) decoder output
    mel_postnet: Tensor  # (B, C, T) decoder output plus the postnet's residual
    gate: Tensor  # (B, T) logits
    alignments: Tensor  # (B, S, N)
    lengths: Tensor  # (B,) frames each utterance produced, counting the step on which its gate fired


class Tacotron2(nn.Module):
    """NVIDIA's Tacotron2: text ids -> mel spectrogram, stop-gate logits and attention alignments.

    Example:
        >>> model = Tacotron2(Tacotron2Config(symbols_embedding_dim=32, encoder_embedding_dim=32))
        >>> sorted(model.state_dict())[0]
        'decoder.attention_layer.location_layer.location_conv.conv.weight'
    """

    def __init__(self, config: Tacotron2Config | None = None):
        super().__init__()
        self.config = config = config or Tacotron2Config()
        self.mask_padding = config.mask_padding
        self.n_mel_channels = config.n_mel_channels
        self.n_frames_per_step = config.n_frames_per_step
        self.embedding = nn.Embedding(config.n_symbols, config.symbols_embedding_dim)
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (config.n_symbols + config.symbols_embedding_dim))
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.postnet = Postnet(config)

    def forward(self, text_padded: Tensor, input_lengths: Tensor, mel_padded: Tensor,
                output_lengths: Tensor, attention_prior: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Teacher-forced pass on a padded batch (NVIDIA's collate layout).

        text_padded (B, N) int, input_lengths (B,), mel_padded (B, C, T), output_lengths (B,) ->
        mel_outputs (B, C, T), mel_outputs_postnet (B, C, T), gate_outputs (B, T), alignments (B, S, N),
        with padded frames zeroed and padded gate logits set to 1e3 when ``mask_padding``. ``attention_prior``
        (B, S, N): a bias on the attention energies of each decoder step (see :meth:`Decoder.forward`).
        """
        embedded = self.embedding(text_padded).transpose(1, 2)
        memory = self.encoder(embedded, input_lengths)
        mel_outputs, gate_outputs, alignments = self.decoder(memory, mel_padded, input_lengths, attention_prior)
        mel_outputs_postnet = mel_outputs + self.postnet(mel_outputs)
        if self.mask_padding:
            padding = ~lengths_to_mask(output_lengths, mel_outputs.size(2))  # (B, T)
            mel_outputs = mel_outputs.masked_fill(padding.unsqueeze(1), 0.0)
            mel_outputs_postnet = mel_outputs_postnet.masked_fill(padding.unsqueeze(1), 0.0)
            gate_outputs = gate_outputs.masked_fill(padding, 1e3)
        return mel_outputs, mel_outputs_postnet, gate_outputs, alignments

    @torch.no_grad()
    def inference(self, sequence: Tensor, input_lengths: Tensor | None = None,
                  max_decoder_steps: int | Tensor | None = None, warn_at_cap: bool = True) -> Inference:
        """Free-running synthesis of one or several utterances.

        ``sequence`` (B, N) or (N,) ids, ``input_lengths`` (B,) when padded. Returns an :class:`Inference`:
        NVIDIA's ``(mel_outputs, mel_outputs_postnet, gate_outputs, alignments)`` with frames after an
        utterance's stop zeroed, then the (B,) number of frames each produced. An utterance stops when
        sigmoid(gate) > gate_threshold or after ``max_decoder_steps``: one int for the batch or a (B,) integer
        tensor of per-utterance caps; one that reaches its cap gives ``cap * n_frames_per_step`` frames (a
        warning unless ``warn_at_cap`` is False: health checks expect untrained models to run into the cap).

        Example:
            >>> model = Tacotron2(Tacotron2Config(symbols_embedding_dim=32, encoder_embedding_dim=32)).eval()
            >>> text, lengths = torch.randint(1, 100, (2, 7)), torch.tensor([7, 5])
            >>> caps = torch.tensor([3, 5])
            >>> decoded = model.inference(text, lengths, max_decoder_steps=caps, warn_at_cap=False)
            >>> bool((decoded.lengths <= caps * model.n_frames_per_step).all())  # equal where capped
            True
        """
        if sequence.dim() == 1:
            sequence = sequence.unsqueeze(0)
        if input_lengths is None:
            input_lengths = torch.full((sequence.size(0),), sequence.size(1), dtype=torch.long,
                                       device=sequence.device)
        batched = sequence.size(0) > 1
        embedded = self.embedding(sequence).transpose(1, 2)
        memory = self.encoder(embedded, input_lengths, mask_padding=batched)
        mel_outputs, gate_outputs, alignments, lengths = self.decoder.inference(
            memory, input_lengths if batched else None, max_decoder_steps, warn_at_cap
        )
        valid = lengths_to_mask(lengths, mel_outputs.size(2))
        mel_outputs = _masked(mel_outputs, valid)
        mel_outputs_postnet = _masked(mel_outputs + self.postnet(mel_outputs, valid if batched else None), valid)
        gate_outputs = gate_outputs.masked_fill(~valid, 1e3)
        steps_valid = lengths_to_mask(decoder_steps(lengths, self.n_frames_per_step), alignments.size(1))
        alignments = alignments * steps_valid.unsqueeze(2).to(alignments.dtype)
        return Inference(mel_outputs, mel_outputs_postnet, gate_outputs, alignments, lengths)
