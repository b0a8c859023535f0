"""The pruner config -> the Optuna pruner, and the record of it that jobs rebuild it from.

Every pruner config takes ``n_warmup_steps`` (no trial is pruned before that global step), so a search config can
set a warm-up whichever pruner the command line picks. Where Optuna's class has the argument it is passed as is;
a ``HyperbandPruner`` gets it as its ``min_resource`` floor (Optuna's samplers look for a HyperbandPruner by type, so
it stays unwrapped); a ``NopPruner`` drops it; any other pruner is wrapped in
:class:`tuner_callbacks.warmup_pruner.WarmupPruner`.

The sweeper and its jobs build the pruner from the same record, with
:func:`tuner_callbacks.optuna_storage.pruner_from_record` (jobs read it from the study). A record names only public
classes (``optuna.*``, ``tuner_callbacks.*``, or a user's own ``_target_``), never this package, so that a job
rebuilds it without importing the sweeper.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.smart_optuna_sweeper._errors import SweepError, sweeper_keys
from tuner_callbacks import options as check
from tuner_callbacks.optuna_storage import pruner_from_record
from tuner_callbacks.warmup_pruner import WarmupPruner  # this module's old name: RENAMED_TARGETS maps it

WARMUP = "n_warmup_steps"
_KEY = "hydra.sweeper.pruner"


def pruner_record(node: Any, key: str = _KEY) -> dict[str, Any]:
    """The pruner config as Optuna's own arguments, the warm-up applied as the module docstring says; raises
    SweepError naming ``key`` for a config without a ``_target_``, an unknown class or a bad warm-up."""
    config = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    target = config.get("_target_")
    if not isinstance(target, str):
        raise SweepError(f"{key} needs a _target_ (an Optuna pruner class), got {config!r}")
    try:
        cls = get_class(target)
    except Exception as error:
        raise SweepError(f"{key}._target_={target!r} is not a class: {error}") from error
    for name, value in config.items():  # a wrapped pruner: its own warm-up applied the same way
        if isinstance(value, Mapping) and "_target_" in value:
            config[name] = pruner_record(value, f"{key}.{name}")
    if WARMUP in inspect.signature(cls).parameters:
        return config
    with sweeper_keys(prefix=""):
        warmup = check.integer(f"{key}.{WARMUP}", config.pop(WARMUP, 0), low=0)
    if not warmup or issubclass(cls, optuna.pruners.NopPruner):
        return config
    if issubclass(cls, optuna.pruners.HyperbandPruner):
        with sweeper_keys(prefix=""):
            min_resource = check.integer(f"{key}.min_resource", config.get("min_resource", 1))
        return {**config, "min_resource": max(min_resource, warmup)}
    return {"_target_": f"{WarmupPruner.__module__}.{WarmupPruner.__name__}", "wrapped_pruner": config,
            WARMUP: warmup}


def build_pruner(record: Mapping[str, Any], key: str = _KEY) -> optuna.pruners.BasePruner:
    """The pruner of a :func:`pruner_record` (inner pruners too); SweepError naming ``key`` when Optuna refuses
    its arguments."""
    try:
        with warnings.catch_warnings():  # "PatientPruner is experimental": noise in every sweep's log
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            pruner = pruner_from_record(record)
    except Exception as error:
        raise SweepError(f"{key}: cannot build the pruner {record.get('_target_')!r}: {error}") from error
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise SweepError(f"{key}._target_={record.get('_target_')!r} built a {type(pruner).__name__}, not an Optuna "
                         "pruner")
    return pruner
