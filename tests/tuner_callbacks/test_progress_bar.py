"""StepProgressBar: the train description names the epoch without a bogus total, and the step against max_steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tuner_callbacks.progress_bar import StepProgressBar

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("limits", "expected"), [
    (dict(max_epochs=-1, max_steps=600), "Epoch 0 · step 0/600"),  # conf/trainer/default.yaml's pairing
    (dict(max_epochs=None, max_steps=600), "Epoch 0 · step 0/600"),
    (dict(max_epochs=3), "Epoch 0/2"),  # Lightning's: the last epoch is 2
    (dict(max_epochs=3, max_steps=600), "Epoch 0/2 · step 0/600"),
])
def test_description_has_no_epoch_total_without_an_epoch_limit(limits, expected):
    bar = StepProgressBar()
    trainer = pl.Trainer(callbacks=[bar], logger=False, enable_checkpointing=False, **limits)
    description = bar.train_description(trainer)
    assert description.rstrip() == expected
    assert len(description) >= len(bar.validation_description)  # padded as Lightning pads it


def train_description_after_fit(tmp_path, **limits) -> str:
    bar = StepProgressBar()
    trainer = toy_trainer(tmp_path, [bar], enable_progress_bar=True, **limits)
    trainer.fit(ToyRegression(), toy_loader(), toy_loader())
    task = next(task for task in bar.progress.tasks if task.id == bar.train_progress_bar_id)
    return task.description.rstrip()


def test_the_bar_of_a_step_bounded_run_shows_epoch_and_step(tmp_path):
    # 4 batches an epoch: step 6 is in epoch 1; Lightning's bar would read "Epoch 1/-2".
    assert train_description_after_fit(tmp_path, max_epochs=-1, max_steps=6) == "Epoch 1 · step 6/6"


def test_the_bar_of_an_epoch_bounded_run_keeps_lightnings_epoch_total(tmp_path):
    assert train_description_after_fit(tmp_path, max_epochs=3, max_steps=-1) == "Epoch 2/2"


def test_the_config_and_the_package_give_this_bar():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import tuner_callbacks

    config = OmegaConf.load(ROOT / "conf/callbacks/rich_progress_bar.yaml")
    assert isinstance(instantiate(config.rich_progress_bar), StepProgressBar)
    assert tuner_callbacks.StepProgressBar is StepProgressBar
