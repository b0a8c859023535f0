"""An alert: what happened, how urgent it is, and an optional picture or sound, independent of the channel.

Channels render it: :func:`render_html` gives the text for Telegram's HTML parse mode, :func:`render_text` the
plain line for the log. Everything an alert carries is plain text; markup is added only here, after escaping,
so a metric name such as ``val/loss<0.5 & aligned`` can never break a message.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tuner_callbacks import options

LEVELS = ("info", "warning", "critical")  # in increasing urgency
LEVEL_EMOJI = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}

# Telegram's limits: a message's text after entity parsing, and a photo or audio caption.
MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024
_ELLIPSIS = "…"


def check_level(name: str, value: str) -> str:
    """Returns ``value`` if it is a level; raises naming the argument otherwise."""
    return options.choice(name, value, LEVELS)


def level_at_least(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum)


@dataclass(frozen=True)
class Alert:
    """Example: ``Alert("warning", "Early stop", ["val/loss did not improve for 10 checks"], emoji="⏹")``.

    ``lines`` are plain text (escaped when rendered); ``photo`` and ``audio`` are files that go with the text
    where the channel can carry them.
    """

    level: str
    title: str
    lines: Sequence[str] = ()
    photo: Path | None = None
    audio: Path | None = None
    emoji: str | None = None  # replaces the level's emoji: what happened reads faster than how bad it is
    kind: str = "message"  # "start", "summary", "best", "early_stop", "end", "exception", ...: for filters, tests

    def __post_init__(self) -> None:
        check_level("level", self.level)
        if self.photo is not None and self.audio is not None:
            raise ValueError(f"an alert carries one file, got photo={self.photo} and audio={self.audio}; send the "
                             f"audio as an alert of its own")
        object.__setattr__(self, "lines", tuple(str(line) for line in self.lines))

    @property
    def marker(self) -> str:
        return self.emoji or LEVEL_EMOJI[self.level]


def _fit_escaped(text: str, budget: int) -> str:
    """The longest prefix of ``text`` whose escaped form, plus an ellipsis, fits ``budget`` characters.

    Cutting the plain text rather than the escaped one means an entity such as ``&amp;`` is never split.
    """
    escaped = html.escape(text, quote=False)
    if len(escaped) <= budget:
        return escaped
    pieces, used, room = [], 0, budget - len(_ELLIPSIS)
    for char in text:
        piece = html.escape(char, quote=False)
        if used + len(piece) > room:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces) + _ELLIPSIS


def render_html(alert: Alert, limit: int = MESSAGE_LIMIT) -> str:
    """The alert as Telegram HTML: a bold title line, then one escaped line each, cut to ``limit`` characters
    (Telegram counts the text without tags, so this errs on the safe side)."""
    head = f"{alert.marker} <b>{_fit_escaped(alert.title, limit // 4)}</b>"
    parts, used = [head], len(head)
    for line in alert.lines:
        room = limit - used - 1  # 1 for the newline
        escaped = html.escape(line, quote=False)
        if len(escaped) > room:
            if room > len(_ELLIPSIS):
                parts.append(_fit_escaped(line, room))
            break
        parts.append(escaped)
        used += len(escaped) + 1
    return "\n".join(parts)


def render_text(alert: Alert) -> str:
    """One log line: ``[warning] Early stop: val/loss did not improve ... | best 0.52``."""
    body = " | ".join(alert.lines)
    return f"[{alert.level}] {alert.title}" + (f": {body}" if body else "")
