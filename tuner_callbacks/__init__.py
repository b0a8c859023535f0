"""Lightning callbacks that tune and watch a run, in anyone's Trainer."""

from tuner_callbacks.early_stopping import SmartEarlyStopping
from tuner_callbacks.history import Anomaly, MetricHistory
from tuner_callbacks.scheduling import ParamScheduler
from tuner_callbacks.stop_reason import StopReason, get_stop_reason, set_stop_reason

__all__ = [
    "Anomaly",
    "MetricHistory",
    "ParamScheduler",
    "SmartEarlyStopping",
    "StopReason",
    "get_stop_reason",
    "set_stop_reason",
]
