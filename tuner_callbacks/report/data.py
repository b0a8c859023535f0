"""The numbers of a sweep report, from Optuna's frozen trials: one row per trial, the best trial, and the training
that pruning saved. Pure functions, so the report's arithmetic is tested without drawing anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner_callbacks import contract
from tuner_callbacks.report.feasibility import is_feasible, trial_constraints, violated

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

# Trial user attributes the job and the sweeper set; every one may be missing (an older sweep, a trial that failed
# early).
RUN_ID, OUTPUT_DIR, GLOBAL_STEP, MAX_STEPS, ERROR = (contract.ATTR_MLFLOW_RUN_ID, contract.ATTR_OUTPUT_DIR,
                                                     contract.ATTR_GLOBAL_STEP, contract.ATTR_MAX_STEPS,
                                                     contract.ATTR_ERROR)
DEFAULTS = contract.ATTR_DEFAULTS


# States a report shows for FAIL trials that did not fail: given back unrun (asked past n_trials by racing workers, or
# as the study stopped) and interrupted (their worker died; a sweep with stale_trials=requeue runs their values again).
GIVEN_BACK, INTERRUPTED = "GIVEN_BACK", "INTERRUPTED"


def shown_state(trial: FrozenTrial) -> str:
    """The trial's state as reports and summaries show it: Optuna's, except :data:`GIVEN_BACK` and
    :data:`INTERRUPTED` for the FAIL trials that were given back unrun or whose worker died."""
    if trial.state.name == "FAIL":
        if trial.user_attrs.get(contract.ATTR_NOT_RUN):
            return GIVEN_BACK
        if trial.user_attrs.get(contract.ATTR_INTERRUPTED):
            return INTERRUPTED
    return trial.state.name


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
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING, GIVEN_BACK, INTERRUPTED (shown_state)
    values: tuple[float, ...] | None
    params: dict[str, Any]
    duration_s: float | None
    steps: int | None
    max_steps: int | None
    note: str  # why it failed, where it was pruned, which constraints it violates
    run_id: str | None
    constraints: dict[str, float]  # {} for a trial without constraints
    feasible: bool | None  # None unless COMPLETE with constraints


def trial_rows(trials: Sequence[FrozenTrial]) -> list[TrialRow]:
    """One row per trial, in trial order."""
    rows = []
    for trial in sorted(trials, key=lambda t: t.number):
        steps = trained_steps(trial)
        note, state = "", shown_state(trial)
        if state == GIVEN_BACK:
            note = f"given back unrun, not counted: {trial.user_attrs[contract.ATTR_NOT_RUN]}"
        elif trial.state.name == "FAIL":
            note = str(trial.user_attrs.get(ERROR) or trial.system_attrs.get("fail_reason") or "failed")
        elif trial.state.name == "PRUNED":
            note = f"pruned at step {steps}" if steps is not None else "pruned"
        copied = trial.user_attrs.get(contract.ATTR_WARM_STARTED_FROM)
        if isinstance(copied, dict):
            note = f"copied from study {copied.get('study')} trial {copied.get('trial')}"
        constraints = trial_constraints(trial)
        feasible = is_feasible(trial) if constraints and trial.state.name == "COMPLETE" else None
        if feasible is False:
            note = "; ".join(filter(None, [f"infeasible: violates {', '.join(violated(trial))}", note]))
        if trial.user_attrs.get(DEFAULTS) is True:
            note = "; ".join(filter(None, ["the configured values (defaults)", note]))
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        rows.append(TrialRow(trial.number, state, tuple(trial.values) if trial.values else None,
                             dict(trial.params), duration, steps, _as_int(trial.user_attrs.get(MAX_STEPS)), note,
                             trial.user_attrs.get(RUN_ID), constraints, feasible))
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


def recorded_metrics(trial: FrozenTrial) -> dict[str, float]:
    """The final metrics the trial's job recorded (user attribute ``metrics``; {} when it recorded none), numbers
    only."""
    metrics = trial.user_attrs.get(contract.ATTR_METRICS)
    if not isinstance(metrics, dict):
        return {}
    return {str(name): float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def metrics_table(metrics: dict[int, dict[str, float]]) -> tuple[list[int], list[list[object]]]:
    """Trials' metrics (trial number -> name -> value) as a table of one row per metric name (sorted) and one column
    per trial (in trial order, those with any metric): (the trial numbers, rows of [name, value or "-", ...])."""
    numbers = sorted(number for number, values in metrics.items() if values)
    names = sorted({name for number in numbers for name in metrics[number]})
    rows = [[name, *(_format_metric(metrics[number].get(name)) for number in numbers)] for name in names]
    return numbers, rows


def _format_metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best feasible trial (single objective) or the feasible Pareto-optimal trials in trial order; [] before
    any completes, or when every completed trial violates a constraint (:func:`~.feasibility.no_best_reason` says
    which)."""
    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        return []
    if len(study.directions) == 1:
        try:
            return [study.best_trial]  # Optuna skips infeasible trials ...
        except ValueError:  # ... and raises when none is feasible
            return []
    return sorted(study.best_trials, key=lambda t: t.number)  # feasible trials only, [] when none is


def defaults_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The finished trial that ran the run's own configured values (user attribute ``defaults``; the newest, should
    the configuration have changed between runs of the sweep), or None."""
    marked = [t for t in trials if t.user_attrs.get(DEFAULTS) is True and t.state.is_finished()]
    return max(marked, key=lambda t: t.number, default=None)


@dataclass(frozen=True)
class GainOverDefaults:
    """How much better the search did than the configured values: ``best - defaults`` (negative is better when
    minimizing), and that relative to ``|defaults|`` (None when the defaults' value is 0). The best trial is the
    best feasible one; the defaults trial may itself violate constraints (``defaults_violated`` names them), and then
    its value is no bar a feasible trial had to clear."""

    defaults_trial: int
    defaults_value: float
    best_trial: int
    best_value: float
    absolute: float
    relative: float | None
    defaults_violated: tuple[str, ...] = ()

    def describe(self) -> str:
        """``"best 0.41 (trial 7) vs 0.52 for the configured values (trial 0): -0.11 (-21.2%)"``, then
        ``"; the configured values are infeasible (they violate gate_stop_rate)"`` when they are."""
        relative = f" ({self.relative:+.1%})" if self.relative is not None else ""
        infeasible = (f"; the configured values are infeasible (they violate {', '.join(self.defaults_violated)})"
                      if self.defaults_violated else "")
        return (f"best {self.best_value:.4g} (trial {self.best_trial}) vs {self.defaults_value:.4g} for the "
                f"configured values (trial {self.defaults_trial}): {self.absolute:+.4g}{relative}{infeasible}")


def gain_over_defaults(study: optuna.Study) -> GainOverDefaults | None:
    """The gain of the study's best feasible trial over its defaults trial; None for multi-objective studies, or
    when either has no value (the defaults trial was pruned or failed, no trial completed or none is feasible)."""
    if len(study.directions) != 1:
        return None
    trials = study.get_trials(deepcopy=False)
    defaults = defaults_trial(trials)
    best = best_trials(study)
    if defaults is None or defaults.state.name != "COMPLETE" or not best:
        return None
    (best,) = best
    absolute = best.value - defaults.value
    relative = absolute / abs(defaults.value) if defaults.value else None
    return GainOverDefaults(defaults.number, defaults.value, best.number, best.value, absolute, relative,
                            tuple(violated(defaults)))


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
