"""MetricHistory records train metrics per step and val metrics per validation, in anyone's Trainer; its
statistics, anomalies, bounding, exports (files and MLflow) and checkpointed state behave as documented."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import repeated_loader, synthetic_batch, tiny_config
from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tuner_callbacks.history import Anomaly, MetricHistory

RNG = np.random.default_rng(0)
FLAT = (1.0 + 0.01 * RNG.standard_normal(60)).tolist()  # noisy, flat
SPIKE = FLAT[:40] + [1.5] + FLAT[41:]
NON_FINITE = FLAT[:30] + [float("nan")] + FLAT[31:45] + [float("inf")] + FLAT[46:]
RAMP = (2.0 - 0.02 * np.arange(60) + 0.001 * RNG.standard_normal(60)).tolist()
JUMP = RAMP[:40] + [v + 0.3 for v in RAMP[40:]]  # a level shift hidden in a falling series' spread


def scripted_run(tmp_path, values, history=None, **trainer_kwargs):
    """Fits ToyRegression logging ``values`` as ``val/x``, one per validation at steps 1, 2, ..."""
    history = history or MetricHistory(warn_on_anomaly=False, export_formats=())
    trainer = toy_trainer(tmp_path, [history], max_steps=len(values), **trainer_kwargs)
    trainer.fit(ToyRegression(scripted={"val/x": values}), toy_loader(n=64), toy_loader())
    return history


def fit_toy(tmp_path, callbacks, module, **trainer_kwargs) -> pl.Trainer:
    trainer = toy_trainer(tmp_path, callbacks, **trainer_kwargs)
    trainer.fit(module, toy_loader(), toy_loader())
    return trainer


class LossRecorder(pl.Callback):
    def __init__(self):
        self.losses = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


def test_records_train_metrics_each_step_and_val_metrics_each_validation(tmp_path):
    history, recorder = MetricHistory(export_formats=()), LossRecorder()
    fit_toy(tmp_path, [history, recorder], ToyRegression(), val_check_interval=5)
    train = history.dataframe(phase="train")
    assert set(train.metric) == {"train/loss"}
    assert train.step.tolist() == list(range(1, 21))
    np.testing.assert_allclose(train.value, [recorder.losses[s] for s in range(1, 21)], rtol=1e-6)
    assert train.epoch.tolist() == [(s - 1) // 4 for s in range(1, 21)]  # 4 batches an epoch
    val = history.dataframe(phase="val")
    assert set(val.metric) == {"val/loss"} and val.step.tolist() == [5, 10, 15, 20]
    assert history.names() == ["train/loss", "val/loss"]
    assert history.wide().shape == (20, 2)


def test_every_n_steps_samples_train_metrics(tmp_path):
    history = MetricHistory(every_n_steps=3, export_formats=())
    fit_toy(tmp_path, [history], ToyRegression(), val_check_interval=10)
    assert history.dataframe(phase="train").step.tolist() == [3, 6, 9, 12, 15, 18]
    assert history.dataframe(phase="val").step.tolist() == [10, 20]


def test_gradient_accumulation_records_once_per_optimizer_step(tmp_path):
    history = MetricHistory(export_formats=())
    fit_toy(tmp_path, [history], ToyRegression(), max_steps=5, accumulate_grad_batches=2)
    assert history.dataframe(phase="train").step.tolist() == [1, 2, 3, 4, 5]


class StepAndEpochLogger(ToyRegression):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("train/both", loss, on_step=True, on_epoch=True)
        return loss


def test_metrics_logged_on_step_and_epoch_are_recorded_per_step_and_per_epoch_under_their_name(tmp_path):
    history = MetricHistory(export_formats=())
    fit_toy(tmp_path, [history], StepAndEpochLogger(), max_steps=6)
    assert history.names(phase="train") == ["train/both", "train/loss"]
    steps = history.dataframe("train/both", phase="train")
    assert steps.step.tolist() == [1, 2, 3, 4, 5, 6]
    epochs = history.dataframe("train/both", phase="train_epoch")
    assert epochs.step.tolist() == [4, 6]  # epoch 0 ends after 4 batches, the run during epoch 1
    assert epochs.value.tolist() == pytest.approx([steps.value[:4].mean(), steps.value[4:].mean()], rel=1e-5)
    assert history.names(phase="train_epoch") == ["train/both"]


def test_stats_match_numpy_over_the_whole_series_and_a_window(tmp_path):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    history = scripted_run(tmp_path, values)
    for window, expected in ((None, np.array(values)), (4, np.array(values[-4:]))):
        stats = history.stats("val/x", window=window)
        assert stats["mean"] == pytest.approx(expected.mean())
        assert stats["median"] == pytest.approx(np.median(expected))
        assert stats["std"] == pytest.approx(expected.std())
        assert (stats["min"], stats["max"], stats["count"], stats["last"]) == (expected.min(), expected.max(),
                                                                                len(expected), 3.0)
        steps = np.arange(len(values) - len(expected), len(values)) + 1
        assert stats["slope"] == pytest.approx(np.polyfit(steps, expected, 1)[0])


def test_slope_of_a_linear_ramp_is_its_rise_per_step(tmp_path):
    history = scripted_run(tmp_path, [2.0 - 0.01 * i for i in range(20)])
    assert history.stats("val/x", window=10)["slope"] == pytest.approx(-0.01, rel=1e-4)
    assert history.stats("train/loss")["slope"] < 0  # ToyRegression learns


def test_stats_leave_non_finite_values_out_but_report_the_last(tmp_path):
    stats = scripted_run(tmp_path, [1.0, 2.0, float("nan"), 3.0, float("inf")]).stats("val/x")
    assert (stats["count"], stats["mean"], stats["last"]) == (3, 2.0, float("inf"))


@pytest.mark.parametrize(("values", "expected"), [
    (FLAT, []),
    (SPIKE, [(41, "spike")]),
    (NON_FINITE, [(31, "non_finite"), (46, "non_finite")]),
    (JUMP, [(41, "jump")]),
], ids=["clean", "spike", "non_finite", "jump"])
def test_anomalies_are_found_at_the_right_step(tmp_path, values, expected):
    history = scripted_run(tmp_path, values)
    found = history.anomalies("val/x")
    assert [(a.step, a.kind) for a in found] == expected
    assert all(a.phase == "val" and a.metric == "val/x" for a in found)


def test_a_spike_after_a_clean_series_is_the_latest_anomaly_and_warned_about_once(tmp_path):
    history = MetricHistory(export_formats=())
    with pytest.warns(UserWarning, match=r"spike in val/x at step 45: 3\.0") as caught:
        scripted_run(tmp_path, FLAT[:44] + [3.0], history=history)
    assert sum("MetricHistory" in str(w.message) for w in caught) == 1
    assert history.latest_anomalies() == [Anomaly(45, "val/x", 3.0, "spike", pytest.approx(
        history.anomalies("val/x")[0].score), "val")]
    assert history.anomalies("val/x", since_step=46) == []
    assert history.anomalies("val/x", z_threshold=1e6, jump_factor=1e6) == []


@pytest.mark.parametrize(("bounding", "expect_first"), [("downsample", 1), ("window", 31)])
def test_bounding_keeps_at_most_max_rows_and_the_newest(tmp_path, bounding, expect_first):
    history = MetricHistory(max_rows_per_metric=10, bounding=bounding, min_history=5, export_formats=())
    fit_toy(tmp_path, [history], ToyRegression(), max_steps=40, val_check_interval=40)
    steps = history.dataframe("train/loss").step.tolist()
    assert len(steps) <= 10 and steps[0] == expect_first and steps[-1] == 40
    assert steps == sorted(set(steps))
    if bounding == "window":
        assert steps == list(range(31, 41))


def read_back(path):
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.DataFrame(json.loads(path.read_text()))


def test_export_writes_files_that_read_back_to_the_same_rows(tmp_path):
    history = scripted_run(tmp_path, [1.0, float("nan"), float("inf"), 0.5])
    paths = history.export(tmp_path / "out")
    assert [p.name for p in paths] == ["metric_history.csv", "metric_history.parquet", "metric_history.json"]
    expected = history.dataframe()
    assert len(expected) == 8
    for path in paths:
        frame = read_back(path).sort_values(["step", "phase", "metric"], kind="stable", ignore_index=True)
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)


def test_end_of_training_exports_to_default_root_dir_and_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient
    from pytorch_lightning.loggers import MLFlowLogger

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLFlowLogger(experiment_name="history", tracking_uri=uri, artifact_location=str(tmp_path / "mlruns"))
    history = MetricHistory()
    fit_toy(tmp_path, [history], ToyRegression(), max_steps=4, logger=logger)
    assert sorted(p.name for p in (tmp_path / "metric_history").iterdir()) == [
        "metric_history.csv", "metric_history.json", "metric_history.parquet"]
    artifacts = MlflowClient(tracking_uri=uri).list_artifacts(logger.run_id, "metric_history")
    assert sorted(a.path for a in artifacts) == [f"metric_history/metric_history.{f}" for f in ("csv", "json",
                                                                                                 "parquet")]


def test_a_failing_export_does_not_end_training(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    history = MetricHistory(export_dir=blocker / "sub")
    fit_toy(tmp_path, [history], ToyRegression(), max_steps=2)
    assert "could not export" in caplog.text


def test_records_tacotron2_training_and_health_metrics(tmp_path):
    torch.manual_seed(0)
    history = MetricHistory(export_formats=())
    module = Tacotron2Module(tiny_config(), health_utterances=1)
    trainer = toy_trainer(tmp_path, [history], max_steps=3, gradient_clip_val=1.0)
    trainer.fit(module, repeated_loader(synthetic_batch(), 3), repeated_loader(synthetic_batch(), 1))
    assert history.names(phase="train") == ["train/gate_loss", "train/loss", "train/mel_loss"]
    assert {"val/loss", "val/alignment_score", "val/diagonality", "val/gate_stop_rate"} <= set(
        history.names(phase="val"))
    assert history.dataframe("val/alignment_score").step.tolist() == [1, 2, 3]
    assert 0 < history.stats("val/alignment_score")["last"] <= 1


def test_state_survives_a_checkpoint_and_the_resumed_run_continues_it(tmp_path):
    first = MetricHistory(export_formats=())
    trainer = fit_toy(tmp_path, [first], ToyRegression(), max_steps=10, val_check_interval=5)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    assert torch.load(tmp_path / "run.ckpt", weights_only=True)["callbacks"]  # plain values only
    before = first.dataframe()

    resumed = MetricHistory(export_formats=())
    toy_trainer(tmp_path, [resumed], max_steps=20, val_check_interval=5).fit(
        ToyRegression(), toy_loader(), toy_loader(), ckpt_path=tmp_path / "run.ckpt")
    after = resumed.dataframe()
    assert after[after.phase == "train"].step.tolist() == list(range(1, 21))
    assert after[after.phase == "val"].step.tolist() == [5, 10, 15, 20]
    pd.testing.assert_frame_equal(after[after.step <= 10].reset_index(drop=True), before)


def test_a_resumed_run_with_other_sampling_and_bounding_keeps_the_history(tmp_path):
    first = MetricHistory(export_formats=())
    fit_toy(tmp_path, [first], ToyRegression(), max_steps=6).save_checkpoint(tmp_path / "run.ckpt")
    resumed = MetricHistory(every_n_steps=2, max_rows_per_metric=100, bounding="window", export_formats=())
    assert resumed.state_key == first.state_key
    toy_trainer(tmp_path, [resumed], max_steps=10).fit(ToyRegression(), toy_loader(), toy_loader(),
                                                       ckpt_path=tmp_path / "run.ckpt")
    assert resumed.dataframe("train/loss").step.tolist() == [1, 2, 3, 4, 5, 6, 8, 10]


def test_a_second_instance_is_refused_when_the_trainer_is_built():
    # Both would record every metric under one state key: Lightning refuses rather than lose one on save.
    with pytest.raises(RuntimeError, match="more than one stateful callback of type `MetricHistory`"):
        pl.Trainer(callbacks=[MetricHistory(), MetricHistory(every_n_steps=2)], logger=False)


def test_a_checkpoint_keyed_by_the_old_settings_resumes_the_history(tmp_path):
    first = MetricHistory(export_formats=())
    fit_toy(tmp_path, [first], ToyRegression(), max_steps=4).save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(tmp_path / "run.ckpt", weights_only=True)
    old_key = "MetricHistory{'every_n_steps': 1, 'bounding': 'downsample', 'max_rows_per_metric': 10000}"
    checkpoint["callbacks"][old_key] = checkpoint["callbacks"].pop(first.state_key)
    torch.save(checkpoint, tmp_path / "run.ckpt")
    resumed = MetricHistory(every_n_steps=2, export_formats=())
    toy_trainer(tmp_path, [resumed], max_steps=6).fit(ToyRegression(), toy_loader(), toy_loader(),
                                                      ckpt_path=tmp_path / "run.ckpt")
    assert resumed.dataframe("train/loss").step.tolist() == [1, 2, 3, 4, 6]


@pytest.mark.parametrize(("kwargs", "argument", "value"), [
    ({"every_n_steps": 0}, "every_n_steps", "0"),
    ({"every_n_steps": 1.5}, "every_n_steps", "1.5"),
    ({"max_rows_per_metric": 1}, "max_rows_per_metric", "1"),
    ({"bounding": "avg"}, "bounding", "'avg'"),
    ({"anomaly_window": True}, "anomaly_window", "True"),
    ({"min_history": 100}, "min_history", "100"),
    ({"z_threshold": 0}, "z_threshold", "0"),
    ({"jump_factor": float("nan")}, "jump_factor", "nan"),
    ({"export_formats": ["csv", "xlsx"]}, "export_formats", "'xlsx'"),
    ({"export_formats": "pdf"}, "export_formats", "'pdf'"),
])
def test_bad_arguments_raise_naming_the_argument_and_value(kwargs, argument, value):
    with pytest.raises(ValueError, match=rf"`{argument}`.*got {value}"):
        MetricHistory(**kwargs)


def test_bad_query_arguments_raise_naming_them(tmp_path):
    history = scripted_run(tmp_path, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"`window`.*got 0"):
        history.stats("val/x", window=0)
    with pytest.raises(ValueError, match=r"`formats`.*got 'xml'"):
        history.export(tmp_path, formats=("xml",))
    with pytest.raises(KeyError, match=r"'val/y'.*recorded: \['train/loss', 'val/x'\]"):
        history.stats("val/y")


def test_the_config_file_builds_the_callback_with_its_defaults():
    config = OmegaConf.load(Path(__file__).parents[2] / "conf" / "callbacks" / "metric_history.yaml")
    history = instantiate(config.metric_history)
    assert isinstance(history, MetricHistory) and history.export_formats == ("csv", "parquet", "json")
    defaults = {name: p.default for name, p in inspect.signature(MetricHistory).parameters.items()}
    arguments = {key: value for key, value in config.metric_history.items() if key != "_target_"}
    assert arguments.keys() == defaults.keys()
    assert all(arguments[key] == defaults[key] for key in defaults if key != "export_formats")
