"""``stop_when``: the rules that end a sweep before ``n_trials`` when it has stopped paying.

``{no_improvement: {trials: K, min_delta: X}}``: the last K finished trials (run in this study, any state) did not
beat the best value before them by more than X. ``{target: V}``: a trial reached V or better in the study's
direction. Both judge the values of feasible trials only: a trial that violates a constraint is no result to stop
on. ``{max_seconds: S}``: the study's current run (its first worker's start; _study_run) has lasted S seconds. The
rules read the study's records, so every worker of a study comes to the same decision; the first one that does
records it in the study, and every worker launches no new trial once it is recorded, letting the running ones
finish.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._errors import SweepError, sweeper_keys
from tuner_callbacks import contract
from tuner_callbacks import options as check
from tuner_callbacks.report.feasibility import is_feasible

_KEY = "hydra.sweeper.stop_when"
_RULES = ("no_improvement", "target", "max_seconds")

@dataclass(frozen=True)
class StopRules:
    no_improvement_trials: int | None = None
    min_delta: float = 0.0
    target: float | None = None
    max_seconds: float | None = None

    @classmethod
    def from_config(cls, settings: Mapping[str, Any] | None, directions: Sequence[str]) -> StopRules:
        """The rules of ``stop_when``; SweepError naming ``hydra.sweeper.stop_when.<key>`` for a bad one."""
        with sweeper_keys(prefix=""):
            rules = check.mapping(_KEY, settings or None, dict.fromkeys(_RULES))
            if rules is None:
                return cls()
            rules = {name: value for name, value in rules.items() if value is not None}
            for name in ("no_improvement", "target"):
                if name in rules and len(directions) > 1:
                    raise SweepError(f"{_KEY}.{name} needs a single-objective study; this one has directions "
                                     f"{list(directions)}")
            trials, min_delta = None, 0.0
            if "no_improvement" in rules:
                rule = check.mapping(f"{_KEY}.no_improvement", rules["no_improvement"],
                                     {"trials": check.REQUIRED, "min_delta": 0.0})
                trials = check.integer(f"{_KEY}.no_improvement.trials", rule["trials"], low=1)
                min_delta = check.number(f"{_KEY}.no_improvement.min_delta", rule["min_delta"], low=0)
            target = check.number(f"{_KEY}.target", rules.get("target"), optional=True)
            max_seconds = check.number(f"{_KEY}.max_seconds", rules.get("max_seconds"), low=0, low_open=True,
                                       optional=True)
        return cls(trials, float(min_delta), None if target is None else float(target),
                   None if max_seconds is None else float(max_seconds))

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.no_improvement_trials, self.target, self.max_seconds))

    def reason(self, study: optuna.Study, seconds: float) -> str | None:
        """Why the sweep should launch no more trials, or None; ``seconds``: how long the study's run has lasted."""
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return f"max_seconds: {seconds:.0f} s since the study's run started, the budget was {self.max_seconds:g} s"
        if self.target is None and self.no_improvement_trials is None:
            return None
        trials = study.get_trials(deepcopy=False)
        minimize = study.direction == optuna.study.StudyDirection.MINIMIZE
        if self.target is not None:
            reached = [t for t in trials if _scored(t)
                       and (t.value <= self.target if minimize else t.value >= self.target)]
            if reached:
                first = min(reached, key=lambda t: t.number)
                return f"target: trial {first.number} reached {first.value:.6g} ({'<=' if minimize else '>='} " \
                       f"{self.target:g})"
        if self.no_improvement_trials is not None:
            return self._no_improvement(trials, minimize)
        return None

    def _no_improvement(self, trials: Sequence[optuna.trial.FrozenTrial], minimize: bool) -> str | None:
        run_here = sorted((t for t in trials if t.state.is_finished() and not _not_run_here(t)),
                          key=lambda t: (t.datetime_complete or datetime.datetime.min, t.number))
        k = self.no_improvement_trials
        if len(run_here) < k:
            return None
        window = {t.number for t in run_here[-k:]}
        best = min if minimize else max
        before = [t.value for t in trials if _scored(t) and t.number not in window]
        recent = [t.value for t in trials if _scored(t) and t.number in window]
        if not before:
            return None
        best_before = best(before)
        if recent:
            gain = best_before - best(recent) if minimize else best(recent) - best_before
            if gain > self.min_delta:
                return None
        return (f"no_improvement: the last {k} finished trials did not improve on the best value {best_before:.6g} "
                f"by more than {self.min_delta:g}")


def _scored(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial whose value counts: COMPLETE and feasible (as for ``Study.best_trial``)."""
    return trial.state == TrialState.COMPLETE and is_feasible(trial)


def _not_run_here(trial: optuna.trial.FrozenTrial) -> bool:
    """Copied from another study, or left behind by a killed sweep: not a trial this study ran to its end."""
    attrs = trial.user_attrs
    return bool(attrs.get(contract.ATTR_WARM_STARTED_FROM) or attrs.get(contract.ATTR_INTERRUPTED))
