"""WarmupPruner: an Optuna pruner that asks another one only from a global step on.

The sweeper wraps a pruner whose class has no ``n_warmup_steps`` of its own in it, and records it in the study
by this module's public name, so that the jobs rebuild it (:func:`tuner_callbacks.optuna_storage.pruner_from_record`).
"""

from __future__ import annotations

import optuna

from tuner_callbacks import options


class WarmupPruner(optuna.pruners.BasePruner):
    """Prunes only from global step ``n_warmup_steps`` on, and then when ``wrapped_pruner`` says so.

    The wrapped pruner is asked at every step (successive halving records its rungs as it goes); its earlier answers
    are ignored.

    Args:
        wrapped_pruner: the pruner that decides once the warm-up is over.
        n_warmup_steps: the first global step at which a trial may be pruned.

    Example:
        >>> pruner = WarmupPruner(optuna.pruners.WilcoxonPruner(), n_warmup_steps=300)
    """

    def __init__(self, wrapped_pruner: optuna.pruners.BasePruner, n_warmup_steps: int) -> None:
        options.integer("n_warmup_steps", n_warmup_steps, low=0)
        self.wrapped_pruner, self.n_warmup_steps = wrapped_pruner, n_warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        decision = self.wrapped_pruner.prune(study, trial)
        return bool(decision) and trial.last_step is not None and trial.last_step >= self.n_warmup_steps
