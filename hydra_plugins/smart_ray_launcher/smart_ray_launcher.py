"""The Hydra plugin class. Thin: Hydra imports every plugin module at start-up, so Ray is imported only when jobs
are launched (in ``_impl``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.smart_ray_launcher.config import SmartRayLauncherConf  # noqa: F401 (registers the config)


class SmartRayLauncher(Launcher):
    def __init__(self, ray: Any) -> None:
        from hydra_plugins.smart_ray_launcher._impl import RayJobs

        self._impl = RayJobs(ray)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self._impl.launch(job_overrides, initial_job_idx)
