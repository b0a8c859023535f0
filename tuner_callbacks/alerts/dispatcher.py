"""AlertDispatcher: a bounded queue and one background thread running an asyncio loop that delivers alerts.

The training thread only ever enqueues: :meth:`AlertDispatcher.send` returns at once, and when the queue is
full the alert is dropped (with one warning) rather than waiting. The loop thread delivers one alert at a
time, retries what may pass with exponential backoff (or the wait a 429 asked for), and when an alert fails
every attempt declares the channel dead: one warning, then one attempt per alert until one gets through.
:meth:`AlertDispatcher.close` flushes within a time limit and abandons the rest.

The sweeper and scripts use it without Lightning::

    dispatcher = build_dispatcher(min_level="info")  # TELEGRAM_BOT_TOKEN / TELEGRAM_CHAT_ID, else the log
    dispatcher.send(sweep_summary_alert("tts", {"COMPLETE": 12, "PRUNED": 7}, 0.41, {"lr": 1e-3}))
    dispatcher.close(timeout_s=10)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from typing import Any

from tuner_callbacks import options
from tuner_callbacks.alerts.channels import AlertChannel, BadCredentialsError, ChannelError, LogChannel, RetryableError
from tuner_callbacks.alerts.message import Alert, check_level, level_at_least
from tuner_callbacks.alerts.redaction import Secret

log = logging.getLogger(__name__)

TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
CHAT_ENV = "TELEGRAM_CHAT_ID"
_STOP = object()  # queued by close(): everything before it is flushed first


class AlertsConfigError(ValueError):
    """An alerts setting that cannot work; the message names the setting (never the token's value)."""


class AlertDispatcher:
    """Delivers alerts to ``channel`` off the calling thread.

    Args:
        channel: an :class:`~tuner_callbacks.alerts.channels.AlertChannel`.
        min_level: alerts below this level ("info" < "warning" < "critical") are not sent.
        max_queue: alerts waiting beyond this many are dropped.
        max_retries: further attempts after a retryable failure.
        backoff_s: the first wait before a retry; doubled at each retry, up to ``max_backoff_s``.

    Example:
        >>> dispatcher = AlertDispatcher(LogChannel(), min_level="warning")
        >>> dispatcher.send(Alert("info", "not sent: below min_level"))
        False
        >>> dispatcher.close(timeout_s=1.0)
        True
    """

    def __init__(self, channel: AlertChannel, min_level: str = "info", max_queue: int = 100, max_retries: int = 3,
                 backoff_s: float = 1.0, max_backoff_s: float = 30.0):
        self.min_level = check_level("min_level", min_level)
        options.integer("max_queue", max_queue, low=1)
        options.integer("max_retries", max_retries, low=0)
        options.number("max_backoff_s", max_backoff_s, low=0)
        options.check("backoff_s", backoff_s, options.number("backoff_s", backoff_s, low=0) <= max_backoff_s,
                      f"in [0, max_backoff_s={max_backoff_s}]")
        self.channel, self.max_queue, self.max_retries = channel, max_queue, max_retries
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.delivered = self.failed = self.dropped = 0
        self._lock = threading.Lock()
        self._waiting = 0  # queued, not yet taken by the loop: what max_queue bounds
        self._closed = self._dead = self._warned_overflow = False
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._consumer: asyncio.Task | None = None
        self._in_flight: Alert | None = None
        self._thread = threading.Thread(target=self._run, name=f"alerts-{channel.name}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"AlertDispatcher({self.channel!r}, min_level={self.min_level!r})"

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"delivered": self.delivered, "failed": self.failed, "dropped": self.dropped,
                    "waiting": self._waiting}

    def send(self, alert: Alert) -> bool:
        """Queues ``alert`` without waiting; returns whether it was queued (False: below min_level, closed, full)."""
        if not level_at_least(alert.level, self.min_level):
            return False
        with self._lock:
            if self._closed:
                log.debug("Alert %r after close(): not sent", alert.title)
                return False
            if self._waiting >= self.max_queue:
                self.dropped += 1
                warn, self._warned_overflow = not self._warned_overflow, True
            else:
                self._waiting += 1
                warn = None
        if warn is None:
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, alert)
                return True
            except RuntimeError:  # the loop is gone (its thread died): an alert is not worth an exception here
                with self._lock:
                    self._waiting -= 1
                    self.dropped += 1
                return False
        if warn:
            log.warning("Alerts: %d alerts are waiting for the %s channel; dropping new ones until it catches up",
                        self.max_queue, self.channel.name)
        return False

    def check(self, timeout_s: float) -> str:
        """Runs the channel's check on the loop, waiting at most ``timeout_s``; returns its description.

        Raises :class:`BadCredentialsError`, :class:`RetryableError`, or ``TimeoutError`` when it got no answer.
        """
        future = asyncio.run_coroutine_threadsafe(self.channel.check(), self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:  # TimeoutError itself from Python 3.11 on
            future.cancel()
            raise TimeoutError(f"the {self.channel.name} channel did not answer within {timeout_s} s") from None

    def close(self, timeout_s: float = 10.0) -> bool:
        """Delivers what is queued within about ``timeout_s`` seconds, then drops the rest.

        Returns whether everything queued was delivered or given up on in time (False: some were abandoned).
        """
        with self._lock:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, _STOP)
        except RuntimeError:  # the loop is gone already
            return True
        # Keep a little of the time limit to cancel the send in flight and close the channel.
        grace = min(0.5, timeout_s / 4)
        self._thread.join(max(timeout_s - grace, 0))
        with self._lock:
            abandoned = self._waiting + (self._in_flight is not None) if self._thread.is_alive() else 0
            self.dropped += abandoned
        if not abandoned:
            return True
        log.warning("Alerts: %d alert(s) not delivered to the %s channel within %s s; dropped",
                    abandoned, self.channel.name, timeout_s)
        try:
            self._loop.call_soon_threadsafe(self._cancel_consumer)
        except RuntimeError:  # it finished just now
            pass
        self._thread.join(grace)
        return False

    def _cancel_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._consumer = self._loop.create_task(self._consume())
        try:
            self._loop.run_until_complete(self._consumer)
        except asyncio.CancelledError:
            pass
        finally:
            try:
                self._loop.run_until_complete(asyncio.wait_for(self.channel.close(), timeout=1.0))
            except Exception as error:  # a channel that cannot close cleanly leaks a socket, not a run
                log.debug("Alerts: closing the %s channel failed: %s", self.channel.name, error)
            self._loop.close()

    async def _consume(self) -> None:
        while True:
            alert = await self._queue.get()
            if alert is _STOP:
                return
            with self._lock:
                self._waiting -= 1
                self._in_flight = alert
            try:
                await self._deliver(alert)
            finally:
                self._in_flight = None

    async def _deliver(self, alert: Alert) -> None:
        attempts = 1 if self._dead else self.max_retries + 1
        error: Exception | None = None
        for attempt in range(attempts):
            try:
                await self.channel.send(alert)
            except RetryableError as retryable:
                error = retryable
                if attempt + 1 < attempts:
                    wait = retryable.retry_after
                    if wait is None:
                        wait = min(self.backoff_s * 2 ** attempt, self.max_backoff_s)
                    log.info("Alerts: %s (%r); retry %d/%d in %.3g s", retryable, alert.title, attempt + 1,
                             self.max_retries, wait)
                    await asyncio.sleep(wait)
                continue
            except ChannelError as permanent:
                error = permanent
                break
            except Exception as unexpected:  # a channel bug must not kill the loop that serves the others
                log.error("Alerts: the %s channel failed on %r: %s: %s", self.channel.name, alert.title,
                          type(unexpected).__name__, unexpected)
                error = unexpected
                break
            self._record_success()
            return
        self._record_failure(alert, error)

    def _record_success(self) -> None:
        with self._lock:
            self.delivered += 1
            revived, self._dead = self._dead, False
        if revived:
            log.warning("Alerts: the %s channel delivers again", self.channel.name)

    def _record_failure(self, alert: Alert, error: Exception | None) -> None:
        with self._lock:
            self.failed += 1
            dies = not self._dead and isinstance(error, RetryableError | BadCredentialsError)
            self._dead = self._dead or dies
        if dies:
            log.warning("Alerts: the %s channel is not getting through (%s); trying each new alert once, dropping "
                        "those beyond %d waiting, until one is delivered", self.channel.name, error, self.max_queue)
        else:
            log.log(logging.DEBUG if self._dead else logging.WARNING, "Alerts: %r not delivered: %s", alert.title,
                    error)


def build_dispatcher(token: str | Secret | None = None, chat_id: int | str | None = None, base_url: str | None = None,
                     min_level: str = "info", timeout_s: float = 10.0, min_interval_s: float | None = None,
                     **dispatcher_options: Any) -> AlertDispatcher:
    """A dispatcher to Telegram when a token is given or in ``TELEGRAM_BOT_TOKEN``, else to the log.

    ``chat_id`` falls back to ``TELEGRAM_CHAT_ID``; ``base_url`` to Telegram's API. Other keyword arguments
    (``max_queue``, ``max_retries``, ``backoff_s``, ``max_backoff_s``) go to :class:`AlertDispatcher`.
    """
    token = token or os.environ.get(TOKEN_ENV) or None  # an empty variable counts as unset
    chat_id = chat_id if chat_id not in (None, "") else (os.environ.get(CHAT_ENV) or None)
    if token is None:
        log.info("Alerts: no bot token (`token` or %s); alerts go to the log", TOKEN_ENV)
        return AlertDispatcher(LogChannel(), min_level=min_level, **dispatcher_options)
    if chat_id is None:
        raise AlertsConfigError(f"a bot token is set but no chat: set `chat_id` or {CHAT_ENV}")
    from tuner_callbacks.alerts.telegram_channel import TELEGRAM_API, TelegramChannel

    channel = TelegramChannel(token, chat_id, base_url=base_url or TELEGRAM_API, timeout_s=timeout_s,
                              min_interval_s=min_interval_s)
    return AlertDispatcher(channel, min_level=min_level, **dispatcher_options)
