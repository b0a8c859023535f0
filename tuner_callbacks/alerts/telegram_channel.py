"""TelegramChannel: alerts as Telegram messages, photos and audio through python-telegram-bot (v21+, asyncio).

One alert is one Bot API call, so a retry never posts a message twice. Telegram errors are mapped onto the
channel errors the dispatcher understands; every message that reaches the log passes through
:func:`~tuner_callbacks.alerts.redaction.redact`, and exceptions are re-raised ``from None`` because
python-telegram-bot puts the token in some of its own messages.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from tuner_callbacks import options
from tuner_callbacks.alerts.channels import BadCredentialsError, ChannelError, RetryableError
from tuner_callbacks.alerts.message import CAPTION_LIMIT, Alert, render_html
from tuner_callbacks.alerts.rate_limit import MinIntervalLimiter, default_interval
from tuner_callbacks.alerts.redaction import RedactingFilter, Secret, redact

log = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org/bot"
_AUDIO_SUFFIXES = (".mp3", ".m4a")  # what Telegram's player takes; other audio (wav) goes as a document


def _seconds(value: Any) -> float:
    """``RetryAfter.retry_after``: an int, or a timedelta under ``PTB_TIMEDELTA`` (PTB's next major version)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramChannel:
    """Sends alerts to one chat.

    Args:
        token: the bot token from @BotFather; kept as a :class:`Secret`.
        chat_id: a user, group (``-100...``) or ``@channel``.
        base_url: the Bot API root; a local `telegram-bot-api` server, or a test server.
        timeout_s: connect, read and write timeout of each request.
        min_interval_s: the least time between two sends; None: 1 s for private chats, 3 s for groups.

    Example:
        >>> channel = TelegramChannel(os.environ["TELEGRAM_BOT_TOKEN"], chat_id=123456789)
    """

    name = "telegram"

    def __init__(self, token: str | Secret, chat_id: int | str, base_url: str = TELEGRAM_API,
                 timeout_s: float = 10.0, min_interval_s: float | None = None):
        self._token = token if isinstance(token, Secret) else Secret(token)
        options.check("chat_id", chat_id, chat_id is not None and str(chat_id).strip() != "",
                      "a chat id or @channel name")
        options.check("base_url", base_url, isinstance(base_url, str) and (base_url.endswith("/bot")
                                                                           or "{token}" in base_url),
                      "a URL ending in /bot (the token follows it)")
        options.number("timeout_s", timeout_s, low=0, low_open=True)
        self.chat_id = chat_id
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._limiter = MinIntervalLimiter(default_interval(chat_id) if min_interval_s is None else min_interval_s)
        self._redactor = RedactingFilter(self._token)
        self._redactor.install()  # before the Bot exists: it logs its URL when built
        self._bot: Any = None
        self._request: Any = None

    def __repr__(self) -> str:
        return f"TelegramChannel(chat_id={self.chat_id!r}, base_url={self.base_url!r})"

    def _get_bot(self) -> Any:
        if self._bot is None:
            from telegram import Bot
            from telegram.request import HTTPXRequest

            timeout = self.timeout_s
            self._request = HTTPXRequest(connection_pool_size=2, read_timeout=timeout, write_timeout=timeout,
                                         connect_timeout=timeout, pool_timeout=timeout, media_write_timeout=timeout)
            # Alerts download nothing: the file URL only has to be well formed. Both request slots share one
            # client, as alerts never poll for updates.
            root = self.base_url.removesuffix("/bot")
            self._bot = Bot(self._token.reveal(), base_url=self.base_url, base_file_url=f"{root}/file/bot",
                            request=self._request, get_updates_request=self._request)
        return self._bot

    async def _call(self, coroutine: Any) -> Any:
        """Awaits one Bot API call, turning Telegram's errors into channel errors without the token."""
        from telegram import error

        secret = [self._token.reveal()]
        try:
            return await coroutine
        except error.RetryAfter as exc:
            raise RetryableError("Telegram rate limit (429)", retry_after=_seconds(exc.retry_after)) from None
        except error.InvalidToken:
            raise BadCredentialsError("Telegram rejected the bot token (`token` / TELEGRAM_BOT_TOKEN)") from None
        except error.Forbidden as exc:
            raise BadCredentialsError(f"the bot may not post to chat {self.chat_id!r}: "
                                      f"{redact(exc.message, secret)}") from None
        except error.BadRequest as exc:  # before NetworkError, its base class: a bad request stays bad
            message = redact(exc.message, secret)
            if "chat not found" in message.lower():
                raise BadCredentialsError(f"chat {self.chat_id!r} not found (`chat_id` / TELEGRAM_CHAT_ID); has "
                                          f"the chat started the bot?") from None
            raise ChannelError(f"Telegram refused the message: {message}") from None
        except error.NetworkError as exc:  # TimedOut too
            raise RetryableError(f"{type(exc).__name__}: {redact(exc.message, secret)}") from None
        except error.TelegramError as exc:
            raise ChannelError(f"{type(exc).__name__}: {redact(exc.message, secret)}") from None

    async def check(self) -> str:
        bot = self._get_bot()
        me = await self._call(bot.get_me())
        await self._call(bot.get_chat(self.chat_id))
        return f"@{me.username} -> chat {self.chat_id}"

    async def send(self, alert: Alert) -> None:
        bot = self._get_bot()
        for attachment in ("photo", "audio"):
            path = getattr(alert, attachment)
            if path is not None and not Path(path).is_file():
                log.warning("Alert %r: %s %s is gone; sending the text only", alert.title, attachment, path)
                alert = replace(alert, **{attachment: None})
        # An exception's message could quote the token (a failed request URL): never post it to a chat.
        secret = [self._token.reveal()]
        caption = redact(render_html(alert, CAPTION_LIMIT), secret)
        await self._limiter.wait()
        if alert.photo is not None:
            call = bot.send_photo(self.chat_id, photo=_input_file(alert.photo), caption=caption, parse_mode="HTML")
        elif alert.audio is not None and Path(alert.audio).suffix.lower() in _AUDIO_SUFFIXES:
            call = bot.send_audio(self.chat_id, audio=_input_file(alert.audio), caption=caption, parse_mode="HTML")
        elif alert.audio is not None:
            call = bot.send_document(self.chat_id, document=_input_file(alert.audio), caption=caption,
                                     parse_mode="HTML")
        else:
            from telegram import LinkPreviewOptions

            call = bot.send_message(self.chat_id, redact(render_html(alert), secret), parse_mode="HTML",
                                    link_preview_options=LinkPreviewOptions(is_disabled=True))
        await self._call(call)

    async def close(self) -> None:
        try:
            if self._request is not None:
                await self._request.shutdown()
        finally:
            self._redactor.uninstall()


def _input_file(path: Path | str) -> Any:
    from telegram import InputFile

    path = Path(path)
    return InputFile(path.read_bytes(), filename=path.name)
