"""The training decoder computes NVIDIA's per-step loop (``ReferenceDecoder``) faster, with the same maths."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tacotron2_lightning.alignment_prior import AttentionPrior
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.model import Tacotron2
from tacotron2_lightning.reference_decoder import ReferenceTacotron2
from tests.helpers.batches import synthetic_batch, tiny_config


def twins(**overrides) -> tuple[Tacotron2, ReferenceTacotron2]:
    torch.manual_seed(0)
    model = Tacotron2(tiny_config(**overrides))
    reference = ReferenceTacotron2(model.config)
    reference.load_state_dict(model.state_dict(), strict=True)
    return model, reference


def step(model: Tacotron2, batch, seed: int = 1, attention_prior=None):
    """Outputs and parameter gradients of one training step's loss (alignments included, so they get gradients)."""
    text, text_lengths, mel, gate, mel_lengths = batch
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    outputs = model(text, text_lengths, mel, mel_lengths, attention_prior)
    loss = tacotron2_loss(*outputs[:3], mel, gate).total + outputs[3].square().mean()
    loss.backward()
    return outputs, {name: p.grad for name, p in model.named_parameters()}


def assert_same_step(model, reference, batch, attention_prior=None) -> None:
    outputs, grads = step(model, batch, attention_prior=attention_prior)
    expected_outputs, expected_grads = step(reference, batch, attention_prior=attention_prior)
    for name, ours, theirs in zip(("mel", "mel_postnet", "gate", "alignments"), outputs, expected_outputs,
                                  strict=True):
        scale = float(theirs.detach().abs().max())
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale, msg=name)
    assert grads.keys() == expected_grads.keys()
    # 1e-4 relative to each gradient's scale. The conv biases right before a BatchNorm in train() have an exact
    # gradient of zero: theirs is float32 rounding noise (~1e-7), held to a hundredth of the largest gradient.
    largest = max(float(g.abs().max()) for g in expected_grads.values())
    for name, theirs in expected_grads.items():
        assert grads[name] is not None, name
        scale = max(float(theirs.abs().max()), 0.01 * largest)
        torch.testing.assert_close(grads[name], theirs, rtol=1e-4, atol=1e-4 * scale, msg=name)


@pytest.mark.parametrize("frames_per_step", [1, 2])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fast_decoder_equals_the_per_step_loop(frames_per_step, mode):
    # Dropouts 0 in train(); eval() keeps the prenet's dropout (NVIDIA's), so the prenet's is 0 there too.
    model, reference = twins(n_frames_per_step=frames_per_step, p_attention_dropout=0.0, p_decoder_dropout=0.0,
                             prenet_dropout=0.0)
    assert model.mask_padding
    for m in (model, reference):
        m.train(mode == "train")
    # Padded text and mel (the second utterance is shorter in both).
    batch = synthetic_batch(text_lengths=(10, 6, 8), mel_lengths=(24, 13, 17), n_frames_per_step=frames_per_step)
    assert_same_step(model, reference, batch)


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_fast_decoder_with_an_alignment_prior_equals_the_per_step_loop(frames_per_step):
    model, reference = twins(n_frames_per_step=frames_per_step, p_attention_dropout=0.0, p_decoder_dropout=0.0,
                             prenet_dropout=0.0)
    batch = synthetic_batch(text_lengths=(10, 6, 8), mel_lengths=(24, 13, 17), n_frames_per_step=frames_per_step)
    text, text_lengths, mel, _, mel_lengths = batch
    prior = AttentionPrior(1.0)(text_lengths, -(-mel_lengths // frames_per_step), text.size(1),
                                mel.size(2) // frames_per_step)
    assert_same_step(model.train(), reference.train(), batch, attention_prior=2.0 * prior)


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_fast_decoder_draws_the_loops_dropout_masks(frames_per_step):
    # Same seed, same draws in the same order: every dropout (prenet, attention, decoder) masks alike.
    model, reference = twins(n_frames_per_step=frames_per_step, p_attention_dropout=0.3, p_decoder_dropout=0.2,
                             prenet_dropout=0.5)
    batch = synthetic_batch(n_frames_per_step=frames_per_step)
    assert_same_step(model.train(), reference.train(), batch)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_attention_and_decoder_dropout_follow_training_at_their_rates(monkeypatch, mode):
    model, _ = twins(attention_rnn_dim=48, decoder_rnn_dim=40, p_attention_dropout=0.3, p_decoder_dropout=0.2)
    model.train(mode == "train")
    calls = []
    dropout = F.dropout

    def spy(x, p=0.5, training=True, inplace=False):
        out = dropout(x, p, training, inplace)
        calls.append((x.size(-1), p, training, float((out == 0).float().mean())))
        return out

    monkeypatch.setattr(F, "dropout", spy)
    text, text_lengths, mel, _, mel_lengths = synthetic_batch(text_lengths=(10, 6), mel_lengths=(24, 12))
    model.decoder(model.encoder(model.embedding(text).transpose(1, 2), text_lengths), mel, text_lengths)
    for width, p in ((48, 0.3), (40, 0.2)):
        per_step = [c for c in calls if c[0] == width]
        assert len(per_step) == mel.size(2)
        assert all(c[1] == p and c[2] == (mode == "train") for c in per_step)
        dropped = sum(c[3] for c in per_step) / len(per_step)
        assert (abs(dropped - p) < 0.05) if mode == "train" else dropped < 0.01


def test_bf16_autocast_trains_close_to_float32():
    model, _ = twins()
    batch = synthetic_batch()
    (mel, *_), grads = step(model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (mel_bf16, *_), grads_bf16 = step(model, batch)
    assert mel_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(mel_bf16.float(), mel, rtol=0.1, atol=0.1)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads_bf16.values())
