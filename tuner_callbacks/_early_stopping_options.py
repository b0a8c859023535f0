"""SmartEarlyStopping's argument checks: what each optional rule accepts, its defaults, and errors that name the
option and the bad value."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# (predicate, what a valid value is) per option; the description goes into the error message.
_INT_GE_0 = (lambda v: _is_int(v) and v >= 0, "an int >= 0")
_INT_GE_1 = (lambda v: _is_int(v) and v >= 1, "an int >= 1")
_INT_GE_2 = (lambda v: _is_int(v) and v >= 2, "an int >= 2")
_NUMBER = (_is_number, "a finite number")
_NUMBER_GE_0 = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
_NUMBER_GT_0 = (lambda v: _is_number(v) and v > 0, "a finite number > 0")
_NUMBER_GT_1 = (lambda v: _is_number(v) and v > 1, "a finite number > 1")
_FRACTION = (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
_NAME = (lambda v: isinstance(v, str) and v != "", "a non-empty metric name")


def _optional(check: tuple) -> tuple:
    return (lambda v: v is None or check[0](v), f"None or {check[1]}")


# The default of an option the caller must give: a rule that knows no sensible value for any model has none.
_REQUIRED = object()

# Option -> (default, check) for each optional rule.
_RULES: dict[str, dict[str, tuple[Any, tuple]]] = {
    "gradient": {"window": (5, _INT_GE_2), "min_slope": (1e-3, _NUMBER_GE_0)},
    "plateau": {"window": (5, _INT_GE_2), "min_relative_spread": (0.01, _NUMBER_GT_0)},
    "overfitting": {"train_monitor": ("train/loss", _NAME), "growing_checks": (3, _optional(_INT_GE_1)),
                    "max_ratio": (None, _optional(_NUMBER_GT_1)), "smoothing": (0.0, _FRACTION)},
    "divergence": {"factor": (3.0, _NUMBER_GT_1)},
    "floor": {"monitor": (_REQUIRED, _NAME), "min_value": (_REQUIRED, _NUMBER),
              "after_steps": (0, _INT_GE_0), "patience": (1, _INT_GE_1)},
}


def _require(name: str, value: Any, check: tuple) -> None:
    if not check[0](value):
        raise ValueError(f"`{name}` must be {check[1]}, got {value!r}")


def _rule_options(rule: str, given: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Merges a rule's options (a dict, or Hydra's DictConfig) with its defaults; None keeps the rule off."""
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise TypeError(f"`{rule}` must be a mapping of options or None, got {given!r}")
    spec = _RULES[rule]
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise ValueError(f"`{rule}` got unknown option(s) {', '.join(map(repr, unknown))}; valid: {', '.join(spec)}")
    missing = [key for key, (default, _) in spec.items() if default is _REQUIRED and key not in given]
    if missing:
        raise ValueError(f"`{rule}` needs option(s) {', '.join(f'`{rule}.{key}`' for key in missing)}; "
                         f"got {dict(given)!r}")
    options = {key: given.get(key, default) for key, (default, _) in spec.items()}
    for key, (_, check) in spec.items():
        _require(f"{rule}.{key}", options[key], check)
    return options
