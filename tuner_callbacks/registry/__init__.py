"""The model registry on MLflow: the :class:`ModelRegistry` callback and ``python -m tuner_callbacks.registry``.

Importing the package is cheap: MLflow and Lightning are imported when first used.
"""

from __future__ import annotations

from tuner_callbacks._lazy import lazy_exports

_WHERE = {
    "ModelRegistry": "tuner_callbacks.registry.callback",
    **{name: "tuner_callbacks.registry.client" for name in
       ("ModelReference", "Registry", "RegistryError", "RegistryLookupError", "parse_reference")},
    "PyfuncModel": "tuner_callbacks.registry.pyfunc_saving",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
