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
