"""Tacotron2 reproduces NVIDIA's state_dict layout and function, and decodes batches free-running."""

from __future__ import annotations

import copy
import dataclasses
import logging
import re

import pytest
import torch

from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.inference_step import InferenceStep
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.model import Tacotron2, decoder_steps
from tests.helpers.batches import DATA_DIR, synthetic_batch, tiny_config


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA_DIR / "tacotron2_small_reference.pt", weights_only=True)


def reference_model(reference) -> Tacotron2:
    fields = {f.name for f in dataclasses.fields(Tacotron2Config)}
    config = Tacotron2Config(**{k: v for k, v in reference["hparams"].items() if k in fields}, prenet_dropout=0.0)
    model = Tacotron2(config)
    model.load_state_dict(reference["state_dict"], strict=True)
    return model.eval()


def test_default_state_dict_matches_nvidia_keys_shapes_and_dtypes():
    expected = {}
    for line in (DATA_DIR / "nvidia_tacotron2_state_dict.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            expected[parts[0]] = (parts[1], parts[2])
    assert len(expected) == 84
    state = Tacotron2().state_dict()
    actual = {k: (str(tuple(v.shape)), str(v.dtype)) for k, v in state.items()}
    assert actual == expected
    assert sum(p.numel() for p in Tacotron2().parameters()) == 28_193_153


def test_forward_reproduces_nvidia_reference_outputs_and_loss(reference):
    model = reference_model(reference)
    inputs = reference["inputs"]
    outputs = model(inputs["text_padded"], inputs["input_lengths"], inputs["mel_padded"], inputs["output_lengths"])
    names = ("mel_outputs", "mel_outputs_postnet", "gate_outputs", "alignments")
    for name, ours in zip(names, outputs, strict=True):
        theirs = reference["outputs"][name]
        assert ours.shape == theirs.shape, name
        # 1e-5 relative to the tensor's scale, the brief's tolerance.
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()), msg=name)
    loss = tacotron2_loss(*outputs[:3], inputs["mel_padded"], inputs["gate_padded"]).total
    torch.testing.assert_close(loss, reference["outputs"]["loss"], rtol=1e-5, atol=0.0)


def test_padding_mask_zeroes_frames_and_saturates_gate(reference):
    model = reference_model(reference)
    inputs = reference["inputs"]
    mel, mel_post, gate, _ = model(inputs["text_padded"], inputs["input_lengths"], inputs["mel_padded"],
                                   inputs["output_lengths"])
    short = int(inputs["output_lengths"].argmin())
    length = int(inputs["output_lengths"][short])
    assert length < mel.size(2), "the reference batch should contain padding"
    assert mel[short, :, length:].abs().sum() == 0 and mel_post[short, :, length:].abs().sum() == 0
    assert torch.all(gate[short, length:] == 1e3)
    assert mel[short, :, :length].abs().sum() > 0


def test_prenet_dropout_stays_on_in_eval_unless_zero():
    torch.manual_seed(0)
    noisy = Tacotron2(tiny_config(prenet_dropout=0.5)).eval()
    frame = torch.ones(4, 16)
    assert not torch.equal(noisy.decoder.prenet(frame), noisy.decoder.prenet(frame))
    quiet = Tacotron2(tiny_config(prenet_dropout=0.0)).eval()
    assert torch.equal(quiet.decoder.prenet(frame), quiet.decoder.prenet(frame))


@pytest.mark.parametrize("frames_per_step", [2, 3])
def test_several_frames_per_step_train_with_matching_shapes(frames_per_step):
    model = Tacotron2(tiny_config(n_frames_per_step=frames_per_step))
    text, text_lengths, mel, gate, mel_lengths = synthetic_batch(n_frames_per_step=frames_per_step)
    mel_out, mel_post, gate_out, alignments = model(text, text_lengths, mel, mel_lengths)
    assert mel_out.shape == mel_post.shape == mel.shape
    assert gate_out.shape == gate.shape
    assert alignments.shape == (2, mel.size(2) // frames_per_step, text.size(1))
    tacotron2_loss(mel_out, mel_post, gate_out, mel, gate).total.backward()


def test_mel_length_not_multiple_of_frames_per_step_is_refused():
    model = Tacotron2(tiny_config(n_frames_per_step=2))
    text, text_lengths, mel, _, mel_lengths = synthetic_batch(mel_lengths=(23, 12))
    with pytest.raises(ValueError, match="23 frames, not a multiple of n_frames_per_step=2"):
        model(text, text_lengths, mel, mel_lengths)


@pytest.fixture(scope="module")
def gate_trained_model():
    """A tiny model taught two utterances of different lengths, so its gate fires at known steps."""
    torch.manual_seed(0)
    model = Tacotron2(tiny_config(prenet_dropout=0.0))
    batch = synthetic_batch(text_lengths=(10, 6), mel_lengths=(24, 12))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(120):
        text, text_lengths, mel, gate, mel_lengths = batch
        loss = tacotron2_loss(*model(text, text_lengths, mel, mel_lengths)[:3], mel, gate).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), batch


def test_batched_inference_stops_each_utterance_on_its_own_gate(gate_trained_model):
    model, (text, text_lengths, _, _, mel_lengths) = gate_trained_model
    mel, mel_post, gate, alignments, lengths = model.inference(text, text_lengths)
    # Each utterance stops near its own trained length, and the two differ.
    assert abs(int(lengths[0]) - 24) <= 2 and abs(int(lengths[1]) - 12) <= 2, lengths
    short = int(lengths[1])
    assert mel[1, :, short:].abs().sum() == 0 and mel_post[1, :, short:].abs().sum() == 0
    assert torch.all(gate[1, short:] == 1e3)
    assert alignments[1, short:].abs().sum() == 0


def test_batched_inference_equals_one_utterance_at_a_time(gate_trained_model):
    model, (text, text_lengths, _, _, _) = gate_trained_model
    # In float64, as test_gate_stops_and_cap_stops_compact_alike: float32 rounding depends on a GEMM's batch size
    # (one utterance or two), and over ~24 fed-back steps it grows to ~2e-5; this test is about the maths.
    model = copy.deepcopy(model).double()
    batched = model.inference(text, text_lengths)
    for i in range(text.size(0)):
        single = model.inference(text[i, : text_lengths[i]])
        length = int(single.lengths[0])
        assert length == int(batched.lengths[i])
        for ours, theirs in ((single.mel, batched.mel), (single.mel_postnet, batched.mel_postnet)):
            torch.testing.assert_close(ours[0, :, :length], theirs[i, :, :length], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(single.alignments[0], batched.alignments[i, :length, : text_lengths[i]],
                                   atol=1e-5, rtol=1e-4)


def test_inference_stops_at_the_cap_with_a_warning(gate_trained_model, caplog):
    model, (text, text_lengths, _, _, _) = gate_trained_model
    with caplog.at_level(logging.WARNING, logger="tacotron2_lightning.model"):
        mel, _, _, alignments, lengths = model.inference(text, text_lengths, max_decoder_steps=5)
    assert lengths.tolist() == [5, 5]
    assert mel.size(2) == 5 and alignments.size(1) == 5
    assert "max_decoder_steps=5" in caplog.text and "2 of 2" in caplog.text


def test_inference_returns_nvidia_four_outputs_then_the_lengths(gate_trained_model):
    model, (text, _, _, _, _) = gate_trained_model
    outputs = model.inference(text[0])
    assert outputs._fields == ("mel", "mel_postnet", "gate", "alignments", "lengths")
    assert outputs.mel.shape[:2] == (1, 16)
    assert outputs.lengths.shape == (1,) and int(outputs.lengths[0]) == outputs.mel.size(2)


def never_stopping_model(n_frames_per_step: int) -> Tacotron2:
    """An untrained tiny model whose gate never fires: every utterance runs to its cap, as in health checks."""
    torch.manual_seed(0)
    model = Tacotron2(tiny_config(prenet_dropout=0.0, n_frames_per_step=n_frames_per_step)).eval()
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    return model


def assert_equals_each_alone(model: Tacotron2, text, text_lengths, caps) -> None:
    """Batched decoding (with its compaction) gives each utterance exactly what decoding it alone gives."""
    batched = model.inference(text, text_lengths, max_decoder_steps=caps, warn_at_cap=False)
    r = model.n_frames_per_step
    for i in range(text.size(0)):
        alone = model.inference(text[i, : text_lengths[i]], max_decoder_steps=int(caps[i]), warn_at_cap=False)
        length = int(alone.lengths[0])
        steps = decoder_steps(length, r)
        assert int(batched.lengths[i]) == length
        for name in ("mel", "mel_postnet"):
            ours, theirs = getattr(batched, name)[i], getattr(alone, name)[0]
            torch.testing.assert_close(ours[:, :length], theirs[:, :length], atol=1e-6, rtol=1e-6, msg=name)
            assert ours[:, length:].abs().sum() == 0, name
        torch.testing.assert_close(batched.gate[i, :length], alone.gate[0, :length], atol=1e-6, rtol=1e-6)
        assert torch.all(batched.gate[i, length:] == 1e3)
        torch.testing.assert_close(batched.alignments[i, :steps, : text_lengths[i]], alone.alignments[0, :steps],
                                   atol=1e-6, rtol=1e-6)
        assert batched.alignments[i, steps:].abs().sum() == 0


def test_per_utterance_caps_stop_each_utterance_at_its_own_cap(caplog):
    model = never_stopping_model(n_frames_per_step=2)
    text, text_lengths, _, _, _ = synthetic_batch(text_lengths=(10, 6, 8), mel_lengths=(4, 4, 4))
    with caplog.at_level(logging.WARNING, logger="tacotron2_lightning.model"):
        decoded = model.inference(text, text_lengths, max_decoder_steps=torch.tensor([7, 3, 5]))
    assert decoded.lengths.tolist() == [14, 6, 10]  # cap * r: none of them stopped on its gate
    assert decoded.mel.size(2) == 14 and decoded.alignments.size(1) == 7
    assert decoded.mel[1, :, 6:].abs().sum() == 0 and torch.all(decoded.gate[1, 6:] == 1e3)
    assert decoded.alignments[2, 5:].abs().sum() == 0 and decoded.alignments[2, :5].abs().sum() > 0
    assert "max_decoder_steps=[7, 3, 5]" in caplog.text and "3 of 3" in caplog.text


def test_decoding_continues_only_on_the_utterances_still_going(monkeypatch):
    model = never_stopping_model(n_frames_per_step=1)
    text, text_lengths, _, _, _ = synthetic_batch(text_lengths=(10, 6, 8), mel_lengths=(4, 4, 4))
    rows_per_step = []
    decode_step = InferenceStep.__call__

    def counting_decode_step(self, prenet_frame, *args):
        rows_per_step.append(prenet_frame.size(0))
        return decode_step(self, prenet_frame, *args)

    monkeypatch.setattr(InferenceStep, "__call__", counting_decode_step)
    model.inference(text, text_lengths, max_decoder_steps=torch.tensor([7, 3, 5]), warn_at_cap=False)
    assert rows_per_step == [3, 3, 3, 2, 2, 1, 1]


@pytest.mark.parametrize("frames_per_step", [1, 2])
def test_compacted_batch_equals_each_utterance_alone(frames_per_step):
    model = never_stopping_model(frames_per_step)
    # Padded text; the utterances drop out of the batch in an order unrelated to their text lengths.
    text, text_lengths, _, _, _ = synthetic_batch(text_lengths=(10, 6, 8, 3), mel_lengths=(4, 4, 4, 4))
    assert_equals_each_alone(model, text, text_lengths, torch.tensor([7, 3, 9, 5]))


def test_gate_stops_and_cap_stops_compact_alike(gate_trained_model):
    model, (text, text_lengths, _, _, _) = gate_trained_model
    # In float64: over ~25 fed-back steps of a trained model, float32 rounding (which depends on a matmul's
    # batch size, compaction or not) grows to ~4e-6 on values of ~1, and this test is about the maths.
    model = copy.deepcopy(model).double()
    # The first utterance stops on its gate (about step 24); the second is capped first, at step 5.
    assert_equals_each_alone(model, text, text_lengths, torch.tensor([40, 5]))
    decoded = model.inference(text, text_lengths, max_decoder_steps=torch.tensor([40, 5]), warn_at_cap=False)
    assert int(decoded.lengths[0]) < 40 and int(decoded.lengths[1]) == 5


def test_an_int_cap_caps_every_utterance_alike(gate_trained_model):
    model, (text, text_lengths, _, _, _) = gate_trained_model
    shared = model.inference(text, text_lengths, max_decoder_steps=15, warn_at_cap=False)
    per_utterance = model.inference(text, text_lengths, max_decoder_steps=torch.tensor([15, 15]), warn_at_cap=False)
    assert int(shared.lengths[0]) == 15 and int(shared.lengths[1]) < 15  # capped; stopped on its gate
    for ours, theirs in zip(shared, per_utterance, strict=True):
        assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    ("cap", "got"),
    [
        (-1, "got -1"),
        (0, "got 0"),
        (2.5, "got 2.5"),
        (torch.tensor([4, -2]), "got a (2,) torch.int64 tensor [4, -2]"),
        (torch.tensor([4]), "got a (1,) torch.int64 tensor [4]"),
        (torch.tensor([[4, 4]]), "got a (1, 2) torch.int64 tensor [[4, 4]]"),
        (torch.tensor([4.0, 4.0]), "got a (2,) torch.float32 tensor [4.0, 4.0]"),
    ],
)
def test_bad_cap_is_refused_naming_it(cap, got):
    model = never_stopping_model(n_frames_per_step=1)
    text, text_lengths, _, _, _ = synthetic_batch()
    with pytest.raises(ValueError, match="max_decoder_steps must be .*" + re.escape(got)):
        model.inference(text, text_lengths, max_decoder_steps=cap)


@pytest.mark.parametrize(("frames", "r", "steps"), [(0, 1, 0), (7, 1, 7), (6, 2, 3), (7, 2, 4), (7, 3, 3)])
def test_decoder_steps_round_frames_up_to_whole_steps(frames, r, steps):
    assert decoder_steps(frames, r) == steps
    assert decoder_steps(torch.tensor([frames, 1]), r).tolist() == [steps, 1]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("encoder_kernel_size", 4, "encoder_kernel_size must be odd, got 4"),
        ("decoder_rnn_dim", 0, "decoder_rnn_dim must be a positive integer, got 0"),
        ("p_decoder_dropout", 1.5, "p_decoder_dropout must be in \\[0, 1\\), got 1.5"),
        ("gate_threshold", 1.0, "gate_threshold must be in \\(0, 1\\), got 1.0"),
        ("symbols_embedding_dim", 64, "symbols_embedding_dim must equal encoder_embedding_dim"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value, message):
    with pytest.raises(ValueError, match=message):
        Tacotron2Config(**{field: value})


def test_config_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="Unknown Tacotron2Config key\\(s\\) \\['decoder_rnn_dims'\\]"):
        Tacotron2Config.from_dict({"decoder_rnn_dims": 512})


def test_inference_window_keeps_each_step_near_the_previous_peak():
    """Coqui-style windowing: with it, free-running attention never jumps more than the window from its last peak;
    without it, an untrained attention jumps all over a long input (so the test can fail)."""
    torch.manual_seed(0)
    text = torch.randint(12, 64, (2, 80))
    lengths = torch.tensor([80, 61])

    def peak_moves(window: bool) -> torch.Tensor:
        torch.manual_seed(1)
        config = tiny_config(prenet_dropout=0.0, inference_window=window, inference_window_back=1,
                             inference_window_front=3)
        torch.manual_seed(2)
        model = Tacotron2(config).eval()
        with torch.no_grad():
            model.decoder.attention_layer.v.linear_layer.weight.mul_(30.0)  # sharp, erratic attention
        decoded = model.inference(text, lengths, max_decoder_steps=40, warn_at_cap=False)
        peaks = decoded.alignments.argmax(2)  # (B, S)
        assert bool((peaks[1] < 61).all())  # padding stays out of reach
        return peaks[:, 1:] - peaks[:, :-1]

    free = peak_moves(False)
    assert int(free.max()) > 2 or int(free.min()) < -1
    windowed = peak_moves(True)
    assert int(windowed.max()) <= 2 and int(windowed.min()) >= -1


def test_inference_window_options_are_checked():
    with pytest.raises(ValueError, match="inference_window_back must be an integer >= 0, got -1"):
        tiny_config(inference_window_back=-1)
    with pytest.raises(ValueError, match="inference_window_front must be a positive integer, got 0"):
        tiny_config(inference_window_front=0)
    with pytest.raises(ValueError, match="inference_window must be true or false, got 'yes'"):
        tiny_config(inference_window="yes")
