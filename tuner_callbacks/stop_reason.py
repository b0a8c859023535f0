"""Why a run stopped: one small record that the stopping callback writes and alerts, registry and sweeper read.

The first reason set wins: when pruning and early stopping both fire in one step, the first to decide is the
one reported. Stored on the trainer so that any callback, in anyone's Trainer, finds it without knowing
which callback set it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pytorch_lightning as pl

_ATTRIBUTE = "smart_tuner_stop_reason"


@dataclass(frozen=True)
class StopReason:
    """Example: ``StopReason("early_stopping", "plateau", "val/loss spread 0.1% over 5 checks", 1200, "val/loss",
    0.52)``."""

    source: str  # who stopped the run: "early_stopping", "pruning", "exception", ...
    criterion: str  # which rule: "patience", "divergence", "plateau", "alignment_failure", "pruned", ...
    message: str  # one human sentence naming the metric and the numbers
    step: int  # trainer.global_step when it was decided
    metric: str | None = None
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_stop_reason(trainer: pl.Trainer, reason: StopReason) -> bool:
    """Records ``reason`` unless one is already set; returns whether it was recorded."""
    if getattr(trainer, _ATTRIBUTE, None) is not None:
        return False
    setattr(trainer, _ATTRIBUTE, reason)
    return True


def get_stop_reason(trainer: pl.Trainer) -> StopReason | None:
    return getattr(trainer, _ATTRIBUTE, None)
