"""The recurrence's written-out backward pass is the derivative of its forward pass (float64 finite differences)."""

from __future__ import annotations

import pytest
import torch

from tacotron2_lightning.decoder_recurrence import RecurrenceWeights, teacher_forced_recurrence


def inputs(steps=4, batch=2, text=5, e=3, a=4, d=5, q=3, kernel=3, per_step_bias=False):
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (0.5 * torch.randn(*shape, generator=generator, dtype=torch.double)).requires_grad_()

    bias = torch.zeros(steps, batch, text) if per_step_bias else torch.zeros(batch, text)
    bias[..., 1, text - 1] = float("-inf")  # the second utterance is one symbol shorter
    bias = (bias + 0.3 * torch.randn(bias.shape, generator=generator)).double().requires_grad_()
    weights = RecurrenceWeights(rand(4 * a, e + a), rand(4 * d, a + e + d), rand(4 * d), rand(q, a),
                                rand(q, 2, kernel), rand(1, q))
    return rand(steps, batch, 4 * a), rand(batch, text, e), rand(batch, text, q), bias, weights


@pytest.mark.parametrize("per_step_bias", [False, True])
def test_backward_is_the_forward_passes_derivative(per_step_bias):
    bases, memory, processed_memory, bias, weights = inputs(per_step_bias=per_step_bias)

    def run(bases, memory, processed_memory, bias, *weights):
        # Training with dropout 0: the masks are ones, drawn as in training.
        outputs = teacher_forced_recurrence(bases, memory, processed_memory, bias, RecurrenceWeights(*weights),
                                            0.0, 0.0, training=True)
        return tuple(outputs)

    # The -inf of the padding has no finite difference: check the bias's gradient where it is finite only,
    # by passing its finite part as the differentiable input.
    padding = torch.isinf(bias.detach())
    finite = bias.detach().masked_fill(padding, 0.0).requires_grad_()

    def with_padding(bases, memory, processed_memory, finite, *weights):
        return run(bases, memory, processed_memory, finite.masked_fill(padding, float("-inf")), *weights)

    assert torch.autograd.gradcheck(with_padding, (bases, memory, processed_memory, finite, *weights),
                                    eps=1e-6, atol=1e-6)


def test_the_padded_symbol_gets_no_attention():
    bases, memory, processed_memory, bias, weights = inputs()
    _, _, alignments = teacher_forced_recurrence(bases, memory, processed_memory, bias, weights, 0.0, 0.0, False)
    assert alignments.shape == (4, 2, 5)
    assert bool((alignments[:, 1, 4] == 0).all()) and bool((alignments[:, 0, 4] > 0).all())
    torch.testing.assert_close(alignments.sum(2), torch.ones(4, 2, dtype=torch.double))


def test_under_autocast_the_recurrence_runs_in_float32():
    bases, memory, processed_memory, bias, weights = (
        x.detach().float() if isinstance(x, torch.Tensor) else RecurrenceWeights(*(w.detach().float() for w in x))
        for x in inputs())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = teacher_forced_recurrence(bases.bfloat16(), memory, processed_memory, bias, weights, 0.0, 0.0,
                                            False)
    expected = teacher_forced_recurrence(bases, memory, processed_memory, bias, weights, 0.0, 0.0, False)
    for ours, theirs in zip(outputs, expected, strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, theirs, rtol=0.05, atol=0.05)
