"""The model registry on MLflow: the :class:`ModelRegistry` callback and ``python -m tuner_callbacks.registry``.

Importing the package is cheap: MLflow and Lightning are imported when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "ModelRegistry": "tuner_callbacks.registry.callback",
    **{name: "tuner_callbacks.registry.client" for name in
       ("ModelReference", "Registry", "RegistryError", "RegistryLookupError", "parse_reference")},
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    # Imported on first use: the command-line tool starts without importing PyTorch Lightning.
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return __all__
