"""Why a run stopped: one small record that the stopping callback writes and alerts, registry and sweeper read.

The first reason set in a fit wins: when pruning and early stopping both fire in one step, the first to decide
is the one reported. Stored on the trainer so that any callback, in anyone's Trainer, finds it without knowing
which callback set it. It explains one fit: it stays readable after ``trainer.fit`` returns and is forgotten
when the next ``trainer.fit`` on the same Trainer starts, so that fit can record its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from typing_extensions import override

from tuner_callbacks.lightning_compat import TrainerFn, lightning_bases, pl, rank_zero_warn
from tuner_callbacks.mlflow_utils import is_mlflow_logger

_ATTRIBUTE = "smart_tuner_stop_reason"
# MLflow run tags naming why a run stopped: `python -m tuner_callbacks.watch` and the sweep report read them.
TAG_PREFIX = "stop."


@dataclass(frozen=True)
class StopReason:
    """Example: ``StopReason("early_stopping", "plateau", "val/loss spread 0.1% over 5 checks", 1200, "val/loss",
    0.52)``."""

    source: str  # who stopped the run: "early_stopping", "pruning", "exception", ...
    criterion: str  # which rule: "patience", "divergence", "plateau", "below_floor", "pruned", ...
    message: str  # one human sentence naming the metric and the numbers
    step: int  # trainer.global_step when it was decided
    metric: str | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ForgetOnNextFit(*lightning_bases("Callback")):
    """Clears the trainer's stop reason as a new fit sets up, before any hook of that fit can record one.

    Added to ``trainer.callbacks`` by the first :func:`set_stop_reason`: whoever sets a reason (our callbacks, or
    anyone's), the reason is then tied to its fit, and a Trainer that never records one carries no extra callback.
    """

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == TrainerFn.FITTING:
            clear_stop_reason(trainer)


def set_stop_reason(trainer: pl.Trainer, reason: StopReason) -> bool:
    """Records ``reason`` unless this fit already has one; returns whether it was recorded."""
    if getattr(trainer, _ATTRIBUTE, None) is not None:
        return False
    setattr(trainer, _ATTRIBUTE, reason)
    if not any(isinstance(callback, _ForgetOnNextFit) for callback in trainer.callbacks):
        trainer.callbacks.append(_ForgetOnNextFit())
    return True


def get_stop_reason(trainer: pl.Trainer) -> StopReason | None:
    """Why the trainer's current (or, once it returned, latest) fit stopped; None when nothing recorded a reason."""
    return getattr(trainer, _ATTRIBUTE, None)


def clear_stop_reason(trainer: pl.Trainer) -> None:
    """Forgets the trainer's stop reason (done for you when a new fit starts)."""
    setattr(trainer, _ATTRIBUTE, None)


def stop_reason_tags(reason: StopReason) -> dict[str, str]:
    """The MLflow tags a stop reason is recorded under: ``stop.source``, ``stop.criterion``, ``stop.message``,
    ``stop.step``."""
    return {f"{TAG_PREFIX}{key}": str(value) for key, value in reason.to_dict().items()
            if key in ("source", "criterion", "message", "step")}


def log_stop_reason(trainer: pl.Trainer, reason: StopReason) -> None:
    """On rank zero, tells every logger why the run stopped: metrics ``<source>/stopped`` and
    ``<source>/stopped_by/<criterion>`` (1.0), and on MLflow the :func:`stop_reason_tags`.

    A logger that refuses only warns: it must not end the run it reports on.
    """
    if not trainer.is_global_zero:
        return
    metrics = {f"{reason.source}/stopped": 1.0, f"{reason.source}/stopped_by/{reason.criterion}": 1.0}
    for logger in trainer.loggers:
        try:
            logger.log_metrics(metrics, step=reason.step)
            if is_mlflow_logger(logger):
                for key, value in stop_reason_tags(reason).items():
                    logger.experiment.set_tag(logger.run_id, key, value)
        except Exception as error:
            rank_zero_warn(f"Could not log the stop reason to {type(logger).__name__}: {error}")
