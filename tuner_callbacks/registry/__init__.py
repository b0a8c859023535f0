"""The model registry on MLflow: the :class:`ModelRegistry` callback and ``python -m tuner_callbacks.registry``.

Importing the package is cheap: MLflow is imported when a registry is first used.
"""

from tuner_callbacks.registry.callback import ModelRegistry
from tuner_callbacks.registry.client import (
    ModelReference,
    Registry,
    RegistryError,
    RegistryLookupError,
    parse_reference,
)

__all__ = ["ModelReference", "ModelRegistry", "Registry", "RegistryError", "RegistryLookupError", "parse_reference"]
