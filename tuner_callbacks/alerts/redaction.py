"""Keeping the bot token out of logs, reprs and error messages.

The Bot API puts the token in every request URL, and third-party loggers print those URLs: httpx logs each
request at INFO, python-telegram-bot logs its base URL at DEBUG. :class:`RedactingFilter` rewrites such records
before any handler sees them; :class:`Secret` keeps the token from leaking through ``repr``/``str``/f-strings.
"""

from __future__ import annotations

import logging

MASK = "***"

# The loggers that can carry a request URL or an error about one: httpx's and python-telegram-bot's, asyncio's
# (an exception nobody retrieved), and ours. A filter on a logger applies only to records logged on that exact
# logger (not to its children's, which propagate straight to handlers), so each is named.
URL_LOGGERS = ("httpx", "httpcore", "telegram.Bot", "telegram.ext.ExtBot", "telegram.BaseRequest",
               "telegram.HTTPXRequest", "asyncio", "tuner_callbacks.alerts.dispatcher",
               "tuner_callbacks.alerts.telegram_channel", "tuner_callbacks.alerts.callback")


class Secret:
    """A string that shows as ``***`` everywhere except through :meth:`reveal`.

    Example:
        >>> token = Secret("123:abc")
        >>> f"token={token}", token.reveal()
        ('token=***', '123:abc')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str) or not value:
            raise ValueError("a secret must be a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK


def redact(text: str, secrets: list[str] | tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Replaces ``secret`` in a record's message and exception text with ``***``; never drops a record.

    Example:
        >>> redactor = RedactingFilter(Secret("123:abc"))
        >>> redactor.install()
        >>> logging.getLogger("httpx").warning("POST https://api.telegram.org/bot123:abc/sendMessage")
        >>> redactor.uninstall()
    """

    def __init__(self, secret: Secret, loggers: tuple[str, ...] = URL_LOGGERS):
        super().__init__()
        self._secret = secret
        self._loggers = loggers

    def install(self) -> None:
        for name in self._loggers:
            logging.getLogger(name).addFilter(self)

    def uninstall(self) -> None:
        for name in self._loggers:
            logging.getLogger(name).removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        secret = self._secret.reveal()
        message = record.getMessage()
        if secret in message:
            record.msg, record.args = message.replace(secret, MASK), None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if secret in text:
                # Formatters print exc_text when set, so the traceback goes out redacted.
                record.exc_text, record.exc_info = text.replace(secret, MASK), None
        return True
