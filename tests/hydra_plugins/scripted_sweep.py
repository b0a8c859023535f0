"""The sweeper's loop without training: a launcher that returns scripted values, on a real Optuna study in SQLite
and the real composed ``hparams=search`` config (so the run's configured values are `python train.py`'s)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.smart_optuna_sweeper._impl import SmartOptunaSweeperImpl
from hydra_plugins.smart_optuna_sweeper.config import SmartOptunaSweeperConf
from tests.helpers.train_configs import CONF


def search_config(*overrides: str) -> Any:
    """``train.py hparams=search`` composed as the sweeper sees it (the hydra node included)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", overrides=["hparams=search", *overrides], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


class ScriptedLauncher:
    """Hydra's launcher interface; each job returns ``value_of(trial number, overrides as a dict)`` (a number, or
    an exception it raises as the job's error)."""

    def __init__(self, value_of: Callable[[int, dict[str, str]], Any]) -> None:
        self.value_of, self.launched = value_of, []

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
        returns = []
        for overrides in job_overrides:
            values = dict(o.lstrip("+").split("=", 1) for o in overrides)
            self.launched.append(values)
            value = self.value_of(int(values["trial.number"]), values)
            failed = isinstance(value, BaseException)
            returns.append(JobReturn(status=JobStatus.FAILED if failed else JobStatus.COMPLETED,
                                     _return_value=value))
        return returns


def scripted_sweeper(tmp_path: Path, value_of: Callable[[int, dict[str, str]], Any], *overrides: str,
                     **settings: Any) -> SmartOptunaSweeperImpl:
    """The sweeper of ``hparams=search`` (plus ``overrides``; ``settings`` replace its options), set up to write
    under ``tmp_path`` and launch through a :class:`ScriptedLauncher`."""
    config = search_config(*overrides)
    options = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
    for key in ("_target_", "_recursive_"):  # as Hydra passes them
        options.pop(key)
    impl = SmartOptunaSweeperImpl(SmartOptunaSweeperConf(**{**options, "report": False, "alerts": None,
                                                            "registry_model": None, **settings}))
    impl.config, impl.launcher = config, ScriptedLauncher(value_of)
    impl.sweep_dir = tmp_path / "sweep"
    return impl


def load(tmp_path: Path, name: str = "search") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/sweep/optuna.db")
