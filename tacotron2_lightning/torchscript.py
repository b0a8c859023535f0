"""A TorchScript inference module for Tacotron2: text ids in, mel, gate logits and alignment out.

``torch.jit.script`` cannot compile :class:`~tacotron2_lightning.model.Tacotron2` itself (its decoder passes a
NamedTuple state and optional masks around, and the encoder packs sequences for batches), and tracing would
freeze the decoder loop at one length. This wrapper re-states NVIDIA's single-utterance inference with the
model's own submodules and weights, in the subset of Python that TorchScript compiles: the decoder loop
stops on the gate as in eager mode. One utterance at a time (no padding), as NVIDIA's ``inference``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tacotron2_lightning.model import Tacotron2


class Tacotron2Inference(nn.Module):
    """``forward(sequence (1, N) long, max_decoder_steps: int = 0)`` -> mel_postnet (1, C, T), gate logits
    (1, T), alignments (1, S, N); ``max_decoder_steps`` 0 uses the model's. The prenet's dropout stays on, as in
    NVIDIA's inference: seed torch for repeatable output.

    Example:
        >>> scripted = torch.jit.script(Tacotron2Inference(module.model.eval()))
        >>> mel, gate, alignments = scripted(torch.tensor([[12, 40, 33]]))
    """

    def __init__(self, model: Tacotron2):
        super().__init__()
        config = model.config
        decoder, attention = model.decoder, model.decoder.attention_layer
        self.embedding = model.embedding
        self.encoder_convolutions = model.encoder.convolutions
        self.encoder_lstm = model.encoder.lstm
        self.prenet_layers = decoder.prenet.layers
        self.prenet_dropout = float(decoder.prenet.dropout)
        self.attention_rnn = decoder.attention_rnn
        self.query_layer = attention.query_layer
        self.memory_layer = attention.memory_layer
        self.attention_v = attention.v
        self.location_conv = attention.location_layer.location_conv
        self.location_dense = attention.location_layer.location_dense
        self.decoder_rnn = decoder.decoder_rnn
        self.linear_projection = decoder.linear_projection
        self.gate_layer = decoder.gate_layer
        self.postnet_convolutions = model.postnet.convolutions
        self.n_mel_channels = int(config.n_mel_channels)
        self.n_frames_per_step = int(config.n_frames_per_step)
        self.max_decoder_steps = int(config.max_decoder_steps)
        self.gate_threshold = float(config.gate_threshold)
        self.attention_rnn_dim = int(config.attention_rnn_dim)
        self.decoder_rnn_dim = int(config.decoder_rnn_dim)
        self.encoder_embedding_dim = int(config.encoder_embedding_dim)
        self.eval()

    def _encode(self, sequence: Tensor) -> Tensor:
        x = self.embedding(sequence).transpose(1, 2)  # (1, E, N)
        for conv in self.encoder_convolutions:
            x = F.relu(conv(x))  # eval: the encoder's dropout is off
        outputs, _ = self.encoder_lstm(x.transpose(1, 2))  # one unpadded utterance: no packing needed
        return outputs  # (1, N, E)

    def _prenet(self, x: Tensor) -> Tensor:
        for linear in self.prenet_layers:
            x = F.dropout(F.relu(linear(x)), p=self.prenet_dropout, training=self.prenet_dropout > 0.0)
        return x

    def forward(self, sequence: Tensor, max_decoder_steps: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            return self._decode(sequence, max_decoder_steps)

    def _decode(self, sequence: Tensor, max_decoder_steps: int) -> tuple[Tensor, Tensor, Tensor]:
        memory = self._encode(sequence)
        batch, length = memory.size(0), memory.size(1)
        processed_memory = self.memory_layer(memory)
        attention_hidden = memory.new_zeros(batch, self.attention_rnn_dim)
        attention_cell = memory.new_zeros(batch, self.attention_rnn_dim)
        decoder_hidden = memory.new_zeros(batch, self.decoder_rnn_dim)
        decoder_cell = memory.new_zeros(batch, self.decoder_rnn_dim)
        weights = memory.new_zeros(batch, length)
        weights_cum = memory.new_zeros(batch, length)
        context = memory.new_zeros(batch, self.encoder_embedding_dim)
        frame = memory.new_zeros(batch, self.n_mel_channels * self.n_frames_per_step)
        cap = max_decoder_steps if max_decoder_steps > 0 else self.max_decoder_steps
        frames: list[Tensor] = []
        gates: list[Tensor] = []
        alignments: list[Tensor] = []
        for _ in range(cap):
            cell_input = torch.cat((self._prenet(frame), context), -1)
            attention_hidden, attention_cell = self.attention_rnn(cell_input, (attention_hidden, attention_cell))
            location = self.location_dense(self.location_conv(torch.stack((weights, weights_cum), 1)).transpose(1, 2))
            energies = self.attention_v(torch.tanh(self.query_layer(attention_hidden).unsqueeze(1) + location
                                                   + processed_memory)).squeeze(-1)
            weights = F.softmax(energies, dim=1)
            context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
            weights_cum = weights_cum + weights
            decoder_hidden, decoder_cell = self.decoder_rnn(torch.cat((attention_hidden, context), -1),
                                                            (decoder_hidden, decoder_cell))
            hidden_and_context = torch.cat((decoder_hidden, context), 1)
            frame = self.linear_projection(hidden_and_context)
            gate = self.gate_layer(hidden_and_context)
            frames.append(frame)
            gates.append(gate.squeeze(1))
            alignments.append(weights)
            if bool((torch.sigmoid(gate) > self.gate_threshold).all()):
                break
        stacked = torch.stack(frames, 1)  # (1, S, C*r)
        mel = stacked.reshape(batch, -1, self.n_mel_channels).transpose(1, 2)  # (1, C, S*r)
        residual: Tensor | None = None
        x = mel
        for index, conv in enumerate(self.postnet_convolutions):
            x = conv(x)
            if index < len(self.postnet_convolutions) - 1:
                x = torch.tanh(x)
            residual = x
        mel_postnet = mel + residual if residual is not None else mel
        gate_outputs = torch.stack(gates, 1).repeat_interleave(self.n_frames_per_step, dim=1)
        return mel_postnet, gate_outputs, torch.stack(alignments, 1)


def script(model: Tacotron2) -> torch.jit.ScriptModule:
    """Compiles :class:`Tacotron2Inference` of ``model`` (in eval mode) with ``torch.jit.script``."""
    return torch.jit.script(Tacotron2Inference(model.eval()))
