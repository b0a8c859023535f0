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


def recurrence(bases, memory, processed_memory, bias, *weights):
    # Training with dropout 0: the masks are ones, drawn as in training.
    return tuple(teacher_forced_recurrence(bases, memory, processed_memory, bias, RecurrenceWeights(*weights), 0.0,
                                           0.0, training=True))


def one_backward(per_step_bias: bool, seed: int):
    """The inputs, the padding, random output cotangents and the gradients of one backward pass against them."""
    bases, memory, processed_memory, bias, weights = inputs(per_step_bias=per_step_bias)
    tensors = (bases, memory, processed_memory, bias, *weights)
    outputs = recurrence(*tensors)
    generator = torch.Generator().manual_seed(seed)
    cotangents = [torch.randn(o.shape, generator=generator, dtype=o.dtype) for o in outputs]
    return tensors, torch.isinf(bias.detach()), cotangents, torch.autograd.grad(outputs, tensors, cotangents), generator


def numeric_derivative(tensors, directions, cotangents, eps=1e-6):
    """d/de <cotangents, recurrence(tensors + e * directions)> at e = 0, by central differences."""
    with torch.no_grad():
        plus = recurrence(*(x + eps * d for x, d in zip(tensors, directions, strict=True)))
        minus = recurrence(*(x - eps * d for x, d in zip(tensors, directions, strict=True)))
    return sum(((p - m) * c).sum() for p, m, c in zip(plus, minus, cotangents, strict=True)) / (2 * eps)


@pytest.mark.parametrize("per_step_bias", [False, True])
def test_backward_is_the_forward_passes_derivative(per_step_bias):
    """Directional derivatives by central differences against the gradients of one backward pass (the
    recurrence allows one backward per forward, so torch.autograd.gradcheck, which runs many, cannot be used)."""
    tensors, padding, cotangents, grads, generator = one_backward(per_step_bias, seed=1)
    assert torch.isfinite(grads[3]).all() and bool((grads[3][padding] == 0).all())
    for _ in range(8):
        # A random direction in every input at once (none on the padding's -inf).
        directions = [torch.randn(x.shape, generator=generator, dtype=x.dtype) for x in tensors]
        directions[3] = directions[3].masked_fill(padding, 0.0)
        analytic = sum((g * d).sum() for g, d in zip(grads, directions, strict=True))
        torch.testing.assert_close(analytic, numeric_derivative(tensors, directions, cotangents), rtol=1e-6,
                                   atol=1e-8)


def test_each_input_gets_its_own_gradient():
    # One input at a time, so that a gradient sent to the wrong input cannot cancel out in a sum.
    tensors, padding, cotangents, grads, generator = one_backward(per_step_bias=True, seed=2)
    for i, x in enumerate(tensors):
        directions = [torch.zeros_like(t) for t in tensors]
        directions[i] = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        if i == 3:
            directions[i] = directions[i].masked_fill(padding, 0.0)
        numeric = numeric_derivative(tensors, directions, cotangents)
        torch.testing.assert_close((grads[i] * directions[i]).sum(), numeric, rtol=1e-6, atol=1e-8, msg=f"input {i}")


def test_a_second_backward_is_refused_with_a_clear_error():
    outputs = recurrence(*(t for t in inputs()[:4]), *inputs()[4])
    loss = sum(o.sum() for o in outputs)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="decoder recurrence a second time"):
        loss.backward()


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
