"""The teacher-forced decoder recurrence as one autograd node, with its backward pass written out (BPTT).

Each decoder step of Tacotron2 is a few dozen small operators on batch-sized tensors: two LSTM cells,
location-sensitive attention, two dropouts. Left to autograd, every one of them records a graph node and saves
its inputs, and every weight receives a full-size gradient at every step: at the small model's sizes that
bookkeeping costs more than the arithmetic. Here the whole loop over steps is one ``autograd.Function``:

* the forward pass writes each step's values into preallocated (steps, ...) buffers, which are both what the
  backward pass needs and the inputs of the weight gradients;
* the backward pass runs the recurrence in reverse computing only what flows from step to step (gradients of
  the hidden states, cells, context and attention weights);
* every weight's gradient is then one large GEMM (or one convolution weight-gradient) over all steps at once,
  as cuDNN's sequence LSTM computes it.

The maths is NVIDIA's ``Decoder.decode`` step for step (:mod:`tacotron2_lightning.reference_decoder` keeps that
loop, and the tests hold this node to it); two rewritings are exact in real arithmetic and differ only in
rounding: the location convolution and its dense projection are one convolution with the composed weight (no
nonlinearity lies between them), and the padding mask and the alignment prior are one additive energy bias.
Dropout masks are drawn by ``F.dropout`` per step in the loop's order, so one seed gives the loop's masks.

Shapes: S decoder steps, B batch, N text length, E encoder width, A attention-LSTM width, D decoder-LSTM
width, Q attention width (``attention_dim``), K location kernel size.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F


class RecurrenceWeights(NamedTuple):
    """The decoder's weights as the recurrence multiplies them (each built from the parameters by the caller,
    so autograd carries their gradients back to the parameters)."""

    attention_lstm: Tensor  # (4A, E + A): attention LSTM's input weights for [previous context | previous hidden]
    decoder_lstm: Tensor  # (4D, A + E + D): decoder LSTM's weights for [attention hidden | context | hidden]
    decoder_bias: Tensor  # (4D,): bias_ih + bias_hh
    query: Tensor  # (Q, A)
    location: Tensor  # (Q, 2, K): the location convolution composed with its dense projection
    energy: Tensor  # (1, Q): ``v``


class RecurrenceOutputs(NamedTuple):
    hiddens: Tensor  # (S, B, D) decoder LSTM hidden states after dropout
    contexts: Tensor  # (S, B, E) attention contexts
    alignments: Tensor  # (S, B, N) attention weights


def teacher_forced_recurrence(attention_bases: Tensor, memory: Tensor, processed_memory: Tensor,
                              energy_bias: Tensor, weights: RecurrenceWeights, p_attention_dropout: float,
                              p_decoder_dropout: float, training: bool) -> RecurrenceOutputs:
    """Run NVIDIA's decoder steps under teacher forcing.

    attention_bases (S, B, 4A): what each step's attention LSTM gets from its prenet frame plus both biases;
    memory (B, N, E); processed_memory (B, N, Q); energy_bias (B, N) or (S, B, N): added to the attention
    energies (-inf on padding, plus a weighted log prior when one is used). Dropout follows ``training`` at
    the given rates, as ``F.dropout`` does.

    Under autocast the recurrence runs in float32 (its GEMMs are batch-sized and its sums run over hundreds of
    steps); the caller's projections around it still autocast.
    """
    device_type = memory.device.type
    autocast = torch.is_autocast_enabled(device_type)
    tensors = (attention_bases, memory, processed_memory.transpose(1, 2).contiguous(), energy_bias, *weights)
    if autocast:
        tensors = tuple(t.float() for t in tensors)
    with torch.autocast(device_type, enabled=False) if autocast else contextlib.nullcontext():
        hiddens, contexts, alignments = _Recurrence.apply(
            (p_attention_dropout, p_decoder_dropout, training), *tensors)
    return RecurrenceOutputs(hiddens, contexts, alignments)


class _Forward(NamedTuple):
    """What the forward pass keeps for the backward pass (row 0 of each (S + 1)-row buffer: the initial state)."""

    attention_inputs: Tensor  # (S + 1, B, E + A): [context_{t-1} | attention hidden_{t-1}] at row t
    decoder_inputs: Tensor  # (S + 1, B, A + E + D): [attention hidden_t | context_t | decoder hidden_{t-1}]
    attention_gates: Tensor  # (S, B, 4A) activated gates (input, forget, cell, output)
    decoder_gates: Tensor  # (S, B, 4D)
    attention_cells: Tensor  # (S + 1, B, A)
    decoder_cells: Tensor  # (S + 1, B, D)
    attention_cells_tanh: Tensor  # (S, B, A)
    decoder_cells_tanh: Tensor  # (S, B, D)
    attention_masks: list[Tensor] | None  # S (B, A) scaled dropout masks, None when dropout is off
    decoder_masks: list[Tensor] | None  # S (B, D)
    location_inputs: Tensor  # (S + 1, B, 2, N): [weights_{t-1}, cumulative weights_{t-1}] at row t
    energy_tanh: Tensor  # (S, B, Q, N)


def _steps(buffer: Tensor, start: int = 0, stop: int | None = None) -> tuple[Tensor, ...]:
    """Per-step views of ``buffer[..., start:stop]``, made once before a loop (a view per step costs a dispatch)."""
    return buffer[..., start:stop].unbind(0)


class _LstmSteps:
    """Per-step views of an LSTM's buffers: activated gates (and their four chunks), cells, tanh of cells."""

    def __init__(self, gates: Tensor, cells: Tensor, cells_tanh: Tensor):
        hidden = cells.size(2)
        self.hidden = hidden
        self.gates = gates.unbind(0)
        self.chunks = [chunk.unbind(0) for chunk in gates.split(hidden, dim=2)]  # input, forget, cell, output
        self.cells = cells.unbind(0)
        self.cells_tanh = cells_tanh.unbind(0)

    def forward(self, t: int, pre_activations: Tensor, hidden_out: Tensor) -> None:
        """nn.LSTMCell's step t after its GEMM: writes the activated gates, the new cell and its tanh into the
        buffers and the new hidden state into ``hidden_out``."""
        h = self.hidden
        in_gate, forget_gate, cell_gate, out_gate = (chunk[t] for chunk in self.chunks)
        torch.sigmoid(pre_activations, out=self.gates[t])
        torch.tanh(pre_activations[:, 2 * h:3 * h], out=cell_gate)
        cell = torch.mul(forget_gate, self.cells[t], out=self.cells[t + 1])
        cell.addcmul_(in_gate, cell_gate)
        torch.mul(out_gate, torch.tanh(cell, out=self.cells_tanh[t]), out=hidden_out)

    def backward(self, t: int, grad_hidden: Tensor, grad_cell: Tensor, grad_gates: Tensor) -> Tensor:
        """Writes d(gate pre-activations) (B, 4H) of step t into ``grad_gates`` and returns the gradient of the
        previous cell; ``grad_cell`` is the gradient reaching this step's cell from later steps."""
        h = self.hidden
        in_gate, forget_gate, cell_gate, out_gate = (chunk[t] for chunk in self.chunks)
        cell_tanh = self.cells_tanh[t]
        through_hidden = grad_hidden * out_gate
        grad_cell = grad_cell + through_hidden
        grad_cell.addcmul_(through_hidden * cell_tanh, cell_tanh, value=-1)  # tanh' = 1 - tanh^2
        torch.mul(grad_cell, cell_gate, out=grad_gates[:, :h])
        torch.mul(grad_cell, self.cells[t], out=grad_gates[:, h:2 * h])
        torch.mul(grad_cell, in_gate, out=grad_gates[:, 2 * h:3 * h])
        torch.mul(grad_hidden, cell_tanh, out=grad_gates[:, 3 * h:])
        activated = self.gates[t]
        slopes = torch.addcmul(activated, activated, activated, value=-1)  # sigmoid' = s (1 - s)
        # The cell gate is a tanh: its slope is 1 - g^2, where the line above gave g - g^2.
        slopes[:, 2 * h:3 * h].sub_(cell_gate).add_(1.0)
        grad_gates.mul_(slopes)
        return grad_cell * forget_gate


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dropout, attention_bases, memory, memory_t, energy_bias, attention_lstm, decoder_lstm,
                decoder_bias, query, location, energy):
        p_attention, p_decoder, training = dropout
        n_steps, batch, _ = attention_bases.shape
        a, d = attention_lstm.size(0) // 4, decoder_lstm.size(0) // 4
        n_text, e = memory.shape[1:]
        padding = (location.size(2) - 1) // 2
        new, zeros = attention_bases.new_empty, attention_bases.new_zeros
        saved = _Forward(
            zeros(n_steps + 1, batch, e + a), zeros(n_steps + 1, batch, a + e + d),
            new(n_steps, batch, 4 * a), new(n_steps, batch, 4 * d), zeros(n_steps + 1, batch, a),
            zeros(n_steps + 1, batch, d), new(n_steps, batch, a), new(n_steps, batch, d),
            [] if training else None, [] if training else None,
            zeros(n_steps + 1, batch, 2, n_text), new(n_steps, batch, query.size(0), n_text),
        )
        attention_steps = _LstmSteps(saved.attention_gates, saved.attention_cells, saved.attention_cells_tanh)
        decoder_steps = _LstmSteps(saved.decoder_gates, saved.decoder_cells, saved.decoder_cells_tanh)
        bases = attention_bases.unbind(0)
        attention_inputs = saved.attention_inputs.unbind(0)
        next_contexts, next_attention_hiddens = _steps(saved.attention_inputs, 0, e), _steps(saved.attention_inputs, e)
        decoder_inputs = saved.decoder_inputs.unbind(0)
        attention_hiddens = _steps(saved.decoder_inputs, 0, a)
        contexts = _steps(saved.decoder_inputs, a, a + e)
        decoder_hiddens = _steps(saved.decoder_inputs, a + e)
        location_inputs = saved.location_inputs.unbind(0)
        alignments = saved.location_inputs[:, :, 0].unbind(0)
        cumulative = saved.location_inputs[:, :, 1].unbind(0)
        energy_tanh = saved.energy_tanh.unbind(0)
        step_bias = energy_bias.unbind(0) if energy_bias.dim() == 3 else [energy_bias] * n_steps
        ones_attention, ones_decoder = attention_bases.new_ones(batch, a), attention_bases.new_ones(batch, d)
        attention_lstm_t, decoder_lstm_t, query_t = attention_lstm.t(), decoder_lstm.t(), query.t()
        energy_column = energy.t()  # (Q, 1)
        for t in range(n_steps):
            attention_hidden = attention_hiddens[t]
            attention_steps.forward(t, torch.addmm(bases[t], attention_inputs[t], attention_lstm_t), attention_hidden)
            # F.dropout on ones draws the loop's mask (same shape, same order): the mask, scaled.
            mask = F.dropout(ones_attention, p_attention, training)
            if training:
                saved.attention_masks.append(mask)
                attention_hidden.mul_(mask)
            next_attention_hiddens[t + 1].copy_(attention_hidden)

            # Location-sensitive attention, in (B, Q, N) layout.
            tanh = torch.add(F.conv1d(location_inputs[t], location, padding=padding), memory_t, out=energy_tanh[t])
            tanh.add_(torch.mm(attention_hidden, query_t).unsqueeze(2)).tanh_()
            energies = torch.matmul(tanh.transpose(1, 2), energy_column).squeeze(2).add_(step_bias[t])
            weights = torch.softmax(energies, dim=1)
            alignments[t + 1].copy_(weights)
            torch.add(cumulative[t], weights, out=cumulative[t + 1])
            context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
            contexts[t].copy_(context)
            next_contexts[t + 1].copy_(context)

            decoder_hidden = decoder_hiddens[t + 1]
            decoder_steps.forward(t, torch.addmm(decoder_bias, decoder_inputs[t], decoder_lstm_t), decoder_hidden)
            mask = F.dropout(ones_decoder, p_decoder, training)
            if training:
                saved.decoder_masks.append(mask)
                decoder_hidden.mul_(mask)

        ctx.saved = saved
        ctx.energy_bias_dim = energy_bias.dim()
        ctx.save_for_backward(memory, attention_lstm, decoder_lstm, query, location, energy)
        return (saved.decoder_inputs[1:, :, a + e:].clone(), saved.decoder_inputs[:n_steps, :, a:a + e].clone(),
                saved.location_inputs[1:, :, 0].clone())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_hiddens, grad_contexts, grad_alignments):
        if ctx.saved is None:
            raise RuntimeError(
                "Trying to backward through Tacotron2's decoder recurrence a second time: its backward pass reuses "
                "the buffers of its forward pass, so each forward allows one backward (as with retain_graph=False). "
                "Run the forward pass again.")
        saved, ctx.saved = ctx.saved, None  # also frees the buffers as soon as the backward pass ends
        with torch.autocast(ctx.saved_tensors[0].device.type, enabled=False):
            return (None, *_backward(saved, ctx.energy_bias_dim, ctx.needs_input_grad, *ctx.saved_tensors,
                                     grad_hiddens, grad_contexts, grad_alignments))


def _backward(saved: _Forward, energy_bias_dim, needs_input_grad, memory, attention_lstm, decoder_lstm, query,
              location, energy, grad_hiddens, grad_contexts, grad_alignments):
    """The recurrence in reverse (gradients that flow between steps), then each weight's gradient in one GEMM."""
    n_steps, batch, four_a = saved.attention_gates.shape
    a, d = four_a // 4, decoder_lstm.size(0) // 4
    n_text, e = memory.shape[1:]
    q = query.size(0)
    padding = (location.size(2) - 1) // 2
    zeros, new = memory.new_zeros, memory.new_empty
    grad_hiddens = (zeros(n_steps, batch, d) if grad_hiddens is None else grad_hiddens).unbind(0)
    grad_contexts = (zeros(n_steps, batch, e) if grad_contexts is None else grad_contexts).unbind(0)
    grad_alignments = (zeros(n_steps, batch, n_text) if grad_alignments is None else grad_alignments).unbind(0)

    attention_gate_grads, decoder_gate_grads = new(n_steps, batch, 4 * a), new(n_steps, batch, 4 * d)
    context_grads = new(n_steps, batch, e)
    energy_grads = new(n_steps, batch, n_text)  # d energies, also the energy bias's gradient
    query_grads = new(n_steps, batch, q)
    energy_weight_grads = new(n_steps, batch, q)  # each step's part of v's gradient
    # Step t's tanh is read for the last time where its pre-tanh gradient is computed, which then takes its place:
    # the backward pass needs no second (S, B, Q, N) buffer.
    energy_pre_grads = saved.energy_tanh
    memory_t_grad = zeros(batch, q, n_text)
    energy_column = energy.view(1, q, 1)
    attention_steps = _LstmSteps(saved.attention_gates, saved.attention_cells, saved.attention_cells_tanh)
    decoder_steps = _LstmSteps(saved.decoder_gates, saved.decoder_cells, saved.decoder_cells_tanh)
    step_views = [x.unbind(0) for x in (attention_gate_grads, decoder_gate_grads, context_grads, energy_grads,
                                        query_grads, energy_weight_grads, saved.energy_tanh)]
    alignments = saved.location_inputs[1:, :, 0].unbind(0)

    # Gradients flowing back into step t from step t + 1.
    decoder_hidden_grad, decoder_cell_grad = zeros(batch, d), zeros(batch, d)
    attention_hidden_grad, attention_cell_grad = zeros(batch, a), zeros(batch, a)
    context_grad, weights_grad, cumulative_grad = zeros(batch, e), zeros(batch, n_text), zeros(batch, n_text)
    for t in reversed(range(n_steps)):
        attention_gate_grad, decoder_gate_grad, context_grad_t, energy_grad, query_grad, energy_weight_grad, tanh = (
            views[t] for views in step_views)
        grad_hidden = grad_hiddens[t] + decoder_hidden_grad
        if saved.decoder_masks is not None:
            grad_hidden.mul_(saved.decoder_masks[t])
        decoder_cell_grad = decoder_steps.backward(t, grad_hidden, decoder_cell_grad, decoder_gate_grad)
        decoder_input_grad = torch.mm(decoder_gate_grad, decoder_lstm)  # (B, A + E + D)
        decoder_hidden_grad = decoder_input_grad[:, a + e:]

        context_grad = torch.add(grad_contexts[t], context_grad, out=context_grad_t)
        context_grad.add_(decoder_input_grad[:, a:a + e])
        # w_t reaches the loss as an output, through the context, and as step t + 1's location input, both as
        # itself and inside the cumulative weights (whose gradient is carried in cumulative_grad).
        weights_grad = torch.baddbmm((grad_alignments[t] + weights_grad + cumulative_grad).unsqueeze(2), memory,
                                     context_grad.unsqueeze(2)).squeeze(2)
        weights = alignments[t]
        torch.mul(weights, weights_grad - (weights_grad * weights).sum(1, keepdim=True), out=energy_grad)
        # Through v (its gradient: the energies' gradient against tanh) and tanh: d pre-tanh = v dE (1 - tanh^2).
        torch.bmm(tanh, energy_grad.unsqueeze(2), out=energy_weight_grad.unsqueeze(2))
        pre_grad = torch.ops.aten.tanh_backward.grad_input(torch.mul(energy_column, energy_grad.unsqueeze(1)), tanh,
                                                           grad_input=tanh)
        memory_t_grad.add_(pre_grad)
        torch.sum(pre_grad, dim=2, out=query_grad)
        location_grad = F.conv_transpose1d(pre_grad, location, padding=padding)  # (B, 2, N)
        weights_grad = location_grad[:, 0]
        cumulative_grad = cumulative_grad + location_grad[:, 1]

        grad_hidden = torch.addmm(decoder_input_grad[:, :a], query_grad, query).add_(attention_hidden_grad)
        if saved.attention_masks is not None:
            grad_hidden.mul_(saved.attention_masks[t])
        attention_cell_grad = attention_steps.backward(t, grad_hidden, attention_cell_grad, attention_gate_grad)
        attention_input_grad = torch.mm(attention_gate_grad, attention_lstm)  # (B, E + A)
        context_grad, attention_hidden_grad = attention_input_grad[:, :e], attention_input_grad[:, e:]

    def flat(x: Tensor) -> Tensor:
        return x.reshape(-1, x.size(-1))

    (_, _, need_memory, need_memory_t, need_bias, need_attention_lstm, need_decoder_lstm, need_decoder_bias,
     need_query, need_location, need_energy) = needs_input_grad
    grads = [attention_gate_grads, None, None, None, None, None, None, None, None, None]
    if need_memory:  # context_t = weights_t @ memory
        grads[1] = torch.bmm(saved.location_inputs[1:, :, 0].permute(1, 2, 0), context_grads.transpose(0, 1))
    if need_memory_t:
        grads[2] = memory_t_grad
    if need_bias:
        grads[3] = energy_grads if energy_bias_dim == 3 else energy_grads.sum(0)
    if need_attention_lstm:
        grads[4] = flat(attention_gate_grads).t() @ flat(saved.attention_inputs[:n_steps])
    if need_decoder_lstm:
        grads[5] = flat(decoder_gate_grads).t() @ flat(saved.decoder_inputs[:n_steps])
    if need_decoder_bias:
        grads[6] = flat(decoder_gate_grads).sum(0)
    if need_query:
        grads[7] = flat(query_grads).t() @ flat(saved.decoder_inputs[:n_steps, :, :a])
    if need_location:
        grads[8] = torch.nn.grad.conv1d_weight(
            saved.location_inputs[:n_steps].reshape(n_steps * batch, 2, n_text), location.shape,
            energy_pre_grads.view(n_steps * batch, q, n_text), padding=padding)
    if need_energy:
        grads[9] = energy_weight_grads.sum((0, 1)).unsqueeze(0)
    return grads
