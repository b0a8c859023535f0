"""What a job returns to a sweeper when its value comes with constraints.

A training job that is judged by one metric *and* must meet some conditions (an utterance must stop on its gate,
speech must last about as long as the recording) returns an :class:`ObjectiveResult`: the study's value(s) are the
metric alone, and each condition is a constraint in Optuna's convention, feasible when ``<= 0``. The sweeper records
the constraints on the trial, where Optuna's constrained samplers (TPE, NSGA-II/III, GP), ``Study.best_trial`` and
optuna-dashboard read them, so the best trial of a study is its best *feasible* trial.

Example:
    >>> result = ObjectiveResult(values=(6.1,), constraints={"gate_stop_rate": 0.95 - 0.99})
    >>> result.feasible
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ObjectiveResult:
    """The study's value(s) and the trial's constraints (name -> value; feasible when every value is ``<= 0``)."""

    values: tuple[float, ...]
    constraints: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = self.values if isinstance(self.values, Sequence) else (self.values,)
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        constraints = {str(name): float(value) for name, value in dict(self.constraints).items()}
        for name, value in constraints.items():
            if math.isnan(value):
                raise ValueError(f"constraint {name!r} is NaN: a constraint must be a number (feasible when <= 0)")
        object.__setattr__(self, "constraints", constraints)

    @property
    def feasible(self) -> bool:
        return all(value <= 0 for value in self.constraints.values())

    def __float__(self) -> float:
        """The single value, so that code expecting a number (``float(train(cfg))``) keeps working."""
        if len(self.values) != 1:
            raise TypeError(f"an ObjectiveResult with {len(self.values)} values has no single float value")
        return self.values[0]
