"""``optimization_results.yaml``: hydra-optuna-sweeper's file (best params and value, or the Pareto front),
plus each best trial's number, checkpoint and MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tuner_callbacks import contract


def _trial_record(trial: Any) -> dict[str, Any]:
    return {"number": trial.number, "params": dict(trial.params),
            "checkpoint": trial.user_attrs.get(contract.ATTR_BEST_CHECKPOINT)
            or trial.user_attrs.get(contract.ATTR_LAST_CHECKPOINT),
            "mlflow_run_id": trial.user_attrs.get(contract.ATTR_MLFLOW_RUN_ID)}


def write_results(study: Any, sweep_dir: Path, storage_url: str) -> Path:
    results: dict[str, Any] = {"name": "smart_optuna", "study_name": study.study_name, "storage": storage_url}
    try:
        if len(study.directions) > 1:
            results["solutions"] = [{**_trial_record(t), "values": list(t.values)} for t in study.best_trials]
        else:
            best = study.best_trial
            results.update(best_params=dict(best.params), best_value=best.value, best_trial=_trial_record(best))
    except ValueError:  # no trial completed
        results["best_params"], results["best_value"] = None, None
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / "optimization_results.yaml"
    OmegaConf.save(OmegaConf.create(results), path)
    return path


def promote_best_trial_model(study: Any, model_name: str, alias: str, tracking_uri: str | None) -> int | None:
    """Moves ``alias`` of registered model ``model_name`` to the model the study's best trial registered (its last
    version), and returns that version; None when there is no single best trial or it registered nothing.

    Each trial's ModelRegistry moves the alias by its own monitored metric, which need not be the study's
    objective (a composite, say): after the sweep the alias names the model of the trial the study ranks best.
    Versions are matched to trials by the tags every registered version of a trial carries
    (:data:`~tuner_callbacks.contract.TAG_STUDY`, :data:`~tuner_callbacks.contract.TAG_TRIAL`).
    """
    from tuner_callbacks.registry import Registry

    if len(study.directions) > 1:
        return None
    try:
        best = study.best_trial
    except ValueError:  # nothing completed
        return None
    registry = Registry(tracking_uri)
    versions = [v for v in registry.client.search_model_versions(f"name='{model_name}'")
                if v.tags.get(contract.TAG_TRIAL) == str(best.number)
                and v.tags.get(contract.TAG_STUDY) == study.study_name]
    if not versions:
        return None
    version = max(int(v.version) for v in versions)
    registry.client.set_registered_model_alias(model_name, alias, str(version))
    return version
