"""argparse value types shared by the command-line tools."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """``type=positive_int``: an integer >= 1, or argparse's usage error naming the value."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number
