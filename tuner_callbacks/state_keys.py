"""Checkpoints written under a callback's older state key, read back under its current one.

A callback's ``state_key`` names its state in a checkpoint. Ours once also held settings that do not identify
the state (how often to record, which alert levels to send); they now hold only what identifies it, and a run
resumed from a checkpoint written before that keeps its state through :func:`adopt_older_state`.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner_callbacks.lightning_compat import pl


def adopt_older_state(callback: pl.Callback, checkpoint: dict[str, Any], **identifying: Any) -> None:
    """In a checkpoint being loaded, moves ``callback``'s state from an older key to ``callback.state_key``.

    Call it from ``on_load_checkpoint``, which Lightning runs before ``load_state_dict``. An older key is
    ``ClassName{settings}`` as ``Callback._generate_state_key`` wrote it; it is this callback's when its class
    name matches and its settings hold ``identifying`` (the values the current key is made of). Nothing moves
    when the current key is present or when more than one older key matches: a guess could swap two states.
    """
    states = checkpoint.get("callbacks")
    if not states or callback.state_key in states:
        return
    prefix = type(callback).__qualname__
    matches = [key for key in states if isinstance(key, str) and key.startswith(prefix + "{")
               and _holds(key[len(prefix):], identifying)]
    if len(matches) == 1:
        states[callback.state_key] = states.pop(matches[0])


def _holds(settings_repr: str, identifying: dict[str, Any]) -> bool:
    try:
        settings = ast.literal_eval(settings_repr)
    except (ValueError, SyntaxError):  # a setting whose repr is no literal: not a key we can read
        return False
    return isinstance(settings, dict) and all(key in settings and settings[key] == value
                                              for key, value in identifying.items())
