"""The trainer's stop reason: the first of a fit wins, and it belongs to that fit only."""

from __future__ import annotations

import pytorch_lightning as pl

from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tuner_callbacks.early_stopping import SmartEarlyStopping
from tuner_callbacks.stop_reason import StopReason, clear_stop_reason, get_stop_reason, set_stop_reason


class StopsAt(pl.Callback):
    """Stops the run at the given steps with a reason naming the step; notes the reason each fit starts with."""

    def __init__(self, *steps: int):
        self.steps = set(steps)
        self.at_fit_start: list[StopReason | None] = []
        self.recorded: list[bool] = []

    def on_fit_start(self, trainer, pl_module):
        self.at_fit_start.append(get_stop_reason(trainer))

    def on_validation_end(self, trainer, pl_module):
        if trainer.global_step in self.steps:
            reason = StopReason("test", f"step{trainer.global_step}", "scripted stop", trainer.global_step)
            self.recorded.append(set_stop_reason(trainer, reason))
            trainer.should_stop = True


def test_the_first_reason_of_a_fit_wins(tmp_path):
    trainer = toy_trainer(tmp_path, [StopsAt(2)])
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    first = get_stop_reason(trainer)
    assert first.criterion == "step2"
    assert not set_stop_reason(trainer, StopReason("test", "later", "too late", 2))
    assert get_stop_reason(trainer) is first


def test_a_second_fit_starts_without_the_first_fits_reason_and_records_its_own(tmp_path):
    stopper = StopsAt(2, 5)
    trainer = toy_trainer(tmp_path, [stopper])
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    assert get_stop_reason(trainer).criterion == "step2"  # still there once fit returned, for the objective
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    assert trainer.global_step == 5
    assert stopper.at_fit_start == [None, None]
    assert stopper.recorded == [True, True]
    assert get_stop_reason(trainer).criterion == "step5"


def test_a_second_fit_that_does_not_stop_early_reports_no_reason(tmp_path):
    trainer = toy_trainer(tmp_path, [StopsAt(2)], max_steps=4)
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    assert get_stop_reason(trainer).criterion == "step2"
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    assert trainer.global_step == 4
    assert get_stop_reason(trainer) is None


def test_early_stopping_records_the_second_fits_reason(tmp_path):
    stopper = SmartEarlyStopping("val/loss", stopping_threshold=0.5, verbose=False)
    trainer = toy_trainer(tmp_path, [stopper])
    trainer.fit(ToyRegression(scripted={"val/loss": [1.0, 0.4]}), toy_loader(), toy_loader())
    assert get_stop_reason(trainer).step == 2
    trainer.fit(ToyRegression(scripted={"val/loss": [0.3]}), toy_loader(), toy_loader())
    assert get_stop_reason(trainer).step == trainer.global_step == 3
    assert get_stop_reason(trainer) == stopper.stop_reason


def test_clear_stop_reason_forgets_it(tmp_path):
    trainer = toy_trainer(tmp_path, [StopsAt(1)])
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    clear_stop_reason(trainer)
    assert get_stop_reason(trainer) is None
