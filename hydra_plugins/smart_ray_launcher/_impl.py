"""Each Hydra job a Ray task: composed, run and returned in a Ray worker, on this machine or anywhere in the cluster.

``launch`` may be called from several threads at once (the smart_optuna sweeper's continuous slots call it with one
job per slot): Ray is started once under a lock, and each call waits only for its own jobs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from tuner_callbacks.optuna_storage import STORAGE_ENV

try:
    import ray
except ImportError as error:  # the launcher's config is registered without Ray; running it is not
    raise ImportError("hydra/launcher=smart_ray needs Ray: pip install 'smart-tuner[distributed]' "
                      "(or pip install 'ray[client]')") from error

log = logging.getLogger(__name__)

__all__ = ["RayJobs", "RayLauncherError"]


class RayLauncherError(ValueError):
    """A setting of ``hydra.launcher.ray`` that cannot work."""


class RayJobs:
    """What :class:`~hydra_plugins.smart_ray_launcher.smart_ray_launcher.SmartRayLauncher` does.

    Args:
        ray: ``{init: {...}, remote: {...}}``: keyword arguments of ``ray.init`` and of ``ray.remote`` for each job;
            null values are left out (Ray's defaults), so a null ``address`` starts a cluster on this machine.
    """

    def __init__(self, ray: Any) -> None:
        settings = OmegaConf.to_container(ray, resolve=True) if OmegaConf.is_config(ray) else ray
        if not isinstance(settings, Mapping):
            raise RayLauncherError(f"hydra.launcher.ray must be {{init: {{...}}, remote: {{...}}}}, got {ray!r}")
        unknown = sorted(set(settings) - {"init", "remote"})
        if unknown:
            raise RayLauncherError(f"hydra.launcher.ray takes init and remote, got {unknown}")
        self.init_kwargs = _kwargs("init", settings.get("init"))
        self.remote_kwargs = _kwargs("remote", settings.get("remote"))
        self._start_lock = threading.Lock()
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def _start_ray(self) -> None:
        with self._start_lock:  # two slots launching their first jobs at once would both call ray.init
            if ray.is_initialized():
                return
            log.info("ray.init(%s)", ", ".join(f"{k}={v!r}" for k, v in self.init_kwargs.items()))
            ray.init(**self.init_kwargs)
            log.info("Ray cluster: %s", ray.cluster_resources())

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        if self.config is None:
            raise RuntimeError("SmartRayLauncher.launch before setup")
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self._start_ray()
        remote_job = ray.remote(**self.remote_kwargs)(_run_job) if self.remote_kwargs else ray.remote(_run_job)
        singleton_state = Singleton.get_state()
        # A study URL with a password reaches jobs masked; a Ray worker (on another node, or started by `ray start`)
        # does not inherit the sweeper's environment, so the full URL travels as the task's argument, not in its
        # runtime_env, which Ray's dashboard shows.
        storage = os.environ.get(STORAGE_ENV)
        log.info("Ray is launching %d jobs (%s each), sweep output dir: %s", len(job_overrides),
                 self.remote_kwargs, sweep_dir)
        pending = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            pending.append((idx, overrides, remote_job.remote(self.hydra_context, self.config, list(overrides), idx,
                                                              self.task_function, singleton_state, storage)))
        return [_result(idx, overrides, ref) for idx, overrides, ref in pending]


def _kwargs(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RayLauncherError(f"hydra.launcher.ray.{name} must be a dict of ray.{name} arguments, got {value!r}")
    return {key: item for key, item in value.items() if item is not None}


def _run_job(hydra_context: HydraContext, config: DictConfig, overrides: list[str], idx: int,
             task_function: TaskFunction, singleton_state: dict[Any, Any], storage: str | None = None) -> JobReturn:
    """In the Ray worker: the job's config, composed here as Hydra's joblib launcher does, then Hydra's run_job."""
    if storage:
        os.environ[STORAGE_ENV] = storage  # the study's full URL, for the trial's TrialPruning and bookkeeping
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, overrides)
    with open_dict(sweep_config):
        # Where a scheduler would put its job id (SLURM_JOB_ID under submitit): the Ray task's, as Ray's tools show it.
        sweep_config.hydra.job.id = ray.get_runtime_context().get_task_id()
        sweep_config.hydra.job.num = idx
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _result(idx: int, overrides: Sequence[str], ref: Any) -> JobReturn:
    """The job's JobReturn; a job Ray could not run (its worker died, its config did not compose) is FAILED with the
    reason, without taking the other jobs of the launch with it."""
    try:
        return ray.get(ref)
    except Exception as error:
        cause = getattr(error, "cause", None) or error  # RayTaskError wraps what the job raised
        log.error("Job #%d did not run to its end in Ray: %s: %s", idx, type(cause).__name__, cause)
        failed = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        failed.return_value = cause
        return failed
