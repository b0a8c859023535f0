"""TrialPruning: reports a metric to an Optuna trial at every validation and stops a trial the pruner rejects."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks.lightning_compat import lightning_bases, pl, rank_zero_info, rank_zero_warn
from tuner_callbacks.stop_reason import StopReason, get_stop_reason, log_stop_reason, set_stop_reason


class TrialPruning(*lightning_bases("Callback")):
    """Reports ``monitor`` to an Optuna trial after every validation, by global step (so several validations
    per epoch each count), and stops training when the study's pruner says so.

    The trial is given directly (your own Optuna objective) or found from ``study_name``, ``storage`` and
    ``trial_number`` (what the ``smart_optuna`` sweeper passes each job as ``trial.*``). With neither, the
    callback does nothing, so it can stay in a config that also runs outside sweeps. Under DDP only rank
    zero talks to the study; its decision is broadcast. A pruned run ends normally with a
    :class:`~tuner_callbacks.StopReason` ``("pruning", "pruned")``; call :meth:`raise_if_pruned` (or let
    the sweeper read the reason) to turn it into ``optuna.TrialPruned``.

    ``objective`` reports a value computed from the metrics instead of one metric: the same function the trial
    will finally be judged by (a composite of several metrics, say), so the pruner compares trials on the signal
    the study optimises. It is called as ``objective(metrics, {"trainer": trainer, "module": pl_module})`` with
    the validation's metrics as floats; ``monitor`` then only names the value in messages.

    Example:
        >>> def objective(trial):
        ...     pruning = TrialPruning(monitor="val/loss", trial=trial)
        ...     trainer = pl.Trainer(callbacks=[pruning], max_steps=1000, val_check_interval=100)
        ...     trainer.fit(model, datamodule=data)
        ...     pruning.raise_if_pruned()
        ...     return trainer.callback_metrics["val/loss"].item()
    """

    def __init__(self, monitor: str = "val/loss", trial: Any = None, study_name: str | None = None,
                 storage: str | None = None, trial_number: int | None = None,
                 objective: Callable[[Mapping[str, float], Mapping[str, Any]], float] | None = None):
        options.text("monitor", monitor, allowed="a metric name")
        options.check("objective", objective, objective is None or callable(objective),
                      "a callable (metrics, objects) -> float")
        given = {"study_name": study_name, "storage": storage, "trial_number": trial_number}
        if trial is None and any(v is not None for v in given.values()) and any(v is None for v in given.values()):
            missing = [name for name, value in given.items() if value is None]
            raise ValueError(f"TrialPruning needs study_name, storage and trial_number together; missing {missing}")
        options.integer("trial_number", trial_number, low=0, optional=True)
        self.monitor, self.objective = monitor, objective
        self.study_name, self.storage, self.trial_number = study_name, storage, trial_number
        self._trial = trial
        self.pruned = False
        self.last_reported_step = -1
        self.last_value: float | None = None  # what was last reported, for the stop reason

    @property
    def active(self) -> bool:
        return self._trial is not None or self.trial_number is not None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor)

    def trial(self) -> Any:
        """The Optuna trial (loaded from the storage on first use)."""
        if self._trial is None and self.trial_number is not None:
            from tuner_callbacks.optuna_storage import load_trial

            self._trial = load_trial(self.study_name, self.storage, self.trial_number)
        return self._trial

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            rank_zero_info("TrialPruning: no trial given (not running under a sweeper): pruning is off")
        elif trainer.is_global_zero and len(self.trial().study.directions) > 1:
            # Loading the trial here fails at the start, naming the study, rather than at the first validation.
            rank_zero_warn("TrialPruning: Optuna cannot prune multi-objective studies; pruning is off")
            self._trial, self.trial_number = None, None

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self.active or self.pruned:
            return
        step = trainer.global_step
        prune = False
        if trainer.is_global_zero:
            value = self._value(trainer, pl_module)  # None: warned, nothing to report at this validation
            if value is not None and step > self.last_reported_step:  # a resumed trial never reports a step twice
                trial = self.trial()
                trial.report(value if math.isfinite(value) else math.inf, step)
                self.last_reported_step, self.last_value = step, value
                prune = trial.should_prune()
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            self._stop(trainer, step)

    def _value(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float | None:
        """What this validation reports: ``monitor``'s value, or ``objective`` of all metrics; None (with a
        warning) when it cannot be had."""
        metrics = trainer.callback_metrics
        if self.objective is None:
            value = metrics.get(self.monitor)
            if value is None:
                rank_zero_warn(f"TrialPruning: {self.monitor!r} was not logged at step {trainer.global_step}; "
                               f"logged: {sorted(metrics)}")
                return None
            return float(value)
        scalars = {name: float(v) for name, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
        try:
            return float(self.objective(scalars, {"trainer": trainer, "module": pl_module}))
        except Exception as error:  # e.g. a metric the objective needs is not logged at this validation
            rank_zero_warn(f"TrialPruning: the objective could not be computed at step {trainer.global_step}: "
                           f"{error}")
            return None

    def _stop(self, trainer: pl.Trainer, step: int) -> None:
        self.pruned = True
        trainer.should_stop = True
        value = self.last_value
        number = self.trial_number if self.trial_number is not None else getattr(self._trial, "number", "?")
        reason = StopReason("pruning", "pruned", f"trial {number} pruned at step {step}: {self.monitor}={value} is "
                            "worse than the pruner accepts at this step", step, self.monitor, value)
        if set_stop_reason(trainer, reason):
            rank_zero_info(f"TrialPruning: {reason.message}")
            log_stop_reason(trainer, reason)

    def raise_if_pruned(self) -> None:
        """Raises ``optuna.TrialPruned`` if this callback stopped the run: the end of an Optuna objective."""
        if self.pruned:
            import optuna

            raise optuna.TrialPruned(f"pruned at step {self.last_reported_step}")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"pruned": self.pruned, "last_reported_step": self.last_reported_step}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.pruned = state_dict.get("pruned", False)
        self.last_reported_step = state_dict.get("last_reported_step", -1)


def pruned_by_trial_pruning(trainer: pl.Trainer) -> bool:
    """Whether a pruner rejected the run's trial (even if another callback stopped the run in the same step)."""
    reason = get_stop_reason(trainer)
    return (reason is not None and reason.source == "pruning") or any(
        isinstance(callback, TrialPruning) and callback.pruned for callback in trainer.callbacks)
