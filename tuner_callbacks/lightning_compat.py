"""The one place in ``tuner_callbacks`` that knows there are two Lightning packages.

**The rule: ``pytorch_lightning`` is always installed (a dependency of smart-tuner); ``lightning`` is optional.**
``pytorch_lightning`` and ``lightning.pytorch`` ship the same classes twice, and a Trainer recognises callbacks,
progress bars and loggers by ``isinstance`` against its own package's classes. So:

- a callback derives from the class of every installed package, ``pytorch_lightning``'s first (its methods win;
  both implement the Callback API the same way): ``class MyCallback(*lightning_bases("Callback"))`` is a
  ``pytorch_lightning.Callback`` and a ``lightning.pytorch.Callback`` at once, so it works in either Trainer
  (older ``lightning`` 2.x releases reject a callback of the other package);
- an ``isinstance`` check takes the same tuple: ``isinstance(logger, lightning_bases("loggers.MLFlowLogger"))``,
  or :func:`is_loaded_instance` where importing a Lightning package just to say no would cost too much;
- what does not depend on the Trainer's package (``rank_zero_info``, ``rank_zero_warn``, ``TrainerFn``, whose
  members compare equal across the packages, and ``pl`` for annotations) comes from ``pytorch_lightning`` through
  this module: every other module of ``tuner_callbacks`` imports Lightning from here, never the packages
  themselves (``tests/test_import_layers.py`` checks it).

The tests fit every callback under each Trainer (``tests/test_both_lightning_packages.py``). The model core
(``tacotron2_lightning``), which imports nothing of ``tuner_callbacks``, has its own
``tacotron2_lightning/lightning_compat.py`` on the same rule.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.rank_zero import rank_zero_info, rank_zero_warn

__all__ = ["LIGHTNING_PACKAGES", "TrainerFn", "is_loaded_instance", "lightning_bases", "pl", "rank_zero_info",
           "rank_zero_warn"]

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # "lightning.pytorch" when "lightning" is not installed
        return False


@functools.cache
def lightning_bases(path: str) -> tuple[type, ...]:
    """The class at ``path`` (``"Callback"``, ``"callbacks.RichProgressBar"``) in each installed Lightning package.

    Use as the bases of a class: ``class MyCallback(*lightning_bases("Callback")): ...``, or as the classes of an
    ``isinstance`` check.
    """
    module_path, _, name = path.rpartition(".")
    bases = []
    for package in LIGHTNING_PACKAGES:
        if _installed(package):
            module = importlib.import_module(f"{package}.{module_path}" if module_path else package)
            bases.append(getattr(module, name))
    return tuple(bases)


def is_loaded_instance(obj: Any, module_path: str, name: str) -> bool:
    """Whether ``obj`` is an instance of class ``name`` of ``<package>.<module_path>`` in a Lightning package that
    is already imported (``"loggers.mlflow"``, ``"MLFlowLogger"``). An instance of a class means its module is
    loaded, so this never imports a Lightning package just to say no."""
    for package in LIGHTNING_PACKAGES:
        module = sys.modules.get(f"{package}.{module_path}")
        if module is not None and isinstance(obj, getattr(module, name)):
            return True
    return False
