"""Lightning callbacks that tune and watch a run, in anyone's Trainer.

Names are imported on first use: ``python -m tuner_callbacks.watch`` and the other command-line tools start
without importing PyTorch Lightning, and ``from tuner_callbacks import MetricHistory`` still works.
"""

from __future__ import annotations

from tuner_callbacks._lazy import lazy_exports

_WHERE = {
    "AlignmentGuard": "tuner_callbacks.alignment_guard",
    "Anomaly": "tuner_callbacks.history",
    "LearningCurvePruner": "tuner_callbacks.learning_curve_pruner",
    "MetricHistory": "tuner_callbacks.history",
    "MetricMilestone": "tuner_callbacks.milestone",
    "ModelRegistry": "tuner_callbacks.registry",
    "ParamScheduler": "tuner_callbacks.param_scheduler",
    "PreemptionCheckpoint": "tuner_callbacks.preemption",
    "SmartEarlyStopping": "tuner_callbacks.early_stopping",
    "StepProgressBar": "tuner_callbacks.progress_bar",
    "StopReason": "tuner_callbacks.stop_reason",
    "TelegramAlerts": "tuner_callbacks.alerts",
    "TrialPruning": "tuner_callbacks.pruning",
    "WarmupPruner": "tuner_callbacks.warmup_pruner",
    "get_stop_reason": "tuner_callbacks.stop_reason",
    "set_stop_reason": "tuner_callbacks.stop_reason",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
