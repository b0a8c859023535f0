"""A seeded sampler whose random draws for a trial depend on the sampler's seed and the trial's number.

A sampler built once per process with ``seed: 1234`` replays the same random sequence in every process: a sweep
resumed after a kill asks trial 2 with trial 0's values, and two workers started together on one study ask the same
values side by side. Trial numbers are handed out by the storage, once each, so a seed derived from
``(seed, trial number)`` is different for every trial of the study, whichever process asks it, and a new study run
by one process gets the same trials for the same seed as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed for trial ``number`` of a sampler seeded with ``seed`` (well mixed: neighbours differ)."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


class PerTrialSeed(BaseSampler):
    """Delegates to ``build(seed)``, a sampler rebuilt before each trial with :func:`trial_seed`.

    Rebuilding costs nothing that matters: Optuna's samplers keep what they learn in the study, not in themselves.
    """

    def __init__(self, build: Callable[[int], BaseSampler], seed: int) -> None:
        self.seed, self._build = seed, build
        self.sampler = build(seed)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.sampler = self._build(trial_seed(self.seed, trial.number))
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
