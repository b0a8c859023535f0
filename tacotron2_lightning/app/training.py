"""``train(cfg)``: builds data, model, callbacks, loggers and trainer from a Hydra config and fits.

``train.py`` at the repository root is the thin Hydra entry point around it; tests and sweeps call it too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from tacotron2_lightning.app.config_validation import ConfigError, validate_config
from tacotron2_lightning.checkpoint import load_nvidia_checkpoint
from tacotron2_lightning.lightning_compat import check_same_package, lightning_bases, pl
from tuner_callbacks import contract
from tuner_callbacks.milestone import MetricMilestone
from tuner_callbacks.mlflow_utils import (
    find_mlflow_logger,
    flatten_for_params,
    logger_tracking_uri,
    prepare_sqlite_store,
    redact_url,
)

log = logging.getLogger(__name__)

RUN_ID_FILE = "mlflow_run_id.txt"  # written in each run folder, so a resumed run continues its MLflow run


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiates every ``_target_`` node of a config group such as ``callbacks`` or ``logger``."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def find_last_checkpoint(cfg: DictConfig) -> Path:
    """The newest ``last.ckpt`` among this task's runs: what ``ckpt_path=last`` resumes."""
    runs = Path(cfg.paths.log_dir) / "runs" / cfg.task_name
    candidates = sorted(runs.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"ckpt_path=last: no last.ckpt under {runs}/*/checkpoints/ (has this task run before?)")
    return candidates[-1]


def _continue_mlflow_run(cfg: DictConfig, checkpoint: Path) -> None:
    run_id_file = checkpoint.parent.parent / RUN_ID_FILE
    logger_cfg = cfg.get("logger") or {}
    if "mlflow" in logger_cfg and logger_cfg.mlflow.get("run_id") is None and run_id_file.is_file():
        with open_dict(cfg):
            cfg.logger.mlflow.run_id = run_id_file.read_text().strip()
        log.info("Resuming MLflow run %s", cfg.logger.mlflow.run_id)


def _resolve_ckpt_path(cfg: DictConfig) -> str | None:
    if cfg.get("ckpt_path") is None:
        return None
    checkpoint = find_last_checkpoint(cfg) if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    _continue_mlflow_run(cfg, checkpoint)
    log.info("Resuming from %s", checkpoint)
    return str(checkpoint)


def _record_run(trainer: pl.Trainer, loggers: list[Any], cfg: DictConfig) -> None:
    params = flatten_for_params(OmegaConf.to_container(cfg, resolve=True))
    params.pop("hydra", None)
    for logger in loggers:
        try:
            logger.log_hyperparams(params)
        except Exception as error:  # e.g. MLflow refusing a changed value when a run is resumed
            log.warning("%s did not take the config as params: %s", type(logger).__name__, error)
    mlflow_logger = find_mlflow_logger(loggers)
    run_id = mlflow_logger.run_id if mlflow_logger is not None else None
    if run_id and trainer.is_global_zero:
        Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.paths.output_dir) / RUN_ID_FILE).write_text(run_id)


def _milestones(trainer: pl.Trainer) -> list[MetricMilestone]:
    return [callback for callback in trainer.callbacks if isinstance(callback, MetricMilestone)]


def _summary(trainer: pl.Trainer, loggers: list[Any]) -> dict[str, Any]:
    checkpoint = trainer.checkpoint_callback
    best_score = getattr(checkpoint, "best_model_score", None)
    mlflow_logger = find_mlflow_logger(loggers)
    return {
        "global_step": trainer.global_step,
        "best_metric": getattr(checkpoint, "monitor", None),
        "best_score": float(best_score) if best_score is not None else None,
        "best_checkpoint": getattr(checkpoint, "best_model_path", None) or None,
        "last_checkpoint": getattr(checkpoint, "last_model_path", None) or None,
        "mlflow_run_id": mlflow_logger.run_id if mlflow_logger is not None else None,
        "mlflow_tracking_uri": logger_tracking_uri(mlflow_logger) if mlflow_logger is not None else None,
    }


class _TrialIdentity(NamedTuple):
    study_name: str
    storage: str | None
    number: int
    artifact_dir: str | None = None


def _trial(cfg: DictConfig) -> _TrialIdentity | None:
    """The sweep trial this job runs as (the ``trial`` node the sweeper sets), or None outside a sweep."""
    node = cfg.get(contract.TRIAL_CONFIG_NODE)
    if node is None or node.get(contract.TRIAL_CONFIG_NUMBER) is None:
        return None
    return _TrialIdentity(node.get(contract.TRIAL_CONFIG_STUDY_NAME), node.get(contract.TRIAL_CONFIG_STORAGE),
                          int(node.get(contract.TRIAL_CONFIG_NUMBER)), node.get(contract.TRIAL_CONFIG_ARTIFACT_DIR))


def _tag_trial_run(cfg: DictConfig) -> None:
    """Tags the MLflow run of a sweep trial with its study and number: the join key from MLflow to Optuna."""
    trial, logger_cfg = _trial(cfg), cfg.get("logger") or {}
    if trial is None or "mlflow" not in logger_cfg:
        return
    with open_dict(cfg):
        tags = dict(logger_cfg.mlflow.get("tags") or {})
        tags.update(contract.trial_tags(trial.study_name, trial.number))
        cfg.logger.mlflow.tags = tags


def _latest_media(trainer: pl.Trainer) -> dict[str, Any]:
    """The files of the last validation that :class:`ValidationMedia` drew ({} without that callback)."""
    from tacotron2_lightning.media import ValidationMedia

    for callback in trainer.callbacks:
        if isinstance(callback, ValidationMedia):
            return callback.latest
    return {}


_ATTACHED_MEDIA = ("alignment", "inference_alignment", "mel", "audio")  # ValidationMedia.latest's keys


def _attach_media(optuna_trial: Any, artifact_dir: str, media: Mapping[str, Any]) -> None:
    """Uploads the last validation's plots and audio to the trial's ``optuna.artifacts`` store, where
    ``optuna-dashboard --artifact-dir`` shows them beside the trial."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    files = [Path(media[key]) for key in _ATTACHED_MEDIA if media.get(key)]
    if not files:
        return
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(artifact_dir)
    for path in files:
        if not path.is_file():  # Optuna would record the artifact before failing to read it: a dead link
            log.warning("Could not attach %s to trial %s: no such file", path, optuna_trial.number)
            continue
        try:
            upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=optuna_trial)
        except Exception as error:  # one unreadable file must not cost the trial its other media
            log.warning("Could not attach %s to trial %s: %s", path, optuna_trial.number, error)


def _record_trial(cfg: DictConfig, summary: dict[str, Any], media: Mapping[str, Any] | None = None,
                  metrics: Mapping[str, float] | None = None) -> None:
    """Stores the run's identity and outcome in its Optuna trial's user attributes (the join key from Optuna to MLflow
    and the checkpoints, and the final value of every finite metric it logged), and attaches
    the last validation's ``media`` as the trial's artifacts when the sweeper named an artifact folder; the sweeper,
    the sweep report and optuna-dashboard read them."""
    trial = _trial(cfg)
    if trial is None or trial.storage is None:
        return
    from tuner_callbacks.optuna_storage import load_trial

    attributes = {
        contract.ATTR_MLFLOW_RUN_ID: summary["mlflow_run_id"], contract.ATTR_OUTPUT_DIR: str(cfg.paths.output_dir),
        contract.ATTR_BEST_CHECKPOINT: summary["best_checkpoint"],
        contract.ATTR_LAST_CHECKPOINT: summary["last_checkpoint"],
        contract.ATTR_GLOBAL_STEP: summary["global_step"], contract.ATTR_MAX_STEPS: cfg.trainer.get("max_steps"),
        contract.ATTR_METRICS: {name: value for name, value in (metrics or {}).items() if math.isfinite(value)},
    }
    uri = summary["mlflow_tracking_uri"]
    if uri and redact_url(uri) == uri:  # the study may be read by anyone with the report: no passwords in it
        attributes[contract.ATTR_MLFLOW_TRACKING_URI] = uri
    try:
        optuna_trial = load_trial(trial.study_name, trial.storage, trial.number)
        for key, value in attributes.items():
            optuna_trial.set_user_attr(key, value)
        if trial.artifact_dir and media:
            _attach_media(optuna_trial, trial.artifact_dir, media)
    except Exception as error:  # the trained model matters more than its bookkeeping
        log.warning("Could not record the run in trial %s of study %s: %s", trial.number, trial.study_name, error)


def _tracking_uris(cfg: DictConfig) -> set[str]:
    """The MLflow stores the run's loggers and callbacks name (``tracking_uri`` keys)."""
    nodes = [*(cfg.get("logger") or {}).values(), *(cfg.get("callbacks") or {}).values()]
    return {str(node["tracking_uri"]) for node in nodes
            if isinstance(node, DictConfig) and node.get("tracking_uri") is not None}


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Trains as configured; returns (final metrics, the objects built, plus a ``summary`` dict)."""
    validate_config(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    ckpt_path = _resolve_ckpt_path(cfg)

    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.model)
    if cfg.get("init_from"):
        report = load_nvidia_checkpoint(module.model, cfg.init_from, ignore_layers=list(cfg.get("ignore_layers", [])))
        log.info("Warm start from %s (kept fresh: %s)", cfg.init_from, report["ignored"] or "nothing")
    for uri in _tracking_uris(cfg):
        prepare_sqlite_store(uri)  # parallel trials would race to create a new store's tables
    callbacks = instantiate_group(cfg.get("callbacks"))
    _tag_trial_run(cfg)
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:
        # Lightning refuses a LearningRateMonitor without a logger; `logger=none` should just work.
        monitors = lightning_bases("callbacks.LearningRateMonitor")
        callbacks = [c for c in callbacks if not isinstance(c, monitors)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    # The config check reads classes; this sees what a _target_ that is a function built. Lightning's own refusal of
    # the other package's module would not say which import to use.
    check_same_package(module, trainer, "model")
    check_same_package(datamodule, trainer, "data")
    _record_run(trainer, loggers, cfg)

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    summary = _summary(trainer, loggers)
    if trainer.is_global_zero:
        _record_trial(cfg, summary, _latest_media(trainer), metrics)
        _print_summary(summary, metrics, cfg.get("optimized_metric"), _milestones(trainer))
    return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule, "summary": summary}


_SPEECH_METRICS = ("val/cepstral_decorrelation_sl", "val/mcd")


def _print_summary(summary: dict[str, Any], metrics: Mapping[str, float], optimized: str | None,
                   milestones: Sequence[MetricMilestone] = ()) -> None:
    """The end-of-run table: where things are, the optimised metric, and each milestone's step (the first
    validation at which all its conditions held) with the last value of every metric it watches."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Training summary", show_header=False)
    rows = {**summary, **({optimized: metrics.get(optimized, math.nan)} if optimized else {})}
    # How the model speaks on its own: the sweep objective's metric and MCD, when the run decoded free-running.
    rows.update({f"{name} (last)": metrics[name] for name in _SPEECH_METRICS if name in metrics})
    for milestone in milestones:
        rows[f"{milestone.name} at step"] = (
            str(milestone.reached_at) if milestone.reached_at is not None else "not reached")
        rows.update({f"{name} (last; {_bounds_text(bounds)})": metrics.get(name, milestone.latest[name])
                     for name, bounds in milestone.conditions.items()})
    for key, value in rows.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else redact_url(str(value)))
    Console(stderr=True).print(table)


def _bounds_text(bounds: Mapping[str, float]) -> str:
    if "min" in bounds and "max" in bounds:
        return f"{bounds['min']:g}-{bounds['max']:g}"
    return f">= {bounds['min']:g}" if "min" in bounds else f"<= {bounds['max']:g}"
