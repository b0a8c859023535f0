"""One free-running decoder step with NVIDIA's maths in fewer, larger operators: the synthesis loop's body.

Free-running synthesis cannot batch over steps (each step's input is the previous step's output), so at batch
1 a step is dozens of operators on vectors, and their dispatch costs more than their arithmetic.
:meth:`Decoder.decode_step <tacotron2_lightning.model.Decoder.decode_step>` states the step as NVIDIA does;
this computes the same values with the work arranged for few operators:

* the recurrent state lives in one buffer ``[attention hidden | context | decoder hidden]``, laid out so that
  each GEMM reads a contiguous slice of it: no concatenation per step (the weights' columns are permuted once,
  when the step is built, to match);
* both LSTMs' biases are summed once, and the frame projection and the gate are one GEMM;
* the location convolution and its dense projection are one convolution with the composed weight, and the
  padding mask (and the inference window, when on) is an additive bias on the energies;
* the LSTM cells' nonlinearities run in place on their gate buffers.

Dropout after each LSTM follows the module's ``training`` flag, as in ``decode_step``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

if TYPE_CHECKING:
    from tacotron2_lightning.model import Decoder


class InferenceState(NamedTuple):
    """The recurrent state of the utterances still decoding (their rows only)."""

    hiddens: Tensor  # (B, A + E + D): [attention hidden | context | decoder hidden]
    attention_cell: Tensor  # (B, A)
    decoder_cell: Tensor  # (B, D)
    location: Tensor  # (B, 2, N): [attention weights, cumulative attention weights]

    def select(self, rows: Tensor) -> InferenceState:
        return InferenceState(*(t[rows] for t in self))


class InferenceStep:
    """The decoder's weights arranged for the step, and the step itself (call it under ``torch.no_grad``).

    Example:
        >>> from tacotron2_lightning.config import Tacotron2Config
        >>> from tacotron2_lightning.model import Tacotron2
        >>> decoder = Tacotron2(Tacotron2Config(symbols_embedding_dim=32, encoder_embedding_dim=32)).decoder
        >>> memory = torch.randn(1, 7, 32)
        >>> step = InferenceStep(decoder, memory)
        >>> with torch.no_grad():
        ...     frame, gate, weights, state = step(decoder.prenet(memory.new_zeros(1, 80)), step.initial_state(), None)
        >>> frame.shape, gate.shape
        (torch.Size([1, 80]), torch.Size([1]))
    """

    def __init__(self, decoder: Decoder, memory: Tensor):
        attention_rnn, decoder_rnn, attention = decoder.attention_rnn, decoder.decoder_rnn, decoder.attention_layer
        a, e, d = decoder.attention_rnn_dim, decoder.encoder_embedding_dim, decoder.decoder_rnn_dim
        self.dims = (a, e, d)
        self.decoder = decoder
        prenet_dim = attention_rnn.weight_ih.size(1) - e
        w_prenet, w_context = attention_rnn.weight_ih.split([prenet_dim, e], dim=1)
        # Attention LSTM: the prenet frame, then [attention hidden | context] (the buffer's first A + E columns).
        self.attention_prenet_t = w_prenet.t()
        self.attention_state_t = torch.cat((attention_rnn.weight_hh, w_context), dim=1).t()
        self.attention_bias = attention_rnn.bias_ih + attention_rnn.bias_hh
        # Decoder LSTM: [attention hidden | context | decoder hidden], the whole buffer, in its weight_ih order.
        self.decoder_t = torch.cat((decoder_rnn.weight_ih, decoder_rnn.weight_hh), dim=1).t()
        self.decoder_bias = decoder_rnn.bias_ih + decoder_rnn.bias_hh
        # Frame and gate from [context | decoder hidden] (NVIDIA concatenates [decoder hidden | context]).
        projection, gate = decoder.linear_projection.linear_layer, decoder.gate_layer.linear_layer
        w_out = torch.cat((projection.weight, gate.weight))
        self.output_t = torch.cat((w_out[:, d:], w_out[:, :d]), dim=1).t()
        self.output_bias = torch.cat((projection.bias, gate.bias))
        self.query_t = attention.query_layer.linear_layer.weight.t()
        self.location = attention.location_layer.composed_weight()  # (Q, 2, K)
        self.padding = (self.location.size(2) - 1) // 2
        self.energy = attention.v.linear_layer.weight  # (1, Q)
        self.memory = memory
        self.memory_t = attention.memory_layer(memory).transpose(1, 2).contiguous()  # (B, Q, N)

    def initial_state(self) -> InferenceState:
        a, e, d = self.dims
        batch, n_text, _ = self.memory.shape
        zeros = self.memory.new_zeros
        return InferenceState(zeros(batch, a + e + d), zeros(batch, a), zeros(batch, d), zeros(batch, 2, n_text))

    def select(self, rows: Tensor) -> None:
        """Keep only these batch rows of the memory (the utterances still decoding)."""
        self.memory, self.memory_t = self.memory[rows], self.memory_t[rows]

    def __call__(self, prenet_frame: Tensor, state: InferenceState,
                 energy_bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor, InferenceState]:
        """prenet_frame (B, prenet_dim), ``energy_bias`` (B, N) added to the energies (-inf on padding or
        outside the window) -> frame (B, C*r), gate logit (B,), attention weights (B, N), and the new state
        (written into the old one's buffers)."""
        a, e, _ = self.dims
        decoder = self.decoder
        hiddens, attention_cell, decoder_cell, location = state
        gates = torch.addmm(self.attention_bias, prenet_frame, self.attention_prenet_t)
        gates.addmm_(hiddens[:, :a + e], self.attention_state_t)
        _lstm_cell(gates, attention_cell, hiddens[:, :a])
        if decoder.training:
            hiddens[:, :a] = F.dropout(hiddens[:, :a], decoder.p_attention_dropout, True)

        energies = F.conv1d(location, self.location, padding=self.padding).add_(self.memory_t)
        energies.add_(torch.mm(hiddens[:, :a], self.query_t).unsqueeze(2)).tanh_()
        energies = torch.matmul(self.energy, energies).squeeze(1)  # (B, N)
        if energy_bias is not None:
            energies.add_(energy_bias)
        weights = torch.softmax(energies, dim=1)
        hiddens[:, a:a + e] = torch.bmm(weights.unsqueeze(1), self.memory).squeeze(1)
        location[:, 0] = weights
        location[:, 1].add_(weights)

        gates = torch.addmm(self.decoder_bias, hiddens, self.decoder_t)
        _lstm_cell(gates, decoder_cell, hiddens[:, a + e:])
        if decoder.training:
            hiddens[:, a + e:] = F.dropout(hiddens[:, a + e:], decoder.p_decoder_dropout, True)
        output = torch.addmm(self.output_bias, hiddens[:, a:], self.output_t)
        return output[:, :-1], output[:, -1], weights, state


def _lstm_cell(gates: Tensor, cell: Tensor, hidden_out: Tensor) -> None:
    """nn.LSTMCell after its GEMMs, in place: gates (B, 4H) pre-activations in PyTorch's (input, forget, cell,
    output) order; updates ``cell`` (B, H) and writes the new hidden state into ``hidden_out``."""
    h = cell.size(1)
    cell_gate = torch.tanh(gates[:, 2 * h:3 * h])
    gates.sigmoid_()
    cell.mul_(gates[:, h:2 * h]).addcmul_(gates[:, :h], cell_gate)
    torch.mul(gates[:, 3 * h:], torch.tanh(cell), out=hidden_out)
