"""MetricMilestone: the first validation at which every condition holds, logged once, kept across a resume."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from tests.helpers.toy_module import CollectingLogger, ToyRegression, toy_loader, toy_trainer
from tuner_callbacks import MetricMilestone

CONDITIONS = {"val/stop": {"min": 0.95}, "val/ratio": {"min": 0.85, "max": 1.15}}


def fit(tmp_path, scripted, max_steps, milestone=None, ckpt_path=None, checkpoint=None):
    torch.manual_seed(0)
    milestone = milestone or MetricMilestone("aligned", CONDITIONS)
    logger = CollectingLogger()
    callbacks = [milestone] + ([checkpoint] if checkpoint else [])
    trainer = toy_trainer(tmp_path, callbacks, max_steps=max_steps, val_check_interval=5, logger=logger,
                          enable_checkpointing=checkpoint is not None)
    trainer.fit(ToyRegression(scripted=scripted), toy_loader(n=64), toy_loader(n=16, seed=1), ckpt_path=ckpt_path)
    return milestone, logger


@pytest.mark.parametrize(
    ("stops", "ratios", "reached_at"),
    [
        ([0.0, 0.5, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 1.0, 1.0], 20),  # both hold from the 4th validation
        ([1.0, 1.0, 1.0, 1.0, 1.0], [2.0, 1.2, 0.85, 0.5, 1.0], 15),  # the bounds are inclusive
        ([1.0, 0.9, 1.0, 1.0, 1.0], [1.0, 1.0, 0.7, 0.7, 0.7], 5),  # first holds at once; later failures change nothing
        ([0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.5, 0.5, math.nan], None),  # never both at once (NaN fails)
    ],
)
def test_first_validation_where_all_conditions_hold(tmp_path, stops, ratios, reached_at):
    milestone, logger = fit(tmp_path, {"val/stop": stops, "val/ratio": ratios}, max_steps=25)
    assert milestone.reached_at == reached_at
    logged = [(step, metrics["milestone/aligned_step"]) for step, metrics in logger.calls
              if "milestone/aligned_step" in metrics]
    assert logged == ([] if reached_at is None else [(reached_at, float(reached_at))])
    assert milestone.latest["val/stop"] == pytest.approx(stops[-1])


def test_a_metric_never_logged_fails_its_condition(tmp_path):
    milestone = MetricMilestone("aligned", {**CONDITIONS, "val/never": {"max": 1.0}})
    fit(tmp_path, {"val/stop": [1.0] * 4, "val/ratio": [1.0] * 4}, max_steps=20, milestone=milestone)
    assert milestone.reached_at is None and math.isnan(milestone.latest["val/never"])


def test_reached_step_survives_a_resume_and_is_not_logged_again(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=10)
    scripted = {"val/stop": [1.0, 1.0, 0.0, 0.0, 0.0, 0.0], "val/ratio": [1.0] * 6}
    first, _ = fit(tmp_path, scripted, max_steps=10, checkpoint=checkpoint)
    assert first.reached_at == 5
    resumed = MetricMilestone("aligned", CONDITIONS)
    # The resumed toy starts its script again, whose first values hold: a new count would say step 15.
    resumed_run, logger = fit(tmp_path, scripted, max_steps=20, milestone=resumed,
                              ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
                              checkpoint=ModelCheckpoint(dirpath=tmp_path / "ckpt2"))
    assert resumed_run.reached_at == 5
    assert not any("milestone/aligned_step" in metrics for _, metrics in logger.calls)


def test_two_milestones_keep_separate_states():
    a, b = MetricMilestone("aligned", CONDITIONS), MetricMilestone("converged", {"val/loss": {"max": 0.1}})
    assert a.state_key != b.state_key


@pytest.mark.parametrize(
    ("name", "conditions", "match"),
    [
        ("has space", CONDITIONS, "`name` must be a word"),
        ("aligned", {}, "`conditions` must be a map of metric names to bounds"),
        ("aligned", {"val/x": {"above": 1}}, r"`conditions.val/x` must be a map of 'min' and/or 'max' to numbers"),
        ("aligned", {"val/x": {"min": "high"}}, r"`conditions.val/x.min` must be a finite number, got 'high'"),
        ("aligned", {"val/x": {"max": math.nan}}, r"`conditions.val/x.max` must be a finite number, got nan"),
        ("aligned", {"val/x": {"min": 2.0, "max": 1.0}}, "min 2.0 is above max 1.0"),
    ],
)
def test_bad_options_are_named(name, conditions, match):
    with pytest.raises(ValueError, match=match):
        MetricMilestone(name, conditions)
