"""load_nvidia_checkpoint reads every layout users bring and names what does not fit."""

from __future__ import annotations

import pytest
import torch

from tacotron2_lightning.checkpoint import CheckpointError, load_nvidia_checkpoint
from tacotron2_lightning.model import Tacotron2
from tests.helpers.batches import tiny_config


@pytest.fixture
def source_model():
    torch.manual_seed(1)
    return Tacotron2(tiny_config())


def assert_same_weights(a: Tacotron2, b: Tacotron2):
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize(
    "layout",
    [
        lambda sd: {"state_dict": sd},  # NVIDIA's published tacotron2_statedict.pt
        lambda sd: {"iteration": 10, "state_dict": sd, "optimizer": {}, "learning_rate": 1e-3},  # NVIDIA training
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "config": {}},  # DeepLearningExamples
        lambda sd: {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 1},  # our Lightning checkpoint
        lambda sd: dict(sd),  # a bare state_dict
    ],
    ids=["nvidia-published", "nvidia-training", "deeplearningexamples", "lightning", "bare"],
)
def test_every_layout_loads_from_a_file(layout, source_model, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save(layout(source_model.state_dict()), path)
    torch.manual_seed(2)
    target = Tacotron2(tiny_config())
    report = load_nvidia_checkpoint(target, path)
    assert report == {"missing": [], "unexpected": [], "mismatched": [], "ignored": []}
    assert_same_weights(source_model, target)


def test_missing_unexpected_and_mismatched_keys_are_named(source_model):
    state = source_model.state_dict()
    del state["decoder.gate_layer.linear_layer.bias"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["postnet.convolutions.0.0.conv.weight"] = torch.zeros(3, 3, 3)
    with pytest.raises(CheckpointError) as error:
        load_nvidia_checkpoint(Tacotron2(tiny_config()), {"state_dict": state})
    message = str(error.value)
    assert "missing keys (1): ['decoder.gate_layer.linear_layer.bias']" in message
    assert "unexpected keys (1): ['decoder.extra.weight']" in message
    assert "postnet.convolutions.0.0.conv.weight: checkpoint (3, 3, 3) vs model (32, 16, 5)" in message


def test_non_strict_loads_what_fits_and_reports_the_rest(source_model, caplog):
    state = source_model.state_dict()
    del state["decoder.gate_layer.linear_layer.bias"]
    target = Tacotron2(tiny_config())
    fresh_bias = target.decoder.gate_layer.linear_layer.bias.clone()
    report = load_nvidia_checkpoint(target, state, strict=False)
    assert report["missing"] == ["decoder.gate_layer.linear_layer.bias"]
    assert torch.equal(target.decoder.gate_layer.linear_layer.bias, fresh_bias)
    assert torch.equal(target.embedding.weight, source_model.embedding.weight)
    assert "decoder.gate_layer.linear_layer.bias" in caplog.text


def test_warm_start_with_a_different_symbol_set_keeps_fresh_embedding(source_model):
    target = Tacotron2(tiny_config(n_symbols=60))
    fresh_embedding = target.embedding.weight.clone()
    with pytest.raises(CheckpointError, match="embedding.weight: checkpoint \\(148, 32\\) vs model \\(60, 32\\)"):
        load_nvidia_checkpoint(target, source_model.state_dict())
    report = load_nvidia_checkpoint(target, source_model.state_dict(), ignore_layers=["embedding.weight"])
    assert report["ignored"] == ["embedding.weight"]
    assert torch.equal(target.embedding.weight, fresh_embedding)
    gate_weight = target.decoder.gate_layer.linear_layer.weight
    assert torch.equal(gate_weight, source_model.decoder.gate_layer.linear_layer.weight)


def test_ignore_layers_accepts_module_prefixes(source_model):
    target = Tacotron2(tiny_config())
    fresh = target.postnet.convolutions[0][0].conv.weight.clone()
    report = load_nvidia_checkpoint(target, source_model.state_dict(), ignore_layers=["postnet"])
    assert "postnet.convolutions.0.0.conv.weight" in report["ignored"]
    assert torch.equal(target.postnet.convolutions[0][0].conv.weight, fresh)


def test_a_model_that_does_not_fit_at_all_gets_a_short_message(source_model):
    with pytest.raises(CheckpointError) as error:
        load_nvidia_checkpoint(Tacotron2(tiny_config(decoder_rnn_dim=48, attention_rnn_dim=48, prenet_dim=24)),
                               source_model.state_dict())
    message = str(error.value)
    assert "mismatched keys (" in message and "more" in message
    assert "different symbol set" not in message  # the hint only fits a lone embedding mismatch
    assert len(message) < 1500


def test_unknown_ignore_layer_is_named(source_model):
    with pytest.raises(CheckpointError, match="ignore_layers names no parameter of the model: \\['embeddings'\\]"):
        load_nvidia_checkpoint(Tacotron2(tiny_config()), source_model.state_dict(), ignore_layers=["embeddings"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="Checkpoint file not found: .*nowhere.pt"):
        load_nvidia_checkpoint(Tacotron2(tiny_config()), tmp_path / "nowhere.pt")


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="Cannot read checkpoint .*broken.pt"):
        load_nvidia_checkpoint(Tacotron2(tiny_config()), path)


def test_file_without_a_state_dict_is_named(tmp_path):
    path = tmp_path / "weird.pt"
    torch.save({"state_dict": {"a": 1}}, path)
    with pytest.raises(CheckpointError, match="weird.pt: state_dict entries that are not tensors: \\['a'\\]"):
        load_nvidia_checkpoint(Tacotron2(tiny_config()), path)
