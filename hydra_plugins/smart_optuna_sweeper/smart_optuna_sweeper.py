"""The Hydra plugin class. Thin: Hydra imports every plugin module at start-up, so Optuna is imported only
when a sweep actually runs (in ``_impl``)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.smart_optuna_sweeper.config import SmartOptunaSweeperConf  # (importing it registers the configs)


class SmartOptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.smart_optuna_sweeper._impl import SmartOptunaSweeperImpl

        # Hydra passes the fields of SmartOptunaSweeperConf as keywords (its _target_ and _recursive_ removed).
        self._impl = SmartOptunaSweeperImpl(SmartOptunaSweeperConf(**settings))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)
