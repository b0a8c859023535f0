"""MetricMilestone: the first validation at which several metrics all meet their bounds, as a step count.

"How many steps until the model works?" is the figure a recipe is judged by long before its loss settles: for
Tacotron2, the first validation at which free-running synthesis stops on its gate, speaks for about the right
length, and attends to the right words. This callback watches any set of validation metrics, each with a lower
and/or upper bound, and records the global step of the first validation at which all of them hold. It logs that
step once, as the metric ``milestone/<name>_step`` to every logger, and keeps it in its state (a resumed run does
not count again). It keeps the latest value of each watched metric for end-of-run summaries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks.lightning_compat import lightning_bases, pl, rank_zero_info

_BOUND_KEYS = ("min", "max")


def _check_bounds(monitor: Any, bounds: Any) -> dict[str, float]:
    options.check("conditions", monitor, isinstance(monitor, str) and monitor != "", "keyed by metric names")
    options.check(f"conditions.{monitor}", bounds, isinstance(bounds, Mapping) and bool(bounds)
                  and not set(bounds) - set(_BOUND_KEYS), "a map of 'min' and/or 'max' to numbers")
    checked = {key: float(options.number(f"conditions.{monitor}.{key}", value)) for key, value in bounds.items()}
    if checked.get("min", -math.inf) > checked.get("max", math.inf):
        raise ValueError(f"`conditions.{monitor}`: min {checked['min']} is above max {checked['max']}")
    return checked


class MetricMilestone(*lightning_bases("Callback")):
    """Records the first validation step at which every condition holds.

    Args:
        name: what the milestone is called; logged as ``milestone/<name>_step`` and part of the state key.
        conditions: metric name -> ``{"min": lower bound, "max": upper bound}`` (either or both, inclusive). A
            metric not logged at a validation fails its condition there.

    Attributes:
        reached_at: the global step of that validation, or None while not reached.
        latest: the latest value of each watched metric (NaN before it is logged).

    Example:
        >>> aligned = MetricMilestone("aligned", {"val/gate_stop_rate": {"min": 0.95},
        ...                                       "val/duration_ratio": {"min": 0.85, "max": 1.15}})
    """

    def __init__(self, name: str, conditions: Mapping[str, Mapping[str, float]]):
        super().__init__()
        options.check("name", name, isinstance(name, str) and name.replace("_", "").isalnum(),
                      "a word (letters, digits, _)")
        options.check("conditions", conditions, isinstance(conditions, Mapping) and bool(conditions),
                      "a map of metric names to bounds")
        self.name = name
        self.conditions = {monitor: _check_bounds(monitor, bounds) for monitor, bounds in conditions.items()}
        self.reached_at: int | None = None
        self.latest: dict[str, float] = {monitor: math.nan for monitor in self.conditions}

    @property
    def metric_name(self) -> str:
        return f"milestone/{self.name}_step"

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name)

    def holds(self, metrics: Mapping[str, float]) -> bool:
        """Whether every condition holds for these metric values."""
        for monitor, bounds in self.conditions.items():
            value = metrics.get(monitor, math.nan)
            if not (bounds.get("min", -math.inf) <= value <= bounds.get("max", math.inf)):  # NaN: False
                return False
        return True

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.conditions}
        self.latest.update(metrics)
        if self.reached_at is not None or not self.holds(metrics):
            return
        self.reached_at = trainer.global_step
        rank_zero_info(f"Milestone {self.name!r} reached at step {self.reached_at}: "
                       + ", ".join(f"{k}={v:.3g}" for k, v in sorted(metrics.items())))
        for logger in trainer.loggers:
            logger.log_metrics({self.metric_name: float(self.reached_at)}, step=trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"reached_at": self.reached_at, "latest": dict(self.latest)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reached_at = state_dict.get("reached_at")
        self.latest.update(state_dict.get("latest", {}))
