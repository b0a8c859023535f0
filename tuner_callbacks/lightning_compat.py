"""One callback class for both Lightning packages.

``pytorch_lightning`` and ``lightning.pytorch`` ship the same classes twice, and a Trainer recognises callbacks,
progress bars and loggers by ``isinstance`` against its own package's classes. Our callbacks therefore derive
from the base class of every Lightning package installed: one ``MetricHistory`` is a
``pytorch_lightning.Callback`` and a ``lightning.pytorch.Callback`` at once, so it works in either Trainer
(and in older ``lightning`` 2.x releases that reject a callback of the other package).

The ``pytorch_lightning`` base comes first, so its methods win; both packages implement the Callback API the
same way, and the tests fit every callback under each Trainer.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

LIGHTNING_PACKAGES = ("pytorch_lightning", "lightning.pytorch")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # "lightning.pytorch" when "lightning" is not installed
        return False


@functools.cache
def lightning_bases(path: str) -> tuple[type, ...]:
    """The class at ``path`` (``"Callback"``, ``"callbacks.RichProgressBar"``) in each installed Lightning package.

    Use as the bases of a class: ``class MyCallback(*lightning_bases("Callback")): ...``.
    """
    module_path, _, name = path.rpartition(".")
    bases = []
    for package in LIGHTNING_PACKAGES:
        if _installed(package):
            module = importlib.import_module(f"{package}.{module_path}" if module_path else package)
            bases.append(getattr(module, name))
    return tuple(bases)
