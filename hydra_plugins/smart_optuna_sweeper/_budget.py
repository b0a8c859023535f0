"""``n_trials`` as a cap on the whole study, held across sweeper processes that share it (PostgreSQL, a journal
file, or one SQLite file).

The budget holds the study's WAITING and RUNNING trials and the finished ones that count, in the order of their
numbers: the storage hands numbers out atomically, so every worker sees the same order. The first ``n_trials`` of
them lie within the cap. A worker asks for a trial only while there is room (or a waiting trial within the cap),
and checks the trial it got at once: when workers asked for the last places together, the ones whose numbers rank
beyond the cap are given back unrun, so exactly ``n_trials`` count. A trial's rank never grows (trials created
later have larger numbers; trials only leave the budget), so a trial within the cap stays there.

Left out of the budget: trials copied by ``warm_start_from``, trials a dead worker left RUNNING (failed with
``interrupted``), and trials given back (failed with ``not_run`` naming why). A given-back trial that was a waiting
(enqueued) one is enqueued again; one that the sweeper's seeding enqueued twice (the run's defaults, an
``enqueue_trials`` entry: two workers seeding a new study at once) is not. Values a user enqueues twice run twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial, TrialState

from hydra_plugins.smart_optuna_sweeper._seeding import ENQUEUED_BY
from tuner_callbacks import contract

_FIXED = "fixed_params"  # where Optuna keeps an enqueued trial's values


class Refusal(NamedTuple):
    reason: str  # the trial's user attribute not_run
    requeue: bool  # enqueue its values again (a waiting trial that lay beyond the cap)


def in_budget(trial: FrozenTrial) -> bool:
    attrs = trial.user_attrs
    return not (attrs.get(contract.ATTR_WARM_STARTED_FROM) or attrs.get(contract.ATTR_NOT_RUN)
                or attrs.get(contract.ATTR_INTERRUPTED))


def _budget(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return sorted((t for t in trials if in_budget(t)), key=lambda t: t.number)


def has_room(trials: Sequence[FrozenTrial], n_trials: int) -> bool:
    """Whether asking may yield a trial within the cap: a free place, or a waiting trial within the cap."""
    budget = _budget(trials)
    return len(budget) < n_trials or any(t.state == TrialState.WAITING for t in budget[:n_trials])


def refusal(trials: Sequence[FrozenTrial], number: int, n_trials: int) -> Refusal | None:
    """Why trial ``number``, just asked, must be given back; None when it may run. ``trials`` is read after the
    ask."""
    budget = _budget(trials)
    trial = next(t for t in trials if t.number == number)
    fixed = trial.system_attrs.get(_FIXED)
    if sum(1 for t in budget if t.number < number) >= n_trials:
        return Refusal(f"asked beyond n_trials={n_trials}: another worker took the last place", bool(fixed))
    seeded = trial.system_attrs.get(ENQUEUED_BY)
    if fixed and seeded:
        for earlier in budget:
            if (earlier.number < number and earlier.system_attrs.get(ENQUEUED_BY) == seeded
                    and earlier.system_attrs.get(_FIXED) == fixed):
                return Refusal(f"{seeded} enqueued twice (workers seeding the study at once): trial "
                               f"{earlier.number} runs the same values", False)
    return None


def stopped(trials: Sequence[FrozenTrial], number: int, reason: str) -> Refusal:
    """The refusal of trial ``number``, asked just as the study's run stopped (``reason``): a waiting (enqueued)
    trial is enqueued again, for a later run."""
    trial = next(t for t in trials if t.number == number)
    return Refusal(f"the study stopped as it was asked: {reason}", bool(trial.system_attrs.get(_FIXED)))


def give_back(study: Any, trial: FrozenTrial, refused: Refusal) -> None:
    """Fails ``trial`` as not run (it does not count), enqueuing its values again when ``refused.requeue``."""
    study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_NOT_RUN, refused.reason)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    if refused.requeue:
        study.enqueue_trial(dict(trial.system_attrs[_FIXED]), user_attrs=dict(trial.user_attrs),
                            skip_if_exists=False)
