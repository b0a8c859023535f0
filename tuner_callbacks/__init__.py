"""Lightning callbacks that tune and watch a run, in anyone's Trainer.

Names are imported on first use: ``python -m tuner_callbacks.watch`` and the other command-line tools start
without importing PyTorch Lightning, and ``from tuner_callbacks import MetricHistory`` still works.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Anomaly": "tuner_callbacks.history",
    "MetricHistory": "tuner_callbacks.history",
    "ModelRegistry": "tuner_callbacks.registry",
    "ParamScheduler": "tuner_callbacks.scheduling",
    "SmartEarlyStopping": "tuner_callbacks.early_stopping",
    "StopReason": "tuner_callbacks.stop_reason",
    "TelegramAlerts": "tuner_callbacks.alerts",
    "TrialPruning": "tuner_callbacks.pruning",
    "get_stop_reason": "tuner_callbacks.stop_reason",
    "set_stop_reason": "tuner_callbacks.stop_reason",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'tuner_callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return __all__
