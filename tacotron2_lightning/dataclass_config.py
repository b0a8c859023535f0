"""Building config dataclasses from what Hydra hands over: the object itself, a dict or a DictConfig."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def as_dataclass(cls: type[T], value: T | Mapping[str, Any] | None) -> T:
    """``value`` as a ``cls`` instance: defaults for None, fields from a mapping, unknown keys named."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in value if key not in known)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**{str(key): item for key, item in value.items()})
    raise TypeError(f"expected a {cls.__name__} or a mapping of its fields, got {type(value).__name__}")
