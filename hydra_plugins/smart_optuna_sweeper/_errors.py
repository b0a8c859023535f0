"""The one error type of the sweeper."""


class SweepError(RuntimeError):
    """The sweep stopped: too many failed trials, or a config the sweeper cannot use (names it)."""
