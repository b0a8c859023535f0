"""Linear maps inside a recurrence whose weight gradients are computed once, for all steps together.

Autograd differentiates ``y_t = x_t @ W.T`` at each step of a recurrence into a full-size weight gradient
``g_t.T @ x_t`` and adds it into the running sum. At small batch that is a memory-bound rank-B update: every step
writes the whole gradient matrix and reads and writes the sum (for Tacotron2's two decoder LSTMCells, ~71 MB of
fp32 weights, several times per step). Only the input gradient ``g_t @ W`` is needed step by step, because the
recurrence runs backward through it; the weight gradient ``sum_t g_t.T @ x_t = G.T @ X`` is one GEMM over the
stacked steps once every ``g_t`` is known, as cuDNN's sequence LSTM computes it.

:class:`DeferredLinear` keeps each step's inputs, collects each step's output gradient during backward, and
hands the weights their gradients in one GEMM per weight after the last (in backward order) step.

Example:
    >>> w = torch.randn(8, 3, requires_grad=True)
    >>> steps = DeferredLinear([w], n_steps=2, dtype=w.dtype)
    >>> token = steps.token()
    >>> x = torch.randn(4, 3)
    >>> y = steps(token, 0, torch.zeros(4, 8), x)
    >>> y = steps(token, 1, y, x)  # y_1 = y_0 + x @ w.T
    >>> y.sum().backward()
    >>> w.grad.shape
    torch.Size([8, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class DeferredLinear:
    """``base + sum_i inputs[i] @ weights[i].T`` at each of ``n_steps`` steps, weight gradients deferred.

    ``weights`` are parameters or views of them (a slice of an LSTM's ``weight_ih``), (out, in_i) each; the
    steps compute in ``dtype`` (bfloat16 under autocast). Call :meth:`token` once before the loop and pass the
    token to every step: it ties the steps to the node that computes the weight gradients, which autograd runs
    only after every step's backward.
    """

    def __init__(self, weights: Sequence[Tensor], n_steps: int, dtype: torch.dtype):
        self.weights = list(weights)
        self.compute_weights = [w.detach().to(dtype) for w in self.weights]
        self.n_steps = n_steps
        self.dtype = dtype
        self.track = torch.is_grad_enabled() and any(w.requires_grad for w in self.weights)
        self.inputs: list[Tensor | None] = [None] * len(self.weights)  # (S, B, in_i) each
        self.grads: Tensor | None = None  # (S, B, out)

    def token(self) -> Tensor:
        """An empty tensor whose gradient node gives the weights their gradients (for all steps at once)."""
        return _WeightGradients.apply(self, *self.weights)

    def __call__(self, token: Tensor, step: int, base: Tensor, *inputs: Tensor) -> Tensor:
        """base (B, out) or (out,), inputs (B, in_i) -> (B, out) for decoder step ``step``."""
        if len(inputs) != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} inputs (one per weight), got {len(inputs)}")
        return _Step.apply(self, step, base.to(self.dtype), token, *(x.to(self.dtype) for x in inputs))

    def _keep(self, step: int, inputs: Sequence[Tensor]) -> None:
        if not self.track:
            return
        for i, x in enumerate(inputs):
            if self.inputs[i] is None:
                self.inputs[i] = x.new_empty((self.n_steps, *x.shape))
            self.inputs[i][step].copy_(x)

    def _keep_grad(self, step: int, grad: Tensor) -> None:
        if self.grads is None:
            # Zeros: a step whose output no loss depends on gets no backward call, and contributes nothing.
            self.grads = grad.new_zeros((self.n_steps, *grad.shape))
        self.grads[step].copy_(grad)


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, linear: DeferredLinear, step: int, base: Tensor, token: Tensor, *inputs: Tensor) -> Tensor:
        out = torch.addmm(base, inputs[0], linear.compute_weights[0].t())
        for x, w in zip(inputs[1:], linear.compute_weights[1:], strict=True):
            out.addmm_(x, w.t())
        linear._keep(step, inputs)
        ctx.linear, ctx.step, ctx.base_shape = linear, step, base.shape
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        linear = ctx.linear
        linear._keep_grad(ctx.step, grad)
        grad_base = grad.sum_to_size(ctx.base_shape) if ctx.needs_input_grad[2] else None
        grad_inputs = [grad @ w if needed else None
                       for w, needed in zip(linear.compute_weights, ctx.needs_input_grad[4:], strict=True)]
        return None, None, grad_base, None, *grad_inputs


class _WeightGradients(torch.autograd.Function):
    @staticmethod
    def forward(ctx, linear: DeferredLinear, *weights: Tensor) -> Tensor:
        ctx.linear = linear
        ctx.set_materialize_grads(False)
        return weights[0].new_empty(0)

    @staticmethod
    def backward(ctx, _unused: Tensor | None):
        linear = ctx.linear
        grads: list[Tensor | None] = [None] * len(linear.weights)
        if linear.grads is not None:
            out_grads = linear.grads.reshape(-1, linear.grads.size(-1))  # (S*B, out)
            for i, (inputs, weight) in enumerate(zip(linear.inputs, linear.weights, strict=True)):
                if ctx.needs_input_grad[1 + i]:
                    grads[i] = (out_grads.t() @ inputs.reshape(-1, inputs.size(-1))).to(weight.dtype)
        return None, *grads
