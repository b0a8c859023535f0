"""The synthesis step computes NVIDIA's decoder step (``Decoder.decode_step``) in fewer operators."""

from __future__ import annotations

import pytest
import torch

from tacotron2_lightning.inference_step import InferenceStep
from tacotron2_lightning.model import Tacotron2, lengths_to_mask
from tests.helpers.batches import tiny_config


@pytest.mark.parametrize("frames_per_step", [1, 2])
@pytest.mark.parametrize("windowed", [False, True])
def test_free_running_steps_equal_nvidias_step(frames_per_step, windowed):
    torch.manual_seed(0)
    decoder = Tacotron2(tiny_config(n_frames_per_step=frames_per_step)).decoder.eval()
    memory_lengths = torch.tensor([9, 6, 7])
    memory = torch.randn(3, 9, 32) * lengths_to_mask(memory_lengths).unsqueeze(2)
    pad_mask = ~lengths_to_mask(memory_lengths)
    padding = torch.zeros(3, 9).masked_fill(pad_mask, float("-inf"))
    step = InferenceStep(decoder, memory)
    state, theirs = step.initial_state(), decoder.initial_state(memory)
    processed_memory = decoder.attention_layer.memory_layer(memory)
    frame = expected_frame = memory.new_zeros(3, 16 * frames_per_step)
    with torch.no_grad():
        for t in range(12):
            # A window that moves along the text (the model's own windowing is tested with inference()).
            window = torch.zeros(3, 9).masked_fill((torch.arange(9) - t // 2).abs() > 2, float("-inf")) if windowed \
                else None
            bias = padding if window is None else padding + window
            prenet = decoder.prenet(frame)  # the prenet's dropout stays on: feed both steps the same input
            frame, gate, weights, state = step(prenet, state, bias)
            expected_frame, expected_gate, theirs = decoder.decode_step(prenet, theirs, memory, processed_memory,
                                                                        pad_mask, window)
            torch.testing.assert_close(frame, expected_frame, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(gate, expected_gate.squeeze(1), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(weights, theirs.attention_weights, rtol=1e-5, atol=1e-6)
            frame = expected_frame


def test_dropout_follows_training_as_in_nvidias_step():
    torch.manual_seed(0)
    decoder = Tacotron2(tiny_config(p_attention_dropout=0.5, p_decoder_dropout=0.5)).decoder.train()
    memory = torch.randn(2, 5, 32)
    step = InferenceStep(decoder, memory)
    prenet = torch.randn(2, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        frame, *_ = step(prenet, step.initial_state(), None)
        torch.manual_seed(1)
        expected, *_ = decoder.decode_step(prenet, decoder.initial_state(memory), memory,
                                           decoder.attention_layer.memory_layer(memory), None)
        decoder.eval()
        undropped, *_ = step(prenet, step.initial_state(), None)
    torch.testing.assert_close(frame, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(frame, undropped)
