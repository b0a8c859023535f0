"""FirstStepClock: a Lightning callback that records, in a sweep trial's Optuna user attributes, when the trial's
first training batch began (``first_step_at``, epoch seconds).

The benchmarks add it to the jobs they launch from the command line, so that training code holds no timing of its
own (benchmarks/sweep_scaling.py)::

    python train.py -m ... +callbacks.first_step_clock._target_=benchmarks.first_step_clock.FirstStepClock \\
        '+callbacks.first_step_clock.study_name=${trial.study_name}' \\
        '+callbacks.first_step_clock.storage=${trial.storage}' '+callbacks.first_step_clock.number=${trial.number}'
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl

ATTR_FIRST_STEP_AT = "first_step_at"  # trial user attribute: when the first training batch began (epoch s)


class FirstStepClock(pl.Callback):
    """Notes when the first training batch begins; rank zero writes it to trial ``number`` of the study at the end
    of fitting."""

    def __init__(self, study_name: str, storage: str, number: int) -> None:
        self.study_name, self.storage, self.number = study_name, storage, int(number)
        self.at: float | None = None

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.at is None:
            self.at = time.time()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at is None or not trainer.is_global_zero:
            return
        from tuner_callbacks.optuna_storage import load_trial

        load_trial(self.study_name, self.storage, self.number).set_user_attr(ATTR_FIRST_STEP_AT, self.at)
