"""LearningCurvePruner: prunes a trial whose learning curve, extrapolated to the end of its budget, is very unlikely to
beat the study's best."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy.special import stdtr  # Student-t CDF, without scipy.stats' second of import
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks._learning_curves import MODELS, Extrapolation, extrapolate

log = logging.getLogger(__name__)

_MIN_CALIBRATION = 2  # extrapolation errors of finished trials needed to estimate their spread


class LearningCurvePruner(optuna.pruners.BasePruner):
    """Prunes a trial only when its curve, extrapolated to the end of the budget, is very unlikely to beat the best
    feasible finished trial.

    Median-style pruners compare a trial with the others *at the same step*, so a late bloomer (slow start, better
    end) is cut before it blooms. This pruner asks where the trial's own curve is heading instead:

    - **Model.** At each report it fits each of ``models`` to the trial's reports by least squares: ``power_law``
      ``a + b * x**(-c)`` and ``exponential`` ``a + b * exp(-c x)``, with ``x = (step + 1) / (max_resource + 1)``
      (the fraction of the budget, never 0), and reads the fitted curve at the budget's end (x = 1).
    - **Uncertainty, two ways.** The fit's own: its parameters' covariance and its residual noise, as a Student-t
      with ``points - 3`` degrees of freedom (few or noisy points, wide tails). The study's track record: each
      COMPLETE trial's curve cut at the current step, fitted and extrapolated to its own last step the same way,
      against the value it actually finished with; the mean of those errors corrects the bias of the extrapolation
      and their spread is its honest predictive error (a Student-t with ``n - 1`` degrees of freedom for ``n``
      errors). A fit's covariance alone trusts its model; errors measured on finished trials do not.
    - **Decision.** The probability of finishing better than the best is taken as the *largest* of these estimates,
      over both uncertainties and every model: the trial is pruned only when each of them puts it below
      ``prune_probability``. A pruner that errs should err towards training a trial too long, not towards
      discarding the one that would have won.
    - **Guard rails.** Nothing is pruned before ``n_startup_trials`` COMPLETE trials, before step ``n_warmup_steps``,
      with fewer than ``min_points`` finite reports, with fewer than two finished trials whose curves calibrate the
      current step, when no finished trial is feasible (constraints all ``<= 0``), at or after ``max_resource``
      (nothing is left to save), or when a fit fails or comes out degenerate. After the warm-up a NaN or infinite
      latest report prunes, as Optuna's own pruners do with NaN: a diverged run does not come back.

    Single objective only (Optuna's ``should_prune`` supports nothing else); a maximised study is handled by
    flipping the sign. Calibration fits are cached per finished trial and step, so each costs once per process.

    Args:
        max_resource: The step a trial's budget ends at; ``"auto"``: the largest last step among COMPLETE trials.
            While it is unknown, nothing is pruned.
        prune_probability: Prune when the probability of beating the best is below this.
        n_startup_trials: COMPLETE trials before any pruning.
        n_warmup_steps: No trial is pruned before this step.
        min_points: Finite reports a curve needs before it is fitted (at least 4: three parameters and one degree of
            freedom for the noise).
        models: Curve families to fit, from ``power_law`` and ``exponential``.

    Example:
        >>> pruner = LearningCurvePruner(max_resource=600, prune_probability=0.05, n_warmup_steps=300)
        >>> study = optuna.create_study(direction="minimize", pruner=pruner)
    """

    def __init__(self, max_resource: int | str = "auto", prune_probability: float = 0.05, n_startup_trials: int = 5,
                 n_warmup_steps: int = 0, min_points: int = 5,
                 models: Sequence[str] = ("power_law", "exponential")) -> None:
        self.max_resource, self.prune_probability = max_resource, prune_probability
        self.n_startup_trials, self.n_warmup_steps, self.min_points = n_startup_trials, n_warmup_steps, min_points
        options.check("max_resource", max_resource, max_resource == "auto" or _is_int(max_resource)
                      and max_resource >= 1, "'auto' or an integer >= 1")
        options.number("prune_probability", prune_probability, low=0, high=1, low_open=True, high_open=True)
        options.integer("n_startup_trials", n_startup_trials, low=0)
        options.integer("n_warmup_steps", n_warmup_steps, low=0)
        options.integer("min_points", min_points, low=4)
        options.check("models", models, not isinstance(models, str) and isinstance(models, Sequence) and bool(models)
                      and all(m in MODELS for m in models), f"a non-empty list of {sorted(MODELS)}")
        self.models = tuple(str(m) for m in models)
        # (study, finished trial, step, horizon, model) -> its prediction: a finished curve never changes
        self._calibration: dict[tuple[Any, ...], float | None] = {}

    @override
    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        step = trial.last_step
        if len(completed) < self.n_startup_trials or step is None or step < self.n_warmup_steps:
            return False
        if not math.isfinite(trial.intermediate_values[step]):
            log.info("Trial %d pruned at step %d: it reported %s", trial.number, step, trial.intermediate_values[step])
            return True
        horizon = self._horizon(completed)
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0  # below: lower is better
        best = min((sign * t.value for t in completed if _feasible(t) and math.isfinite(t.value)), default=None)
        steps, values = _finite_points(trial, step)
        if horizon is None or step >= horizon or best is None or len(steps) < self.min_points:
            return False
        estimates = []
        for name in self.models:
            own = extrapolate(MODELS[name], _fraction(steps, horizon), sign * values, 1.0)
            if own is None:
                return False
            estimates.append((name, own.mean, _beats(best, own.mean, own.scale, own.dof)))
            if estimates[-1][2] >= self.prune_probability:
                return False
            errors = self._errors(study, completed, name, step, horizon, sign)
            if len(errors) < _MIN_CALIBRATION:
                return False
            n, bias, spread = len(errors), float(np.mean(errors)), float(np.std(errors, ddof=1))
            estimates.append((f"{name} calibrated on {n} trials", own.mean + bias,
                              _beats(best, own.mean + bias, spread * math.sqrt(1 + 1 / n), n - 1)))
            if estimates[-1][2] >= self.prune_probability:
                return False
        log.info("Trial %d pruned at step %d of %d: heading for %s; chance of beating the best (%.4g): %s",
                 trial.number, step, horizon, ", ".join(f"{sign * mean:.4g} ({name})" for name, mean, _ in estimates),
                 sign * best, ", ".join(f"{p:.2g}" for *_, p in estimates))
        return True

    def _horizon(self, completed: Sequence[FrozenTrial]) -> int | None:
        if self.max_resource != "auto":
            return self.max_resource
        return max((t.last_step for t in completed if t.last_step is not None), default=None)

    def _errors(self, study: optuna.Study, completed: Sequence[FrozenTrial], name: str, step: int, horizon: int,
                sign: float) -> list[float]:
        """How far each COMPLETE trial's curve, cut at ``step`` and extrapolated to its last step, was from its
        final value (lower is better); trials that end by ``step`` or whose cut curve does not fit are left out."""
        errors = []
        for finished in completed:
            if finished.last_step is None or finished.last_step <= step or not math.isfinite(finished.value):
                continue
            key = (study.study_name, finished.number, step, horizon, name)
            if key not in self._calibration:
                self._calibration[key] = self._predict(finished, name, step, horizon, sign)
            if self._calibration[key] is not None:
                errors.append(sign * finished.value - self._calibration[key])
        return errors

    def _predict(self, finished: FrozenTrial, name: str, step: int, horizon: int, sign: float) -> float | None:
        steps, values = _finite_points(finished, step)
        if len(steps) < self.min_points:
            return None
        end = float((finished.last_step + 1) / (horizon + 1))
        fit: Extrapolation | None = extrapolate(MODELS[name], _fraction(steps, horizon), sign * values, end)
        return None if fit is None else fit.mean


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _feasible(trial: FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())  # NaN is not <= 0: infeasible


def _finite_points(trial: FrozenTrial, up_to: int) -> tuple[np.ndarray, np.ndarray]:
    points = sorted((s, v) for s, v in trial.intermediate_values.items() if s <= up_to and math.isfinite(v))
    return np.array([s for s, _ in points], dtype=float), np.array([v for _, v in points], dtype=float)


def _fraction(steps: np.ndarray, horizon: int) -> np.ndarray:
    return (steps + 1) / (horizon + 1)


def _beats(best: float, mean: float, scale: float, dof: int) -> float:
    """P(final < best) for final ~ mean + scale * Student-t(dof); a zero scale is certainty either way."""
    if scale <= 0:
        return 1.0 if mean < best else 0.0
    return float(stdtr(dof, (best - mean) / scale))
