"""``optimization_results.yaml``: hydra-optuna-sweeper's file (best params and value, or the Pareto front),
plus each best trial's number, checkpoint and MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf


def _trial_record(trial: Any) -> dict[str, Any]:
    return {"number": trial.number, "params": dict(trial.params),
            "checkpoint": trial.user_attrs.get("best_checkpoint") or trial.user_attrs.get("last_checkpoint"),
            "mlflow_run_id": trial.user_attrs.get("mlflow_run_id")}


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


def promote_best_trial_model(study: Any, registry_config: Any) -> int | None:
    """Moves the registry alias to the model the study's best trial registered (its last version), and returns
    that version; None when there is no single best trial or it registered nothing.

    Each trial's ModelRegistry moves the alias by its own monitored metric, which need not be the study's
    objective (a composite, say): after the sweep the alias names the model of the trial the study ranks best.
    """
    from tuner_callbacks.registry import Registry
    from tuner_callbacks.registry.client import TAG_STUDY_NAME, TAG_TRIAL_NUMBER

    if len(study.directions) > 1:
        return None
    try:
        best = study.best_trial
    except ValueError:  # nothing completed
        return None
    registry = Registry(registry_config.get("tracking_uri"))
    name, alias = registry_config.get("model_name"), registry_config.get("alias") or "champion"
    versions = [v for v in registry.client.search_model_versions(f"name='{name}'")
                if v.tags.get(TAG_TRIAL_NUMBER) == str(best.number) and v.tags.get(TAG_STUDY_NAME) == study.study_name]
    if not versions:
        return None
    version = max(int(v.version) for v in versions)
    registry.client.set_registered_model_alias(name, alias, str(version))
    return version
