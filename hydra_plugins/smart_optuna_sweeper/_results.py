"""``optimization_results.yaml``: hydra-optuna-sweeper's file (best params and value, or the Pareto front),
plus each best trial's number, checkpoint, MLflow run and constraints, the gain over the defaults trial, the
infeasible trials, and why the sweep stopped early. The best trial is the best *feasible* one, here and for the
registry's alias."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from hydra_plugins.smart_optuna_sweeper._budget import in_budget
from tuner_callbacks import contract
from tuner_callbacks.atomic_file import write_text_atomically
from tuner_callbacks.report.data import best_trials, defaults_trial, gain_over_defaults
from tuner_callbacks.report.feasibility import infeasible_trials, is_feasible, no_best_reason, trial_constraints

log = logging.getLogger(__name__)


def _trial_record(trial: Any) -> dict[str, Any]:
    return {"number": trial.number, "params": dict(trial.params),
            "checkpoint": trial.user_attrs.get(contract.ATTR_BEST_CHECKPOINT)
            or trial.user_attrs.get(contract.ATTR_LAST_CHECKPOINT),
            "mlflow_run_id": trial.user_attrs.get(contract.ATTR_MLFLOW_RUN_ID), **_feasibility(trial)}


def _feasibility(trial: Any) -> dict[str, Any]:
    """``{constraints: {name: value}, feasible: bool}`` for a trial with constraints, else {}."""
    constraints = trial_constraints(trial)
    return {"constraints": constraints, "feasible": is_feasible(trial)} if constraints else {}


def write_results(study: Any, sweep_dir: Path, storage_url: str, stopped_early: str | None = None) -> Path:
    """Writes ``<sweep_dir>/optimization_results.yaml`` and returns its path. Besides hydra-optuna-sweeper's fields:
    ``defaults_trial: {number, state, value}`` (the trial of the run's configured values),
    ``gain_over_defaults: {absolute, relative}`` (best minus that value, and relative to it; single objective, when
    both have a value), ``trials: {state: count}`` (the study's trials that count towards n_trials, every worker's),
    ``not_run: <count>`` and ``not_run_trials: [numbers]`` (trials given back unrun), ``interrupted: <count>``
    (trials whose worker died) and ``stopped_early: <reason>`` (a stop_when rule fired).

    When jobs return constraints: the best trial is the best feasible one; every trial record (``best_trial``,
    ``solutions``, ``defaults_trial``) has ``constraints: {name: value}`` and ``feasible``; ``infeasible: <count>``
    and ``infeasible_trials: [numbers]`` name the completed trials that violate a constraint; with none feasible,
    ``best_params``/``best_value`` (or ``solutions``) are empty and ``no_best`` says why."""
    results: dict[str, Any] = {"name": "smart_optuna", "study_name": study.study_name, "storage": storage_url}
    best = best_trials(study)
    if len(study.directions) > 1:
        results["solutions"] = [{**_trial_record(t), "values": list(t.values)} for t in best]
    elif best:
        results.update(best_params=dict(best[0].params), best_value=best[0].value, best_trial=_trial_record(best[0]))
    else:
        results["best_params"], results["best_value"] = None, None
    if not best:
        results["no_best"] = no_best_reason(study) or "no trial has completed"
    defaults = defaults_trial(study.get_trials(deepcopy=False))
    if defaults is not None:
        values = list(defaults.values) if defaults.values else None
        results["defaults_trial"] = {"number": defaults.number, "state": defaults.state.name,
                                     **({"value": values[0] if values else None} if len(study.directions) == 1
                                        else {"values": values}), **_feasibility(defaults)}
    gain = gain_over_defaults(study)
    if gain is not None:
        results["gain_over_defaults"] = {"absolute": gain.absolute, "relative": gain.relative}
        if gain.defaults_violated:
            results["gain_over_defaults"]["defaults_violated"] = list(gain.defaults_violated)
    infeasible = [t.number for t in infeasible_trials(study.get_trials(deepcopy=False))]
    if infeasible:
        results["infeasible"] = len(infeasible)
        results["infeasible_trials"] = infeasible
    counted = [t for t in study.get_trials(deepcopy=False) if in_budget(t)]
    results["trials"] = dict(sorted(Counter(t.state.name.lower() for t in counted).items()))
    not_run = [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(contract.ATTR_NOT_RUN)]
    if not_run:
        # Given back unrun (asked beyond n_trials by racing workers, or as the study stopped): FAIL in Optuna, with
        # the reason in user attr not_run; neither run nor counted, nor failures.
        results["not_run"] = len(not_run)
        results["not_run_trials"] = not_run
    interrupted = [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(contract.ATTR_INTERRUPTED)]
    if interrupted:
        results["interrupted"] = len(interrupted)  # their worker died; not counted (re-run with stale_trials=requeue)
    if stopped_early:
        results["stopped_early"] = stopped_early
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / "optimization_results.yaml"
    # Workers sharing a sweep folder each write it at their end: whole files, the last one's kept.
    write_text_atomically(path, OmegaConf.to_yaml(OmegaConf.create(results)))
    return path


def promote_best_trial_model(study: Any, model_name: str, alias: str, tracking_uri: str | None) -> int | None:
    """Moves ``alias`` of registered model ``model_name`` to the model the study's best feasible trial registered
    (its last version), and returns that version; None, with a log line saying why the alias stays where it is,
    when there is no single best trial (multi-objective, nothing completed, no trial feasible) or it registered
    nothing.

    Each trial's ModelRegistry moves the alias by its own monitored metric, which need not be the study's
    objective (a composite, say): after the sweep the alias names the model of the trial the study ranks best.
    Versions are matched to trials by the tags every registered version of a trial carries
    (:data:`~tuner_callbacks.contract.TAG_STUDY`, :data:`~tuner_callbacks.contract.TAG_TRIAL`).
    """
    from tuner_callbacks.registry import Registry

    if len(study.directions) > 1:
        log.info("Registry: %s@%s not moved: a multi-objective study has no single best trial", model_name, alias)
        return None
    best = best_trials(study)
    if not best:
        log.warning("Registry: %s@%s not moved: %s", model_name, alias, no_best_reason(study))
        return None
    (best,) = best
    registry = Registry(tracking_uri)
    versions = [v for v in registry.client.search_model_versions(f"name='{model_name}'")
                if v.tags.get(contract.TAG_TRIAL) == str(best.number)
                and v.tags.get(contract.TAG_STUDY) == study.study_name]
    if not versions:
        log.warning("Registry: %s@%s not moved: the best trial (%d) registered no version of %s", model_name, alias,
                    best.number, model_name)
        return None
    version = max(int(v.version) for v in versions)
    registry.client.set_registered_model_alias(model_name, alias, str(version))
    return version
