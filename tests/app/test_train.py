"""train.py and train(cfg): every config group composes, runs log to MLflow, resume continues, bad keys are named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tacotron2_lightning.app.config_validation import ConfigError, validate_config
from tacotron2_lightning.app.training import train
from tacotron2_lightning.lightning_compat import LightningPackageError
from tests.helpers.data_factory import write_ljspeech
from tests.helpers.train_configs import CONF, ROOT, TINY


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", ["model", "data", "trainer", "callbacks", "logger", "experiment", "paths", "hparams"])
def test_every_option_of_every_config_group_composes(group, make_cfg, tmp_path):
    ljspeech = write_ljspeech(tmp_path / "lj", ["one", "two"])
    (tmp_path / "list.txt").write_text("lj/wavs/UT-0000.wav|one\n")
    options = group_options(group)
    assert options, f"conf/{group} has no options"
    for option in options:
        overrides = [f"{group}={option}"]
        if group == "data" and option == "ljspeech" or group == "experiment" and option == "ljspeech_nvidia":
            overrides.append(f"data.path={ljspeech}")
        if group == "data" and option == "filelist":
            overrides.append(f"data.train_filelist={tmp_path / 'list.txt'}")
        validate_config(make_cfg(overrides, tiny=False))  # resolves every value, checks every target's keys


def test_logger_options_combine(make_cfg):
    cfg = make_cfg(["logger=[mlflow,csv,tensorboard]"])
    assert set(cfg.logger) == {"mlflow", "csv", "tensorboard"}


def test_fast_dev_run(make_cfg):
    metrics, objects = train(make_cfg(["+trainer.fast_dev_run=true", "logger=none"]))
    assert objects["trainer"].global_step == 1
    assert "train/loss" in metrics


def test_a_short_run_logs_metrics_params_and_media_to_mlflow(make_cfg, tmp_path):
    cfg = make_cfg()
    metrics, objects = train(cfg)
    run_id = objects["summary"]["mlflow_run_id"]
    mlflow.set_tracking_uri(cfg.paths.mlflow_tracking_uri)
    runs = mlflow.search_runs(experiment_names=[cfg.task_name])
    assert list(runs["run_id"]) == [run_id]
    run = MlflowClient().get_run(run_id)
    for name in ("train/loss", "val/loss", "val/alignment_score", "val/diagonality", "val/gate_stop_rate",
                 "val/alignment_error", "val/alignment_error_ratio",  # the built-in data has word timings
                 "train/align_loss", "val/align_loss",  # the recipe's forward-sum loss
                 "sched/module.attention_prior_weight"):  # and the prior's schedule (0 while the prior is off)
        assert name in run.data.metrics, name
    assert run.data.params["model/model_config/decoder_rnn_dim"] == "64"
    assert run.data.params["data/batch_size"] == "4"
    artifacts = {a.path for a in MlflowClient().list_artifacts(run_id, "validation/step_000004")}
    assert {"validation/step_000004/alignment.png", "validation/step_000004/mel.png",
            "validation/step_000004/sample.wav"} <= artifacts
    assert Path(objects["summary"]["best_checkpoint"]).is_file()
    assert metrics["val/loss"] == pytest.approx(run.data.metrics["val/loss"], rel=1e-5)


def test_resume_from_last_continues_the_step_count_and_the_mlflow_run(make_cfg):
    _, first = train(make_cfg())
    assert first["trainer"].global_step == 4
    _, second = train(make_cfg(["ckpt_path=last", "trainer.max_steps=8"]))
    assert second["trainer"].global_step == 8
    assert second["summary"]["mlflow_run_id"] == first["summary"]["mlflow_run_id"]
    media = second["trainer"].callbacks
    assert any(getattr(c, "validations", 0) == 4 for c in media)  # callback state came back with the checkpoint


def test_warm_start_from_a_checkpoint_with_ignore_layers(make_cfg):
    _, first = train(make_cfg(["logger=none"]))
    last = first["summary"]["last_checkpoint"]
    _, second = train(make_cfg([f"init_from={last}", "ignore_layers=[embedding.weight]", "trainer.max_steps=1",
                                "logger=none"]))
    assert second["trainer"].global_step == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.learning_rate=fast", "model.learning_rate: expected float, got 'fast'"),
        ("trainer.max_steps=many", "trainer.max_steps: expected int, got 'many'"),
        ("+model.dropout=0.1",
         "model.dropout: not an argument of tacotron2_lightning.flavours.pytorch_lightning.Tacotron2Module"),
        ("lightning=lightning_pytorch", "lightning: 'lightning_pytorch' is not a Lightning package"),
        ("trainer._target_=lightning.pytorch.Trainer",
         "trainer._target_: 'lightning.pytorch.Trainer' is from lightning.pytorch but lightning=pytorch_lightning; "
         "set lightning=lightning.pytorch"),
        ("model._target_=tacotron2_lightning.flavours.lightning.pytorch.Tacotron2Module",
         "model._target_: 'tacotron2_lightning.flavours.lightning.pytorch.Tacotron2Module' is the lightning.pytorch "
         "Tacotron2Module but lightning=pytorch_lightning; use _target_: "
         "tacotron2_lightning.flavours.pytorch_lightning.Tacotron2Module"),
        ("data.path=/no/such/LJSpeech", "data.path: '/no/such/LJSpeech' does not exist"),
        ("init_from=/no/such.pt", "init_from: checkpoint file '/no/such.pt' does not exist"),
        ("+model.model_config.decoder_rnn=3", "Unknown Tacotron2Config key\\(s\\) \\['decoder_rnn'\\]"),
        ("model.align_loss_start_step=1.5", "model.align_loss_start_step: expected int, got 1.5"),
        ("model.align_loss_start_step=soon", "model.align_loss_start_step: expected int, got 'soon'"),
        ("model.attention_prior_weight=-1", "attention_prior_weight must be a finite number >= 0, got -1"),
        ("model.align_loss_weight=nan", "align_loss_weight must be a finite number >= 0, got nan"),
        ("model.attention_prior_scaling=0", "attention_prior_scaling must be a finite number > 0, got 0"),
        ("model.model_config.n_frames_per_step=40",  # fewer decoder steps than symbols: no monotonic path
         "model.align_loss_weight=1.0: the forward-sum loss needs at least one decoder step per text symbol"),
    ],
)
def test_bad_overrides_fail_before_training_naming_the_key(override, message, make_cfg):
    with pytest.raises((ConfigError, Exception), match=message):
        train(make_cfg([override]))


@pytest.mark.parametrize(("key", "target"), [("model", "tacotron2_lightning.Tacotron2Module"),
                                             ("data", "tacotron2_lightning.data.Tacotron2DataModule")])
def test_the_default_classes_with_lightning_pytorch_name_the_import_to_use(key, target, make_cfg):
    name = target.rpartition(".")[2]
    with pytest.raises(ConfigError, match=re.escape(
            f"{key}._target_: '{target}' is the pytorch_lightning {name} but lightning=lightning.pytorch; use "
            f"_target_: tacotron2_lightning.flavours.lightning.pytorch.{name}, or "
            f"tacotron2_lightning.flavours.${{lightning}}.{name} to follow the lightning key")):
        train(make_cfg(["lightning=lightning.pytorch", f"{key}._target_={target}"]))


def pytorch_lightning_module(**kwargs):
    """A ``_target_`` that is a function: the config check cannot tell its package, ``train`` checks what it built."""
    from tacotron2_lightning import Tacotron2Module

    return Tacotron2Module(**kwargs)


def test_a_module_of_the_other_package_built_by_a_function_is_refused_before_fit(make_cfg):
    with pytest.raises(LightningPackageError, match=re.escape(
            "model: Tacotron2Module is a pytorch_lightning class, but the Trainer is a lightning.pytorch.Trainer, "
            "which takes only lightning.pytorch modules and data: use `from tacotron2_lightning.flavours.lightning."
            "pytorch import Tacotron2Module`")):
        train(make_cfg(["lightning=lightning.pytorch", f"model._target_={__name__}.pytorch_lightning_module",
                        "logger=none"]))


def test_missing_required_data_path_is_named(make_cfg):
    with pytest.raises(ConfigError, match="missing: \\['data.path'\\]"):
        train(make_cfg(["data=ljspeech"], tiny=False))


def test_unknown_key_is_refused_by_hydra_naming_it(make_cfg):
    with pytest.raises(Exception, match="model.learning_rat"):
        make_cfg(["model.learning_rat=0.1"])


@pytest.mark.slow
def test_train_py_runs_and_names_a_metric_that_was_not_logged(tmp_path, shared_cache):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SMART_TUNER_CACHE": str(shared_cache)}
    # One process (each costs seconds of imports): it trains, then fails on the metric, keeping what it trained.
    bad = subprocess.run([sys.executable, str(ROOT / "train.py"), *TINY, f"paths.log_dir={tmp_path}/outputs",
                          "trainer.max_steps=2", "logger=csv", "optimized_metric=val/nope"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "optimized_metric='val/nope' was not logged" in bad.stderr, bad.stderr[-3000:]
    assert list((tmp_path / "outputs" / "runs" / "train").glob("*/checkpoints/last.ckpt"))


def test_run_params_mask_secrets_and_database_passwords():
    from tacotron2_lightning.app.training import flatten_for_params

    flat = flatten_for_params({"alerts": {"token": "123:ABC", "chat_id": 5}, "api_key": "k",
                               "trial": {"storage": "postgresql://tuner:p@ss@db:5432/optuna", "number": 3},
                               "paths": {"mlflow_tracking_uri": "http://mlflow:5000"}})
    assert flat == {"alerts/token": "***", "alerts/chat_id": 5, "api_key": "***",
                    "trial/storage": "postgresql://tuner:***@db:5432/optuna", "trial/number": 3,
                    "paths/mlflow_tracking_uri": "http://mlflow:5000"}


def test_train_py_loads_the_training_stack_only_in_the_process_that_trains():
    # A sweep's driver under the joblib, Ray or submitit launcher imports train.py to name the task; Lightning's
    # import (seconds) belongs to the jobs.
    probe = "import sys, train; print(sorted({'pytorch_lightning', 'lightning', 'torch', 'mlflow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
