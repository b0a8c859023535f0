"""Which trials of a study are feasible, and why a study may have no best trial.

A job that returns a :class:`~tuner_callbacks.objective_result.ObjectiveResult` has its constraints recorded on its
trial by the sweeper twice: as Optuna's list (system attribute ``constraints``, which ``FrozenTrial.constraints``,
``Study.best_trial``, the constrained samplers and optuna-dashboard read) and by name (user attribute
:data:`~tuner_callbacks.contract.ATTR_CONSTRAINTS`). Feasibility is Optuna's reading (every value ``<= 0``); the
names come from the user attribute, so reports say ``gate_stop_rate`` rather than ``0``.

Example:
    >>> import optuna
    >>> trial = optuna.trial.create_trial(value=6.1, system_attrs={"constraints": [0.2, -0.1]},
    ...     user_attrs={"constraints": {"gate_stop_rate": 0.2, "duration_ratio": -0.1}})
    >>> violated(trial), is_feasible(trial)
    (['gate_stop_rate'], False)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tuner_callbacks import contract

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


def trial_constraints(trial: FrozenTrial) -> dict[str, float]:
    """The trial's constraints by name ({} without any): Optuna's values, named by the sweeper's user attribute when
    it names as many; else Optuna's own keys (``"0"``, ``"1"``, ... for a study made with ``constraints_func``)."""
    values = trial.constraints
    names = trial.user_attrs.get(contract.ATTR_CONSTRAINTS)
    if isinstance(names, dict) and len(names) == len(values):
        return {str(name): float(value) for name, value in zip(names, values.values(), strict=True)}
    return {str(key): float(value) for key, value in values.items()}


def violated(trial: FrozenTrial) -> list[str]:
    """The names of the constraints the trial violates (value > 0), in their order."""
    return [name for name, value in trial_constraints(trial).items() if value > 0]


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether the trial meets all its constraints (True for a trial without any), as ``Study.best_trial`` judges."""
    return all(value <= 0 for value in trial.constraints.values())


def infeasible_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The COMPLETE trials that violate a constraint: they have a value, but no best trial is chosen among them."""
    return [t for t in trials if t.state.name == "COMPLETE" and not is_feasible(t)]


def no_best_reason(study: optuna.Study) -> str | None:
    """Why the study has no best trial (single objective) or Pareto front, or None when it has one."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        return "no trial has completed"
    infeasible = infeasible_trials(complete)
    if len(infeasible) < len(complete):
        return None
    counts = Counter(name for trial in infeasible for name in violated(trial))
    which = ", ".join(f"{name} in {count}" for name, count in counts.most_common())
    return (f"none of the {len(complete)} completed trials is feasible: each violates a constraint ({which}), "
            "and only a trial whose constraints are all <= 0 can be the best")
