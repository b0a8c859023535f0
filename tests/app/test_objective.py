"""What a job returns to the sweeper: one metric, a composite objective with its penalties, several objectives,
or TrialPruned for a pruned trial."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from tacotron2_lightning.app.config_validation import ConfigError
from tacotron2_lightning.app.objective import (
    CompositeObjective,
    InferenceRealTimeFactor,
    SynthesisObjective,
    objective_value,
)
from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tuner_callbacks import MetricHistory
from tuner_callbacks.pruning import TrialPruning

METRICS = {"val/loss": 0.5, "train/loss": 0.3, "val/alignment_score": 0.1}


def history_trainer(tmp_path, val_losses):
    """A toy run whose MetricHistory saw ``val_losses`` at its validations (train/loss is the real toy loss)."""
    history = MetricHistory(export_formats=[])
    trainer = toy_trainer(tmp_path, [history], max_steps=2 * len(val_losses), val_check_interval=2)
    trainer.fit(ToyRegression(learning_rate=0.0, scripted={"val/loss": val_losses}), toy_loader(n=64),
                toy_loader(n=8))
    return trainer, history


def test_the_plain_objective_is_the_metric_and_penalties_add_on_top():
    assert CompositeObjective()(METRICS, {}) == 0.5
    # alignment 0.1 against a 0.25 floor: shortfall (0.25 - 0.1) / 0.25 = 0.6, times weight 2.
    assert CompositeObjective(alignment_weight=2.0)(METRICS, {}) == pytest.approx(0.5 + 2 * 0.6)
    assert CompositeObjective(alignment_weight=2.0)({**METRICS, "val/alignment_score": 0.7}, {}) == 0.5


def gap_growth(history):
    wide = history.wide()
    gaps = (wide["val/loss"] - wide["train/loss"].ffill()).dropna()
    return gaps.iloc[-1] - gaps.min()


def test_the_gap_penalty_is_the_growth_of_val_minus_train_since_its_smallest(tmp_path):
    objective = CompositeObjective(gap_weight=0.5)
    growing, history = history_trainer(tmp_path, [1.0, 2.0, 5.0])
    assert gap_growth(history) > 3.0  # validation loss 1 -> 5 while the frozen model's train loss stays ~1-2
    assert objective({"val/loss": 5.0}, {"trainer": growing}) == pytest.approx(5.0 + 0.5 * gap_growth(history))
    shrinking, history = history_trainer(tmp_path / "b", [5.0, 2.0, 1.0])
    assert gap_growth(history) < 1.0  # only batch-to-batch noise of the train loss
    assert objective({"val/loss": 1.0}, {"trainer": shrinking}) == pytest.approx(1.0 + 0.5 * gap_growth(history))
    assert CompositeObjective(gap_weight=0.5)({"val/loss": 1.0}, {"trainer": toy_trainer(tmp_path, [])}) == 1.0


def test_objective_value_returns_the_metric_the_composite_or_a_tuple(tmp_path):
    cfg = OmegaConf.create({"optimized_metric": "val/loss"})
    assert objective_value(cfg, METRICS, {}) == 0.5
    cfg.objective = {"_target_": "tacotron2_lightning.app.objective.CompositeObjective", "alignment_weight": 1.0}
    assert objective_value(cfg, METRICS, {}) == pytest.approx(1.1)
    cfg.objective = ["val/loss", "train/loss"]
    assert objective_value(cfg, METRICS, {}) == (0.5, 0.3)
    cfg.objective = ["val/nope"]
    with pytest.raises(ConfigError, match="val/nope"):
        objective_value(cfg, METRICS, {})


def test_a_pruned_run_raises_trial_pruned(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.1))
    pruning = TrialPruning(monitor="val/loss", trial=study.ask())
    trainer = toy_trainer(tmp_path, [pruning], max_steps=4, val_check_interval=2)
    trainer.fit(ToyRegression(scripted={"val/loss": [1.0]}), toy_loader(n=64), toy_loader(n=8))
    with pytest.raises(optuna.TrialPruned, match="pruned at step 2"):
        objective_value(OmegaConf.create({"optimized_metric": "val/loss"}), METRICS, {"trainer": trainer})


def test_inference_real_time_factor_times_free_running_synthesis(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg()
    module, datamodule = instantiate(cfg.model), instantiate(cfg.data)
    datamodule.setup("fit")
    measure = InferenceRealTimeFactor(utterances=2, max_decoder_steps=20)
    torch.manual_seed(0)  # the prenet's dropout stays on at inference, as NVIDIA's: the same seed, the same stops
    rtf = measure({}, {"module": module, "datamodule": datamodule})
    assert math.isfinite(rtf) and rtf > 0
    assert module.model.training  # left as it was
    # The audio timed is what the decoder produced: its frames (r per step, each hop_length samples).
    text, lengths = next(iter(datamodule.val_dataloader()))[:2]
    module.model.eval()
    torch.manual_seed(0)
    frames = module.model.inference(text[:2], lengths[:2], max_decoder_steps=20, warn_at_cap=False).lengths
    assert measure.audio_seconds == int(frames.sum()) * module.audio.hop_length / module.audio.sampling_rate


@pytest.mark.parametrize("kwargs, named", [({"gap_weight": -1}, "gap_weight"), ({"min_alignment": 0}, "min_alignment")])
def test_bad_objective_settings_are_named(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        CompositeObjective(**kwargs)


SPOKEN = {"val/cepstral_decorrelation_sl": 0.6, "val/mcd": 5.5, "val/gate_stop_rate": 1.0, "val/duration_ratio": 1.1}


@pytest.mark.parametrize("changed, expected", [
    ({}, {"gate_stop_rate": -0.05, "duration_ratio": -0.05}),  # speaks well: feasible, with 5 % margins
    ({"val/gate_stop_rate": 0.25}, {"gate_stop_rate": 0.70}),  # 3/4 never stop: 0.7 short of 0.95
    ({"val/duration_ratio": 1.5}, {"duration_ratio": 0.35}),  # 50 % too long: 0.35 beyond 1.15
    ({"val/duration_ratio": 0.5}, {"duration_ratio": 0.35}),  # too short counts the same
])
def test_the_synthesis_objective_is_the_metric_alone_with_gate_and_duration_constraints(changed, expected):
    objective = SynthesisObjective()
    metrics = {**SPOKEN, **changed}
    assert objective(metrics, {}) == pytest.approx(0.6)  # the value never carries a penalty by default
    constraints = objective.constraints(metrics)
    assert constraints == pytest.approx({"gate_stop_rate": -0.05, "duration_ratio": -0.05, **expected})
    result = objective.result(metrics, {})
    assert result.values == pytest.approx((0.6,)) and result.constraints == pytest.approx(constraints)
    assert result.feasible == (not changed)


def test_the_penalty_fallback_adds_the_violations_for_samplers_without_constraints():
    objective = SynthesisObjective(infeasible_penalty=2.0)
    assert objective(SPOKEN, {}) == pytest.approx(0.6)  # feasible: no penalty
    assert objective({**SPOKEN, "val/gate_stop_rate": 0.5, "val/duration_ratio": 1.25}, {}) == pytest.approx(
        0.6 + 2.0 * (0.45 + 0.10))


def test_a_sweep_job_returns_the_value_with_its_constraints_for_the_trial():
    cfg = OmegaConf.create({"objective": {"_target_": "tacotron2_lightning.app.objective.SynthesisObjective"}})
    result = objective_value(cfg, {**SPOKEN, "val/gate_stop_rate": 0.5}, {})
    assert result.values == pytest.approx((0.6,))
    assert result.constraints == pytest.approx({"gate_stop_rate": 0.45, "duration_ratio": -0.05})
    assert not result.feasible and float(result) == pytest.approx(0.6)


def test_the_synthesis_objective_names_a_metric_that_was_not_logged():
    with pytest.raises(ConfigError, match="objective.metric='val/cepstral_decorrelation_sl' was not logged"):
        SynthesisObjective()({"val/loss": 1.0}, {})
    with pytest.raises(ConfigError, match="objective.gate_metric='val/gate_stop_rate' was not logged"):
        SynthesisObjective().constraints({"val/duration_ratio": 1.0})


@pytest.mark.parametrize("kwargs, named", [({"infeasible_penalty": -1}, "infeasible_penalty"),
                                           ({"min_gate_stop_rate": "most"}, "min_gate_stop_rate"),
                                           ({"min_gate_stop_rate": 95}, "min_gate_stop_rate"),
                                           ({"duration_range": [1.2, 0.8]}, "duration_range"),
                                           ({"duration_range": 0.15}, "duration_range")])
def test_bad_synthesis_objective_settings_are_named(kwargs, named):
    with pytest.raises(ConfigError, match=named):
        SynthesisObjective(**kwargs)


def test_search_config_judges_trials_and_prunes_on_the_same_synthesis_objective(make_cfg):
    cfg = make_cfg(["hparams=search"])
    assert cfg.objective._target_.endswith("SynthesisObjective")
    assert cfg.callbacks.trial_pruning.objective == cfg.objective
    teacher_forced = make_cfg(["hparams=search", "objective=teacher_forced"])
    assert teacher_forced.callbacks.trial_pruning.objective._target_.endswith("CompositeObjective")

