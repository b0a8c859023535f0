"""Where alerts go: a small interface, and the log channel used when no bot is configured.

A channel is anything with ``async send(alert)``, ``async check()`` and ``async close()``. It raises
:class:`RetryableError` for what may pass (network errors, timeouts, rate limits) and
:class:`ChannelError` for what will not (a rejected token, an unknown chat, a malformed message); the
:class:`~tuner_callbacks.alerts.dispatcher.AlertDispatcher` retries the first kind and drops the second.

Adding a Slack webhook or e-mail is one class with those three coroutines, e.g.::

    class SlackChannel:
        name = "slack"

        def __init__(self, webhook_url: str):
            self.webhook_url = webhook_url

        async def check(self) -> str:
            return "Slack webhook"

        async def send(self, alert: Alert) -> None:
            async with httpx.AsyncClient() as client:
                response = await client.post(self.webhook_url, json={"text": render_text(alert)})
            if response.status_code == 429 or response.status_code >= 500:
                raise RetryableError(f"Slack answered {response.status_code}")
            if response.status_code >= 400:
                raise ChannelError(f"Slack answered {response.status_code}")

        async def close(self) -> None:
            pass
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from tuner_callbacks.alerts.message import Alert, render_text

log = logging.getLogger(__name__)


class ChannelError(RuntimeError):
    """A delivery that will not work however often it is tried."""


class BadCredentialsError(ChannelError):
    """The channel's service rejected the token, or cannot reach the chat; found by :meth:`AlertChannel.check`."""


class RetryableError(ChannelError):
    """A delivery that may work later; ``retry_after`` is the wait the service asked for, in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class AlertChannel(Protocol):
    name: str

    async def check(self) -> str:
        """Verifies credentials and destination; returns a description such as ``@my_bot -> chat 42``.
        Raises :class:`BadCredentialsError` when they cannot work, :class:`RetryableError` when unreachable."""
        ...

    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


class LogChannel:
    """Writes alerts to a logger: what runs get when no bot token is configured.

    Example:
        >>> channel = LogChannel()  # alerts appear as "[info] Training started: ..." log lines
    """

    name = "log"
    _LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or log

    async def check(self) -> str:
        return f"the log ({self.logger.name})"

    async def send(self, alert: Alert) -> None:
        attached = [f"{kind} {path}" for kind, path in (("photo", alert.photo), ("audio", alert.audio)) if path]
        suffix = f" ({', '.join(attached)})" if attached else ""
        self.logger.log(self._LEVELS[alert.level], "%s%s", render_text(alert), suffix)

    async def close(self) -> None:
        pass
