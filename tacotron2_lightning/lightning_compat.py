"""Lightning's classes from both of its packages, for the model core.

``pytorch_lightning`` and ``lightning.pytorch`` ship the same classes twice, and each Trainer recognises a
LightningModule, a callback or a logger by ``isinstance`` against its own package's class. The model core is
written once (``Tacotron2ModuleBase``, ``Tacotron2DataModuleBase``) and built on each package in
:mod:`tacotron2_lightning.flavours`; callbacks derive from the ``Callback`` of every installed package at once,
and loggers are recognised by the classes of every installed package. (``tuner_callbacks.lightning_compat`` does
the same for the generic callbacks; the model core imports nothing of it.)
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")


def is_installed(package: str) -> bool:
    """Whether ``package`` (``"lightning.pytorch"``) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # the parent ("lightning") is missing
        return False


@functools.cache
def classes_in_every_package(path: str) -> tuple[type, ...]:
    """``path`` (``"Callback"``, ``"loggers.MLFlowLogger"``) in each installed package, ``pytorch_lightning`` first."""
    module_path, _, name = path.rpartition(".")
    found = []
    for package in (p for p in LIGHTNING_PACKAGES if is_installed(p)):
        found.append(getattr(importlib.import_module(".".join(filter(None, (package, module_path)))), name))
    return tuple(found)
