"""The one error type of the sweeper, and how an option check's error becomes one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tuner_callbacks.options import OptionError


class SweepError(RuntimeError):
    """The sweep stopped: too many failed trials, or a config the sweeper cannot use (names it)."""


@contextmanager
def sweeper_keys(prefix: str = "hydra.sweeper.") -> Iterator[None]:
    """Turns an :class:`~tuner_callbacks.options.OptionError` raised inside into a SweepError that names the key
    as the config does (``hydra.sweeper.n_trials must be an integer >= 1, got 0``)."""
    try:
        yield
    except OptionError as error:
        raise SweepError(error.message(prefix=prefix, quote="")) from None
