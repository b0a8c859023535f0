"""Alerts about training runs and sweeps: Telegram, or the log, or any channel with ``async send(alert)``.

``TelegramAlerts`` is the Lightning callback; ``build_dispatcher`` and the ``*_alert`` templates serve code outside
a Trainer (the sweeper's summary); ``python -m tuner_callbacks.alerts test`` checks a token and chat.
"""

from __future__ import annotations

from tuner_callbacks._lazy import lazy_exports

_WHERE = {
    "TelegramAlerts": "tuner_callbacks.alerts.callback",
    **{name: "tuner_callbacks.alerts.channels" for name in
       ("AlertChannel", "BadCredentialsError", "ChannelError", "LogChannel", "RetryableError")},
    **{name: "tuner_callbacks.alerts.dispatcher" for name in ("AlertDispatcher", "AlertsConfigError",
                                                              "build_dispatcher")},
    **{name: "tuner_callbacks.alerts.message" for name in ("LEVELS", "Alert", "render_html", "render_text")},
    "Secret": "tuner_callbacks.alerts.redaction",
    "TelegramChannel": "tuner_callbacks.alerts.telegram_channel",
    "sweep_summary_alert": "tuner_callbacks.alerts.templates",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
