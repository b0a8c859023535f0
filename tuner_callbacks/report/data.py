"""The numbers of a sweep report, from Optuna's frozen trials: one row per trial, the best trial, and the training
that pruning saved. Pure functions, so the report's arithmetic is tested without drawing anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner_callbacks import contract

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

# Trial user attributes the job and the sweeper set; every one may be missing (an older sweep, a trial that failed
# early).
RUN_ID, OUTPUT_DIR, GLOBAL_STEP, MAX_STEPS, ERROR = (contract.ATTR_MLFLOW_RUN_ID, contract.ATTR_OUTPUT_DIR,
                                                     contract.ATTR_GLOBAL_STEP, contract.ATTR_MAX_STEPS,
                                                     contract.ATTR_ERROR)


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def trained_steps(trial: FrozenTrial) -> int | None:
    """Steps the trial trained: its ``global_step`` attribute, else the last step it reported a value at."""
    steps = _as_int(trial.user_attrs.get(GLOBAL_STEP))
    if steps is None and trial.intermediate_values:
        steps = max(trial.intermediate_values)
    return steps


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    values: tuple[float, ...] | None
    params: dict[str, Any]
    duration_s: float | None
    steps: int | None
    max_steps: int | None
    note: str  # why it failed, where it was pruned
    run_id: str | None


def trial_rows(trials: Sequence[FrozenTrial]) -> list[TrialRow]:
    """One row per trial, in trial order."""
    rows = []
    for trial in sorted(trials, key=lambda t: t.number):
        steps = trained_steps(trial)
        note = ""
        if trial.state.name == "FAIL":
            note = str(trial.user_attrs.get(ERROR) or trial.system_attrs.get("fail_reason") or "failed")
        elif trial.state.name == "PRUNED":
            note = f"pruned at step {steps}" if steps is not None else "pruned"
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        rows.append(TrialRow(trial.number, trial.state.name, tuple(trial.values) if trial.values else None,
                             dict(trial.params), duration, steps, _as_int(trial.user_attrs.get(MAX_STEPS)), note,
                             trial.user_attrs.get(RUN_ID)))
    return rows


@dataclass(frozen=True)
class PruningSavings:
    """Training that pruning saved; see :func:`pruning_savings` for how it is counted."""

    pruned: int  # pruned trials
    counted: list[int]  # numbers of the pruned trials whose savings are known
    uncounted: list[int]  # pruned trials missing global_step or max_steps: left out of the sums
    steps_saved: int
    steps_trained: int  # by all trials, as far as known
    fraction: float | None  # steps_saved / (steps_trained + steps_saved)
    seconds_saved: float | None  # at each pruned trial's own speed (duration / steps trained)


def pruning_savings(trials: Sequence[FrozenTrial]) -> PruningSavings:
    """Steps saved = sum over pruned trials of (max_steps - steps trained), assuming each would otherwise have run
    its whole budget (an upper bound: early stopping might have ended some sooner). The fraction is of the steps
    the same trials would have trained without pruning: what they trained plus what was saved."""
    counted, uncounted, saved, seconds = [], [], 0, 0.0
    timed = False
    for trial in trials:
        if trial.state.name != "PRUNED":
            continue
        steps, budget = trained_steps(trial), _as_int(trial.user_attrs.get(MAX_STEPS))
        if steps is None or budget is None:
            uncounted.append(trial.number)
            continue
        counted.append(trial.number)
        saved += max(budget - steps, 0)
        if trial.duration is not None and steps > 0:
            seconds += max(budget - steps, 0) * trial.duration.total_seconds() / steps
            timed = True
    trained = sum(steps for steps in map(trained_steps, trials) if steps is not None)
    total = trained + saved
    return PruningSavings(len(counted) + len(uncounted), sorted(counted), sorted(uncounted), saved, trained,
                          saved / total if total else None, seconds if timed else None)


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto-optimal trials in trial order; [] before any completes."""
    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def objective_names(study: optuna.Study) -> list[str]:
    """The names the sweeper gave the objectives (``study.set_metric_names``), else "objective 0", ..."""
    names = study.metric_names
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
