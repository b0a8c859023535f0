"""A minimum interval between sends to one chat: Telegram's flood limits, without an extra dependency.

Telegram allows about one message a second to a private chat and 20 a minute to a group or channel (30 a second
over all chats, which one chat's interval already respects). python-telegram-bot's ``AIORateLimiter`` needs the
optional ``aiolimiter`` package; a run sends a few messages per validation, so spacing them is all it takes.
"""

from __future__ import annotations

import asyncio
import time

from tuner_callbacks import options

PRIVATE_CHAT_INTERVAL_S = 1.0
GROUP_CHAT_INTERVAL_S = 3.0  # 20 messages a minute


def default_interval(chat_id: int | str) -> float:
    """Group and channel ids are negative (``-100...``) or ``@channelname``; private chats are positive."""
    text = str(chat_id).strip()
    return GROUP_CHAT_INTERVAL_S if text.startswith(("-", "@")) else PRIVATE_CHAT_INTERVAL_S


class MinIntervalLimiter:
    """``await limiter.wait()`` before each send. A 429's ``retry_after`` is the dispatcher's to honour.

    Example:
        >>> limiter = MinIntervalLimiter(1.0)  # at most one send a second
    """

    def __init__(self, interval_s: float):
        options.number("min_interval_s", interval_s, low=0)
        self.interval_s = interval_s
        self._next = 0.0  # time.monotonic() before which no send may start

    async def wait(self) -> None:
        delay = self._next - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next = max(time.monotonic(), self._next) + self.interval_s

