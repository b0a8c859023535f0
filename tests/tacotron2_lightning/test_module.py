"""Tacotron2Module trains with NVIDIA's loss in a real Trainer, logs health metrics, and runs under DDP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tacotron2_lightning import health
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import repeated_loader, synthetic_batch, tiny_config
from tests.helpers.processes import rank_records, run_ddp_script

ROOT = Path(__file__).resolve().parents[2]


def quiet_trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, gradient_clip_val=1.0)
    return pl.Trainer(**{**defaults, **kwargs})


class LossRecorder(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_loss_falls_over_30_steps_on_a_fixed_batch():
    torch.manual_seed(0)
    recorder = LossRecorder()
    module = Tacotron2Module(tiny_config(), learning_rate=1e-2)
    quiet_trainer(max_steps=30, callbacks=[recorder]).fit(module, repeated_loader(synthetic_batch(), 30))
    assert len(recorder.losses) == 30
    first, last = sum(recorder.losses[:3]) / 3, sum(recorder.losses[-3:]) / 3
    assert last < 0.7 * first, recorder.losses


def test_training_loss_is_nvidia_loss_when_guided_attention_is_off():
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0))
    batch = synthetic_batch()
    module.eval()  # deterministic: no dropout anywhere
    loss = module.training_step(batch, 0)
    text, text_lengths, mel, gate, mel_lengths = batch
    expected = tacotron2_loss(*module.model(text, text_lengths, mel, mel_lengths)[:3], mel, gate).total
    torch.testing.assert_close(loss, expected)
    module.guided_attention_weight = 5.0
    assert module.training_step(batch, 0) > expected + 1e-3


def test_gate_positive_weight_raises_the_objective_but_not_the_logged_loss():
    torch.manual_seed(0)
    config = tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0)
    plain = Tacotron2Module(config).eval()
    weighted = Tacotron2Module(config, gate_positive_weight=10.0).eval()
    weighted.load_state_dict(plain.state_dict())
    batch = synthetic_batch()
    logged = {}
    weighted.log = lambda name, value, **kwargs: logged.setdefault(name, value)
    objective = weighted.training_step(batch, 0)
    nvidia = plain.training_step(batch, 0)
    assert objective > nvidia + 1e-3
    torch.testing.assert_close(logged["train/loss"], nvidia)


def test_validation_logs_every_health_metric():
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(), health_utterances=2)
    trainer = quiet_trainer(max_steps=2, val_check_interval=2, num_sanity_val_steps=0)
    batch = synthetic_batch()
    trainer.fit(module, repeated_loader(batch, 2), repeated_loader(batch, 2))
    metrics = trainer.callback_metrics
    for name in ("train/loss", "val/loss", "val/mel_loss", "val/gate_loss", "val/alignment_score",
                 "val/diagonality", "val/monotonicity", "val/gate_stop_rate", "val/inference_diagonality",
                 "val/duration_ratio", "val/duration_ratio_iqr", "val/mcd", "val/cepstral_decorrelation_sl"):
        assert name in metrics, name
        assert torch.isfinite(metrics[name]), name
    assert 0.0 <= float(metrics["val/gate_stop_rate"]) <= 1.0
    assert float(metrics["val/mcd"]) > 0.0 and float(metrics["val/duration_ratio"]) > 0.0
    assert float(metrics["val/cepstral_decorrelation_sl"]) > 0.0
    example = module.last_validation_example
    assert example["alignment"].shape == (24, 10)  # first utterance: 24 frames, 10 characters
    assert example["mel_target"].shape == example["mel_predicted"].shape == (16, 24)
    assert example["inference_mel"].size(0) == 16


def test_word_timings_in_validation_batches_log_the_alignment_error():
    torch.manual_seed(0)
    deterministic = tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0)
    module = Tacotron2Module(deterministic, health_utterances=0)
    batch = synthetic_batch()  # texts of 10 and 6 symbols, 24 and 12 frames
    words = torch.tensor([[[0, 0], [4, 9], [7, 20]], [[0, 0], [3, 6], [-1, -1]]])
    trainer = quiet_trainer(max_steps=1, num_sanity_val_steps=0)
    trainer.validate(module, repeated_loader((*batch, words), 3), verbose=False)
    metrics = trainer.callback_metrics
    # Pooled over the validation's words, as health computes it for one batch (the same batch three times).
    with torch.no_grad():
        alignments = module.eval().model(batch[0], batch[1], batch[2], batch[4])[3]
    for name, measure in (("val/alignment_error", health.alignment_error),
                          ("val/alignment_error_ratio", health.alignment_error_ratio)):
        expected = measure(alignments, words, batch[1], batch[4])
        assert float(expected) > 0
        assert float(metrics[name]) == pytest.approx(float(expected), rel=1e-5)
    trainer.validate(module, repeated_loader(batch, 1), verbose=False)
    assert "val/alignment_error" not in trainer.callback_metrics  # NVIDIA's 5-tuple: nothing to measure


def test_gate_stop_rate_is_zero_when_no_utterance_can_stop():
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(), health_utterances=2, health_cap_ratio=0.1)
    with torch.no_grad():  # a gate that never fires: every utterance runs into the cap
        module.model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    trainer = quiet_trainer(max_steps=1, num_sanity_val_steps=0)
    trainer.validate(module, repeated_loader(synthetic_batch(), 1), verbose=False)
    assert float(trainer.callback_metrics["val/gate_stop_rate"]) == 0.0
    # Cut off at a tenth of the longest target, the synthesised speech is far too short.
    assert float(trainer.callback_metrics["val/duration_ratio"]) < 0.3


def test_bf16_mixed_precision_trains():
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(), health_utterances=1)
    trainer = quiet_trainer(max_steps=2, precision="bf16-mixed", val_check_interval=2, num_sanity_val_steps=0)
    batch = synthetic_batch()
    trainer.fit(module, repeated_loader(batch, 2), repeated_loader(batch, 1))
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_checkpoint_holds_plain_hyperparameters_and_reloads(tmp_path):
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(), learning_rate=2e-3, guided_attention_weight=1.5)
    trainer = quiet_trainer(max_steps=1, default_root_dir=tmp_path)
    trainer.fit(module, repeated_loader(synthetic_batch(), 1))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)  # no pickled objects in our checkpoints
    assert raw["hyper_parameters"]["model_config"]["decoder_rnn_dim"] == 64
    restored = Tacotron2Module.load_from_checkpoint(path)
    assert restored.config == module.config
    assert restored.learning_rate == 2e-3 and restored.guided_attention_weight == 1.5
    for key, value in module.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key


@pytest.mark.parametrize(
    ("argument", "value"),
    [("learning_rate", 0.0), ("weight_decay", -1.0), ("guided_attention_weight", -0.5), ("health_cap_ratio", 0),
     ("attention_prior_weight", -1.0), ("attention_prior_weight", float("nan")),
     ("attention_prior_scaling", 0.0), ("attention_prior_scaling", float("inf")), ("align_loss_weight", -0.1),
     ("align_loss_weight", float("nan")), ("align_loss_start_step", 1.5), ("align_loss_start_step", "100"),
     ("align_loss_start_step", True), ("align_loss_start_step", -1)],
)
def test_bad_arguments_are_named(argument, value):
    with pytest.raises(ValueError, match=rf"{argument} must be .*got {re.escape(repr(value))}"):
        Tacotron2Module(tiny_config(), **{argument: value})


def test_align_loss_is_logged_always_and_minimised_from_its_start_step():
    torch.manual_seed(0)
    config = tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0)
    module = Tacotron2Module(config, align_loss_weight=2.0, align_loss_start_step=5).eval()
    logged = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    batch = synthetic_batch()
    text, text_lengths, mel, gate, mel_lengths = batch
    nvidia = tacotron2_loss(*module.model(text, text_lengths, mel, mel_lengths)[:3], mel, gate).total
    before = module.training_step(batch, 0)  # global_step 0 < 5: logged, not minimised
    torch.testing.assert_close(before, nvidia)
    assert float(logged["train/align_loss"]) > 0
    type(module).global_step = property(lambda self: 5)
    try:
        after = module.training_step(batch, 0)
    finally:
        del type(module).global_step
    torch.testing.assert_close(after, nvidia + 2.0 * logged["train/align_loss"])
    module._shared_step(batch, "val")
    assert "val/align_loss" in logged


def test_align_loss_refuses_data_with_fewer_decoder_steps_than_symbols():
    from types import SimpleNamespace

    from tacotron2_lightning.data.dataset import CheckedUtterance
    from tacotron2_lightning.data.sources import Utterance

    def item(origin, symbols, frames):
        return CheckedUtterance(Utterance(Path("a.wav"), "text", origin), tuple(range(1, symbols + 1)), 22050,
                                frames, frames * 256 / 22050)

    module = Tacotron2Module(tiny_config(n_frames_per_step=3), align_loss_weight=1.0)
    data = SimpleNamespace(train_set=SimpleNamespace(items=[item("list.txt:1", 10, 60), item("list.txt:2", 30, 60)]))
    module.trainer = SimpleNamespace(datamodule=data)  # what Lightning sets before on_fit_start
    with pytest.raises(ValueError, match=r"align_loss_weight=1.0.*list.txt:2 \(30 symbols, 60 frames = 20 steps.*"
                                         r"n_frames_per_step=3"):
        module._check_align_loss_fits_data()
    data.train_set.items.pop()
    module._check_align_loss_fits_data()  # every utterance has a monotonic path: accepted


def test_unknown_model_config_key_is_named():
    with pytest.raises(ValueError, match="decoder_rnn"):
        Tacotron2Module({"decoder_rnn": 12})


@pytest.mark.slow
def test_one_ddp_step_on_two_cpu_processes_averages_gradients(tmp_path):
    result = run_ddp_script("ddp_one_step.py", tmp_path, timeout_s=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = rank_records(tmp_path)
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["step"] for r in ranks] == [1, 1]
    # Different batches per rank, identical weights after the step: DDP averaged the gradients.
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-9, abs=1e-9)
