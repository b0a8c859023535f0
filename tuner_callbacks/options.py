"""One way to check an option: every callback, pruner and the ``smart_optuna`` sweeper validate their arguments
with these functions, in ``__init__``, as Lightning's own callbacks do.

Each check returns the value it accepted (so ``self.patience = options.integer("patience", patience, low=0)``)
or raises :class:`OptionError`, whose message names the key, the bad value and what is allowed::

    `mode` must be 'min' or 'max', got 'avg'
    `gradient.window` must be an integer >= 2, got 1
    `floor`: unknown key(s) ['min_score']; valid keys: ['monitor', 'min_value', 'after_steps', 'patience']

A nested option is named by its dotted path (``gradient.window``, ``remedies[0].lr_factor``). Code that shows its
options under another name renders the same error with :meth:`OptionError.message`: the sweeper writes
``hydra.sweeper.n_trials must be an integer >= 1, got 0``.

Example:
    >>> from tuner_callbacks import options
    >>> options.choice("mode", "min", ("min", "max"))
    'min'
    >>> options.number("factor", 2.0, low=0, low_open=True)
    2.0
    >>> options.mapping("divergence", {"factor": 5.0}, {"factor": 3.0})
    {'factor': 5.0}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from numbers import Integral, Real
from typing import Any

__all__ = ["REQUIRED", "OptionError", "boolean", "check", "choice", "integer", "mapping", "number", "text"]

# The default of a mapping's key that the caller must give: see mapping().
REQUIRED: Any = object()


class OptionError(ValueError, TypeError):
    """A bad option. Both a ValueError and a TypeError: a wrong type is a bad value too, and callers catching
    either keep catching it.

    Attributes:
        key: the option's name, dotted for a nested one (``floor.min_value``).
        value: the value given.
        allowed: what a valid value is, in words (``"an integer >= 1"``), or the valid keys of a mapping.
    """

    def __init__(self, key: str, value: Any, allowed: str,
                 render: Callable[[Callable[[str], str]], str] | None = None) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        self._render = render or (lambda name: f"{name(key)} must be {allowed}, got {value!r}")
        super().__init__(self.message())

    def message(self, prefix: str = "", quote: str = "`") -> str:
        """The message, with every key written as ``quote + prefix + key + quote``."""
        return self._render(lambda key: f"{quote}{prefix}{key}{quote}")


def check(key: str, value: Any, ok: bool, allowed: str) -> Any:
    """``value`` when ``ok``; else OptionError saying that ``key`` must be ``allowed``."""
    if not ok:
        raise OptionError(key, value, allowed)
    return value


def _or_none(allowed: str, optional: bool) -> str:
    return f"None or {allowed}" if optional else allowed


def choice(key: str, value: Any, choices: Collection[Any], *, optional: bool = False) -> Any:
    """``value`` when it is one of ``choices`` (or None, with ``optional``)."""
    shown = [repr(c) for c in choices]
    allowed = " or ".join(shown) if len(shown) <= 2 else f"one of {', '.join(shown)}"
    ok = (value is None and optional) or (isinstance(value, str | int | float | bool | None) and value in choices)
    return check(key, value, ok, _or_none(allowed, optional))


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def _within(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool) -> bool:
    if low is not None and (value < low or (low_open and value == low)):
        return False
    return high is None or not (value > high or (high_open and value == high))


def integer(key: str, value: Any, low: int | None = None, high: int | None = None, *,
            optional: bool = False) -> Any:
    """``value`` when it is an int (not a bool) in ``[low, high]`` (or None, with ``optional``)."""
    ok = (value is None and optional) or (isinstance(value, Integral) and not isinstance(value, bool)
                                         and _within(value, low, high, False, False))
    return check(key, value, ok, _or_none(f"an integer{_bounds(low, high, False, False)}", optional))


def number(key: str, value: Any, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False, optional: bool = False) -> Any:
    """``value`` when it is a finite real number (not a bool) within the bounds (``low_open``: ``> low``) (or
    None, with ``optional``)."""
    ok = (value is None and optional) or (isinstance(value, Real) and not isinstance(value, bool)
                                         and math.isfinite(value) and _within(value, low, high, low_open, high_open))
    return check(key, value, ok, _or_none(f"a finite number{_bounds(low, high, low_open, high_open)}", optional))


def boolean(key: str, value: Any) -> bool:
    """``value`` when it is True or False."""
    return check(key, value, isinstance(value, bool), "True or False")


def text(key: str, value: Any, *, optional: bool = False, allowed: str = "a non-empty string") -> Any:
    """``value`` when it is a non-empty string (or None, with ``optional``); ``allowed`` says what it names."""
    ok = (value is None and optional) or (isinstance(value, str) and value != "")
    return check(key, value, ok, _or_none(allowed, optional))


def mapping(key: str, given: Mapping[str, Any] | None, defaults: Mapping[str, Any], *,
            optional: bool = True) -> dict[str, Any] | None:
    """``given`` (a dict, or Hydra's DictConfig) merged over ``defaults``; None stays None with ``optional``.

    Its keys must be keys of ``defaults``; a key whose default is :data:`REQUIRED` must be given. The values are
    not checked: check each with the functions above, naming it ``f"{key}.{name}"``.
    """
    valid = list(defaults)
    if given is None and optional:
        return None
    if not isinstance(given, Mapping):
        raise OptionError(key, given, f"a mapping with keys {valid}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise OptionError(key, given, f"a mapping with keys {valid}",
                          lambda name: f"{name(key)}: unknown key(s) {unknown}; valid keys: {valid}")
    missing = [name for name, default in defaults.items() if default is REQUIRED and name not in given]
    if missing:
        raise OptionError(key, given, f"a mapping with keys {valid}", lambda name: (
            f"{name(key)} needs {', '.join(name(f'{key}.{m}') for m in missing)} (no default), got {dict(given)!r}"))
    return {name: given.get(name, default) for name, default in defaults.items()}
