"""Hydra sweep overrides -> Optuna distributions, in hydra-optuna-sweeper's syntax, and trial params -> overrides.

| override                          | distribution                                      |
|-----------------------------------|---------------------------------------------------|
| ``x=choice(a, b, 3)``             | ``CategoricalDistribution(["a", "b", 3])``        |
| ``x=range(1, 5)``                 | ``IntDistribution(1, 5)`` (upper bound inclusive) |
| ``x=range(0.1, 0.5, 0.1)``        | ``FloatDistribution(0.1, 0.5, step=0.1)``         |
| ``x=shuffle(range(1, 4))``        | ``CategoricalDistribution([1, 2, 3])``            |
| ``x=interval(0.1, 1)``            | ``FloatDistribution(0.1, 1.0)``                   |
| ``x=int(interval(1, 10))``        | ``IntDistribution(1, 10)``                        |
| ``x=tag(log, interval(1e-4, 1))`` | ``FloatDistribution(1e-4, 1.0, log=True)``        |
| ``x=3``                           | fixed: passed to every trial as is                |
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

_PREFIX = {"ADD": "+", "FORCE_ADD": "++", "CHANGE": "", "DEL": "~"}
_PLAIN = re.compile(r"^[\w./@-]+$")  # values Hydra's override grammar reads back without quotes


class SearchSpaceError(ValueError):
    """A ``params`` entry or sweep argument the sweeper cannot turn into a distribution; names it."""


@dataclass
class SearchSpace:
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)  # key -> override value, as written
    prefixes: dict[str, str] = field(default_factory=dict)  # key -> "+", "++" or "" for the override

    @classmethod
    def from_overrides(cls, overrides: Iterable[str]) -> SearchSpace:
        """Later overrides of the same key win: command-line sweep arguments override ``params``."""
        space = cls()
        for text in overrides:
            try:
                (override,) = OverridesParser.create().parse_overrides([text])
            except Exception as error:
                raise SearchSpaceError(f"cannot parse sweep override {text!r}: {error}") from error
            key = override.key_or_group + (f"@{override.package}" if override.package else "")
            space.distributions.pop(key, None)
            space.fixed.pop(key, None)
            space.prefixes[key] = _PREFIX.get(override.type.name, "")
            distribution = distribution_from_override(override, text)
            if distribution is None:
                space.fixed[key] = override.get_value_element_as_str()
            else:
                space.distributions[key] = distribution
        return space

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The override strings of one trial: its sampled params, then the fixed values."""
        result = [f"{self.prefixes.get(key, '')}{key}={encode_value(value)}" for key, value in params.items()]
        result += [f"{self.prefixes.get(key, '')}{key}={value}" for key, value in self.fixed.items()
                   if key not in params]
        return result


def distribution_from_override(override: Override, text: str) -> BaseDistribution | None:
    """The distribution of one parsed override, or None for a fixed value."""
    if not override.is_sweep_override():
        return None
    value = override.value()
    if isinstance(value, ChoiceSweep) or isinstance(value, RangeSweep) and value.shuffle:
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        for choice in choices:
            if not isinstance(choice, str | int | float | bool):
                raise SearchSpaceError(f"{text!r}: a choice must be a string, number or bool, got {choice!r}")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        if value.step is None or value.step <= 0:
            raise SearchSpaceError(f"{text!r}: range() needs a positive step, got {value.step!r}")
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            return FloatDistribution(float(value.start), float(value.stop), step=float(value.step))
        return IntDistribution(int(value.start), int(value.stop), step=int(value.step))
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if value.start >= value.end:
            raise SearchSpaceError(f"{text!r}: interval() needs start < end, got {value.start} and {value.end}")
        if log and value.start <= 0:
            raise SearchSpaceError(f"{text!r}: a log interval needs start > 0, got {value.start}")
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise SearchSpaceError(f"{text!r}: {type(value).__name__} sweeps are not supported (use choice, range or "
                           "interval)")


def encode_value(value: Any) -> str:
    """A sampled value as Hydra's override grammar reads it back: ``1e-3``, ``true``, ``small``, ``'a b'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
