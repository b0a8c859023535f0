"""Every callback, Tacotron2Module and train(cfg) under ``pytorch_lightning.Trainer`` and ``lightning.pytorch.Trainer``.

Both packages are installed here (``lightning`` comes with the ``dev`` extra), as in many users' environments: each
test runs once per package, with that package's Trainer, loggers and ModelCheckpoint, and checks what the
callbacks did, the MLflow parts included (a logger of the other package used to be ignored without a word).
"""

from __future__ import annotations

import importlib

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from tacotron2_lightning.media import ValidationMedia
from tests.helpers.batches import tiny_config
from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
from tests.helpers.toy_module import toy_loader, toy_regression_on, toy_trainer
from tuner_callbacks.alerts import TelegramAlerts
from tuner_callbacks.early_stopping import SmartEarlyStopping
from tuner_callbacks.history import MetricHistory
from tuner_callbacks.param_scheduler import ParamScheduler
from tuner_callbacks.progress_bar import StepProgressBar
from tuner_callbacks.pruning import TrialPruning
from tuner_callbacks.registry import ModelRegistry, Registry
from tuner_callbacks.stop_reason import get_stop_reason

PACKAGES = ["pytorch_lightning", "lightning.pytorch"]


@pytest.fixture(params=PACKAGES)
def package(request):
    return request.param


def lightning(package: str, module: str = ""):
    return importlib.import_module(f"{package}.{module}" if module else package)


def every_callback(tmp_path, package, api, trial):
    """One of each tuner callback, plus the package's own ModelCheckpoint, keyed by a short name."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return {
        "scheduler": ParamScheduler({"weight": {"target": "module.loss_weight", "strategy": "linear", "start": 1.0,
                                                "end": 0.5, "total_steps": 4}}),
        "stopping": SmartEarlyStopping("val/loss", patience=2, verbose=False),
        "history": MetricHistory(),
        "pruning": TrialPruning(monitor="val/loss", trial=trial),
        "alerts": TelegramAlerts(token=TOKEN, chat_id=CHAT_ID, base_url=api.base_url, min_interval_s=0.0,
                                 backoff_s=0.05, check_timeout_s=2.0, timeout_s=2.0, flush_timeout_s=5.0,
                                 every_n_validations=100, metrics=["val/loss"]),
        "registry": ModelRegistry("toy", tracking_uri=uri, artifact_location=str(tmp_path / "artifacts")),
        "bar": StepProgressBar(),
        "checkpoint": lightning(package, "callbacks").ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True),
    }


def test_a_toy_module_with_every_callback(tmp_path, package):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = lightning(package, "loggers").MLFlowLogger(experiment_name="toy", tracking_uri=uri,
                                                        artifact_location=str(tmp_path / "mlruns"))
    study = optuna.create_study()
    with FakeBotApi() as api:
        callbacks = every_callback(tmp_path, package, api, study.ask())
        trainer = toy_trainer(tmp_path, list(callbacks.values()), package=package, logger=logger, max_steps=10,
                              enable_checkpointing=True, enable_progress_bar=True)
        module = toy_regression_on(package)(scripted={"val/loss": [3.0, 2.0, 2.5, 2.6, 2.7, 2.8]})
        trainer.fit(module, toy_loader(), toy_loader(n=8))

    assert isinstance(trainer, lightning(package).Trainer)
    # Early stopping: best at validation 2, two without improvement after it.
    assert trainer.global_step == 4 and get_stop_reason(trainer).source == "early_stopping"
    # The scheduler drove the module's attribute: linear 1.0 -> 0.5 over 4 steps, last set at step 3.
    assert module.loss_weight == pytest.approx(0.625)
    # The pruner saw every validation, by global step.
    assert study.trials[0].intermediate_values == pytest.approx({1: 3.0, 2: 2.0, 3: 2.5, 4: 2.6})
    # Alerts: the run's start and end reached the Bot API.
    sent = [message.text.split("\n")[0] for message in api.sent]
    assert "Training started" in sent[0] and "Training finished" in sent[-1] and "steps: 4" in api.sent[-1].text
    # The Trainer took our bar as its progress bar, and added no second one.
    progress_bars = [c for c in trainer.callbacks if isinstance(c, lightning(package, "callbacks").ProgressBar)]
    assert trainer.progress_bar_callback is callbacks["bar"] and progress_bars == [callbacks["bar"]]
    # MLflow: the history exports reached this package's MLFlowLogger's run, and the registry used that run.
    client = MlflowClient(tracking_uri=uri)
    exported = sorted(a.path for a in client.list_artifacts(logger.run_id, "metric_history"))
    assert exported == [f"metric_history/metric_history.{f}" for f in ("csv", "json", "parquet")]
    versions = Registry(uri).versions("toy")
    assert versions and {v.run_id for v in versions} == {logger.run_id}
    assert Registry(uri).client.get_model_version_by_alias("toy", "champion").tags["monitor_value"] == "2.0"
    # The checkpoint holds every callback's state, and resuming under the same package restores it.
    state = torch.load(trainer.checkpoint_callback.last_model_path, weights_only=False)["callbacks"]
    assert {key.split("{")[0] for key in state} >= {"ParamScheduler", "SmartEarlyStopping", "MetricHistory",
                                                    "TrialPruning", "TelegramAlerts", "ModelRegistry"}


def test_callbacks_resume_from_a_checkpoint(tmp_path, package):
    history = MetricHistory()
    checkpoint = lightning(package, "callbacks").ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = toy_trainer(tmp_path, [history, checkpoint], package=package, max_steps=3, enable_checkpointing=True)
    trainer.fit(toy_regression_on(package)(), toy_loader(), toy_loader(n=8))

    resumed = MetricHistory()
    checkpoint = lightning(package, "callbacks").ModelCheckpoint(dirpath=tmp_path / "ckpt2", save_last=True)
    trainer = toy_trainer(tmp_path, [resumed, checkpoint], package=package, max_steps=5, enable_checkpointing=True)
    trainer.fit(toy_regression_on(package)(), toy_loader(), toy_loader(n=8), ckpt_path=str(tmp_path / "ckpt/last.ckpt"))
    steps = resumed.dataframe("val/loss", "val")["step"].tolist()
    assert steps == [1, 2, 3, 4, 5]  # the first fit's rows came back with the checkpoint


def tacotron2_classes(package: str):
    flavour = importlib.import_module(f"tacotron2_lightning.flavours.{package}")
    return flavour.Tacotron2Module, flavour.Tacotron2DataModule


def test_tacotron2_with_validation_media_and_mlflow(tmp_path, package, shared_cache):
    module_class, data_class = tacotron2_classes(package)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = lightning(package, "loggers").MLFlowLogger(experiment_name="t2", tracking_uri=uri,
                                                        artifact_location=str(tmp_path / "mlruns"))
    data = data_class(batch_size=4, val_size=4, cache_dir=shared_cache, builtin={"size": 12})  # the built-in data
    module = module_class(tiny_config(n_mel_channels=80), health_utterances=1)
    checkpoint = lightning(package, "callbacks").ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    callbacks = [ValidationMedia(griffin_lim_iters=2), checkpoint]
    trainer = lightning(package).Trainer(accelerator="cpu", default_root_dir=tmp_path, logger=logger, max_steps=2,
                                         val_check_interval=2, callbacks=callbacks, enable_progress_bar=False,
                                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1)
    trainer.fit(module, datamodule=data)

    assert trainer.global_step == 2 and "val/loss" in trainer.callback_metrics
    media = sorted(a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(logger.run_id,
                                                                                  "validation/step_000002"))
    assert {p.rsplit("/", 1)[1] for p in media} >= {"alignment.png", "mel.png", "sample.wav"}
    # A checkpoint of one package's module loads into the other's, weights and settings alike.
    for other in PACKAGES:
        loaded = tacotron2_classes(other)[0].load_from_checkpoint(checkpoint.last_model_path)
        assert isinstance(loaded, lightning(other).LightningModule)
        assert torch.equal(loaded.model.embedding.weight, module.model.embedding.weight)


@pytest.mark.slow
def test_train_py_runs_on_lightning_pytorch(make_cfg):
    from tacotron2_lightning.app.training import train

    metrics, built = train(make_cfg(["lightning=lightning.pytorch", "trainer.max_steps=2",
                                     "trainer.val_check_interval=2"]))
    import lightning.pytorch

    assert isinstance(built["trainer"], lightning.pytorch.Trainer)
    assert isinstance(built["module"], lightning.pytorch.LightningModule)
    assert isinstance(built["trainer"].checkpoint_callback, lightning.pytorch.callbacks.ModelCheckpoint)
    assert built["trainer"].global_step == 2 and "val/loss" in metrics
    summary = built["summary"]
    run = MlflowClient(tracking_uri=summary["mlflow_tracking_uri"]).get_run(summary["mlflow_run_id"])
    assert "val/loss" in run.data.metrics
