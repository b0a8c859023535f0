"""Alerts about training runs and sweeps: Telegram, or the log, or any channel with ``async send(alert)``.

``TelegramAlerts`` is the Lightning callback; ``build_dispatcher`` and the ``*_alert`` templates serve code outside
a Trainer (the sweeper's summary); ``python -m tuner_callbacks.alerts test`` checks a token and chat.
"""

from tuner_callbacks.alerts.callback import TelegramAlerts
from tuner_callbacks.alerts.channels import AlertChannel, BadCredentialsError, ChannelError, LogChannel, RetryableError
from tuner_callbacks.alerts.dispatcher import AlertDispatcher, AlertsConfigError, build_dispatcher
from tuner_callbacks.alerts.message import LEVELS, Alert, render_html, render_text
from tuner_callbacks.alerts.redaction import Secret
from tuner_callbacks.alerts.telegram_channel import TelegramChannel
from tuner_callbacks.alerts.templates import sweep_summary_alert

__all__ = [
    "LEVELS",
    "Alert",
    "AlertChannel",
    "AlertDispatcher",
    "AlertsConfigError",
    "BadCredentialsError",
    "ChannelError",
    "LogChannel",
    "RetryableError",
    "Secret",
    "TelegramAlerts",
    "TelegramChannel",
    "build_dispatcher",
    "render_html",
    "render_text",
    "sweep_summary_alert",
]
