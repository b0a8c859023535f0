"""SmartEarlyStopping: scripted metric sequences -> the step and the reason it stops, Lightning's semantics kept.

Validation runs after every step, so the i-th scripted value is seen at global step i (counting from 1), and a
script's last value repeats after its end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason

from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import repeated_loader, synthetic_batch, tiny_config
from tests.helpers.toy_module import CollectingLogger, ToyRegression, toy_loader, toy_trainer
from tuner_callbacks.early_stopping import SmartEarlyStopping
from tuner_callbacks.lightning_compat import LIGHTNING_PACKAGES
from tuner_callbacks.stop_reason import get_stop_reason

ROOT = Path(__file__).resolve().parents[2]
NAN, INF = math.nan, math.inf
MAX_STEPS = 20
FALLING = [0.9**i for i in range(MAX_STEPS)]  # improves by 10% a check: no rule should stop it
OVERFIT = "train/scripted"  # scripted training metric: the real train/loss is logged per step by ToyRegression
R2 = "val/r2"  # scripted coefficient of determination of the toy regression: higher is better, 1.0 at best


class ScriptedToy(ToyRegression):
    """ToyRegression whose position in the script survives a checkpoint, so a resumed run reads on."""

    def on_save_checkpoint(self, checkpoint):
        checkpoint["validations"] = self.validations

    def on_load_checkpoint(self, checkpoint):
        self.validations = checkpoint["validations"]


def fit(tmp_path, callbacks, scripted, module=None, ckpt_path=None, **trainer_kwargs) -> pl.Trainer:
    trainer = toy_trainer(tmp_path, callbacks, **{"max_steps": MAX_STEPS, **trainer_kwargs})
    trainer.fit(module or ScriptedToy(scripted=scripted), toy_loader(), toy_loader(), ckpt_path=ckpt_path)
    return trainer


def smart(**kwargs) -> SmartEarlyStopping:
    return SmartEarlyStopping(**{"verbose": False, **kwargs})


def stop_of(trainer: pl.Trainer, callback: SmartEarlyStopping) -> tuple[int | None, str | None]:
    """(stop step, criterion), or (None, None) when the run reached max_steps without a stop."""
    if callback.stop_reason is None:
        assert trainer.global_step == trainer.max_steps and get_stop_reason(trainer) is None
        return None, None
    assert trainer.global_step == callback.stopped_step == callback.stop_reason.step
    assert get_stop_reason(trainer) == callback.stop_reason
    return callback.stopped_step, callback.stop_reason.criterion


# id -> (SmartEarlyStopping arguments, scripted metrics, expected stop step, expected criterion)
CASES = {
    # Lightning's rules
    "patience": (dict(patience=3), {"val/loss": [1.0, 0.9, 0.8, 0.85, 0.81, 0.82]}, 6, "patience"),
    "patience-min-delta": (dict(patience=2, min_delta=0.05), {"val/loss": [1.0, 0.9, 0.88, 0.86, 0.84]}, 4, "patience"),
    "patience-mode-max": (dict(patience=3, mode="max"), {"val/loss": [0.1, 0.5, 0.4, 0.45, 0.5, 0.3]}, 5, "patience"),
    "patience-never": (dict(patience=3), {"val/loss": FALLING}, None, None),
    "non-finite-nan": (dict(), {"val/loss": [1.0, 0.9, NAN]}, 3, "non_finite"),
    "non-finite-inf": (dict(), {"val/loss": [1.0, INF]}, 2, "non_finite"),
    "stopping-threshold": (dict(stopping_threshold=0.5), {"val/loss": [1.0, 0.7, 0.5, 0.45]}, 4, "stopping_threshold"),
    "divergence-threshold": (dict(divergence_threshold=2.0), {"val/loss": [1.0, 2.0, 2.5]}, 3, "divergence_threshold"),
    # divergence: NaN/Inf, or worse than factor x best
    "divergence-factor": (dict(patience=100, divergence={"factor": 3.0}), {"val/loss": [1.0, 0.5, 0.9, 1.6]}, 4,
                          "divergence"),
    "divergence-below-factor": (dict(patience=100, divergence={"factor": 3.0}), {"val/loss": [1.0, 0.5, 1.4, 1.45]},
                                None, None),
    "divergence-nan": (dict(check_finite=False, divergence={}), {"val/loss": [1.0, NAN]}, 2, "divergence"),
    "divergence-mode-max": (dict(patience=100, mode="max", divergence={"factor": 3.0}),
                            {"val/loss": [0.9, 0.6, 0.29]}, 3, "divergence"),
    # gradient: relative least-squares slope over the window shows less progress than min_slope
    "gradient-flat": (dict(patience=100, gradient={"window": 3, "min_slope": 0.01}), {"val/loss": [1.0, 0.5, 0.5]},
                      4, "gradient"),
    "gradient-worsening": (dict(patience=100, gradient={"window": 3, "min_slope": 0.01}),
                           {"val/loss": [1.0, 1.1, 1.2, 1.3]}, 3, "gradient"),
    "gradient-falling": (dict(patience=100, gradient={"window": 3, "min_slope": 0.01}), {"val/loss": FALLING}, None,
                         None),
    "gradient-mode-max": (dict(patience=100, mode="max", gradient={"window": 3, "min_slope": 0.01}),
                          {"val/loss": [0.1, 0.2, 0.3]}, 5, "gradient"),
    # plateau: relative spread over the window below the bound
    "plateau": (dict(patience=100, plateau={"window": 4, "min_relative_spread": 0.01}),
                {"val/loss": [1.0, 0.5, 0.3, 0.2, 0.2, 0.201, 0.2]}, 7, "plateau"),
    "plateau-creeping": (dict(patience=3, plateau={"window": 4, "min_relative_spread": 0.01}),
                         {"val/loss": [1.0 - 0.001 * i for i in range(MAX_STEPS)]}, 4, "plateau"),
    "plateau-noisy": (dict(patience=100, plateau={"window": 4, "min_relative_spread": 0.01}),
                      {"val/loss": [1.0, 0.8] * 10}, None, None),
    # overfitting: validation - training gap growing, or their ratio above a bound
    "overfitting-growing": (dict(patience=100, overfitting={"train_monitor": OVERFIT, "growing_checks": 3}),
                            {"val/loss": [1.0, 0.9, 0.85, 0.86, 0.88, 0.9], OVERFIT: [1.0, 0.8, 0.7, 0.6, 0.5, 0.4]},
                            4, "overfitting"),
    "overfitting-gap-wobbles": (dict(patience=100, overfitting={"train_monitor": OVERFIT, "growing_checks": 3}),
                                {"val/loss": [1.0, 0.9, 0.95] + [0.9, 0.95] * 9, OVERFIT: [0.8]}, None, None),
    "overfitting-ratio": (dict(patience=100, overfitting={"train_monitor": OVERFIT, "growing_checks": None,
                                                          "max_ratio": 1.5}),
                          {"val/loss": [1.0], OVERFIT: [1.0, 0.8, 0.6]}, 3, "overfitting"),
    "overfitting-ratio-raw": (dict(patience=100, overfitting={"train_monitor": OVERFIT, "growing_checks": None,
                                                              "max_ratio": 1.5}),
                              {"val/loss": [1.0], OVERFIT: [1.0, 0.5]}, 2, "overfitting"),
    "overfitting-ratio-smoothed": (dict(patience=100, overfitting={"train_monitor": OVERFIT, "growing_checks": None,
                                                                   "max_ratio": 1.5, "smoothing": 0.5}),
                                   {"val/loss": [1.0], OVERFIT: [1.0, 0.5]}, 3, "overfitting"),
    "overfitting-mode-max": (dict(patience=100, mode="max", overfitting={"train_monitor": OVERFIT}),
                             {"val/loss": [0.5, 0.55, 0.56, 0.56, 0.55], OVERFIT: [0.5, 0.6, 0.7, 0.8, 0.9]}, 4,
                             "overfitting"),
    # floor: another metric below min_value for `patience` checks in a row once after_steps is reached
    "floor-below": (dict(floor={"monitor": R2, "min_value": 0.3, "after_steps": 3}),
                    {"val/loss": FALLING, R2: [0.1]}, 3, "below_floor"),
    "floor-defaults": (dict(floor={"monitor": R2, "min_value": 0.3}), {"val/loss": FALLING, R2: [0.1]}, 1,
                       "below_floor"),
    "floor-patience": (dict(floor={"monitor": R2, "min_value": 0.3, "after_steps": 3, "patience": 2}),
                       {"val/loss": FALLING, R2: [0.1]}, 4, "below_floor"),
    "floor-patience-in-a-row": (dict(floor={"monitor": R2, "min_value": 0.3, "patience": 2}),
                                {"val/loss": FALLING, R2: [0.1, 0.5] * 10}, None, None),
    "floor-reached": (dict(floor={"monitor": R2, "min_value": 0.3, "after_steps": 3}),
                      {"val/loss": FALLING, R2: [0.1, 0.2, 0.35, 0.5]}, None, None),
    "floor-at-the-floor": (dict(floor={"monitor": R2, "min_value": 0.3}), {"val/loss": FALLING, R2: [0.3]}, None,
                           None),
    "floor-falls-below": (dict(floor={"monitor": R2, "min_value": 0.3}),
                          {"val/loss": FALLING, R2: [0.5, 0.5, 0.5, 0.1]}, 4, "below_floor"),
    "floor-nan": (dict(floor={"monitor": R2, "min_value": 0.3}), {"val/loss": FALLING, R2: [0.5, NAN]}, 2,
                  "below_floor"),
    "floor-negative": (dict(floor={"monitor": R2, "min_value": -1.0}), {"val/loss": FALLING, R2: [-0.5, -2.0]}, 2,
                       "below_floor"),
    # several rules at one check: the most alarming is reported
    "priority": (dict(patience=1, stopping_threshold=0.5, divergence={"factor": 1.5}),
                 {"val/loss": [1.0, 0.9, 2.0]}, 3, "divergence"),
}


@pytest.mark.parametrize("case", CASES)
def test_scripted_sequence_stops_at_the_expected_step_for_the_expected_reason(case, tmp_path):
    arguments, scripted, step, criterion = CASES[case]
    callback = smart(**arguments)
    trainer = fit(tmp_path, [callback], scripted)
    assert stop_of(trainer, callback) == (step, criterion)


# case id, warm-up, expected step: every rule keeps counting through the warm-up and stops at the first check
# after it where it still holds (a growing gap that stopped growing no longer holds).
WARM_UPS = [
    ("patience", dict(min_steps=9), 9),
    ("patience", dict(min_epochs=2), 9),  # 4 steps an epoch: epoch 2 starts at step 9
    ("non-finite-nan", dict(min_steps=5), 5),
    ("stopping-threshold", dict(min_steps=6), 6),
    ("divergence-factor", dict(min_steps=7), 7),
    ("gradient-flat", dict(min_steps=8), 8),
    ("plateau", dict(min_steps=10), 10),
    ("overfitting-ratio", dict(min_steps=6), 6),
    ("overfitting-growing", dict(min_steps=6), 6),
    ("overfitting-growing", dict(min_steps=8), None),
    ("floor-below", dict(min_steps=5), 5),
]


@pytest.mark.parametrize(("case", "warm_up", "step"), WARM_UPS,
                         ids=[f"{case}-{','.join(f'{k}={v}' for k, v in w.items())}" for case, w, _ in WARM_UPS])
def test_warm_up_delays_every_rule(case, warm_up, step, tmp_path):
    arguments, scripted, _, criterion = CASES[case]
    callback = smart(**arguments, **warm_up)
    trainer = fit(tmp_path, [callback], scripted)
    assert stop_of(trainer, callback) == ((step, criterion) if step else (None, None))


LIGHTNING_REASONS = {EarlyStoppingReason.PATIENCE_EXHAUSTED: "patience", EarlyStoppingReason.NON_FINITE_METRIC:
                     "non_finite", EarlyStoppingReason.STOPPING_THRESHOLD: "stopping_threshold",
                     EarlyStoppingReason.DIVERGENCE_THRESHOLD: "divergence_threshold",
                     EarlyStoppingReason.NOT_STOPPED: None}


@pytest.mark.parametrize(("arguments", "values", "trainer_kwargs"), [
    (dict(patience=3), [1.0, 0.9, 0.8, 0.85, 0.81, 0.82], {}),
    (dict(patience=2, min_delta=0.05), [1.0, 0.9, 0.88, 0.86, 0.84], {}),
    (dict(patience=2, min_delta=0.1), [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], {}),  # exactly min_delta, in float32
    (dict(patience=3, mode="max"), [0.1, 0.5, 0.4, 0.45, 0.5, 0.3], {}),
    (dict(patience=0), [1.0, 1.0], {}),
    (dict(stopping_threshold=0.5), [1.0, 0.7, 0.5, 0.45], {}),
    (dict(stopping_threshold=0.1), [1.0, 0.1, 0.1, 0.1, 0.1, 0.1], {}),  # float32(0.1) against 0.1
    (dict(mode="max", stopping_threshold=0.9), [0.5, 0.9, 0.95], {}),
    (dict(divergence_threshold=2.0), [1.0, 2.0, 2.5], {}),
    (dict(check_finite=True), [1.0, NAN], {}),
    (dict(check_finite=False, patience=2), [1.0, NAN], {}),
    (dict(patience=3), FALLING, {}),
    # validation once per epoch: both check on train epoch end
    (dict(patience=2), [1.0, 0.9, 0.95, 0.95], dict(val_check_interval=1.0, check_val_every_n_epoch=1)),
])
def test_lightning_rules_stop_where_lightnings_early_stopping_does(arguments, values, trainer_kwargs, tmp_path):
    ours = smart(**arguments)
    ours_trainer = fit(tmp_path, [ours], {"val/loss": values}, **trainer_kwargs)
    theirs = EarlyStopping("val/loss", **arguments)
    theirs_trainer = fit(tmp_path, [theirs], {"val/loss": values}, **trainer_kwargs)
    assert ours_trainer.global_step == theirs_trainer.global_step
    assert ours.stop_reason is None or ours.stop_reason.criterion == LIGHTNING_REASONS[theirs.stopping_reason]
    assert (ours.stop_reason is None) == (theirs.stopping_reason == EarlyStoppingReason.NOT_STOPPED)


def test_plateau_stops_a_creeping_metric_that_lightning_never_stops(tmp_path):
    creeping = {"val/loss": [1.0 - 0.001 * i for i in range(MAX_STEPS)]}  # improves a little at every check
    assert fit(tmp_path, [EarlyStopping("val/loss", patience=3)], creeping).global_step == MAX_STEPS
    callback = smart(patience=3, plateau={"window": 5, "min_relative_spread": 0.005})
    trainer = fit(tmp_path, [callback], creeping)
    assert stop_of(trainer, callback) == (5, "plateau")
    assert "0.4" in callback.stop_reason.message  # spread 0.004 over a mean near 1: 0.4%


def test_overfitting_reads_the_latest_per_step_train_loss(tmp_path):
    # ToyRegression logs its real train/loss per step (about 1..10 from its random start): far below 1000.
    callback = smart(overfitting={"growing_checks": None, "max_ratio": 50.0})
    trainer = fit(tmp_path, [callback], {"val/loss": [1000.0]})
    assert stop_of(trainer, callback) == (1, "overfitting")
    assert callback.train_ema == pytest.approx(float(trainer.callback_metrics["train/loss"]))


class RefusingLogger(CollectingLogger):
    def log_metrics(self, metrics, step=None):
        if any(key.startswith("early_stopping/") for key in metrics):
            raise OSError("disk full")


@pytest.fixture
def lightning_log():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    # lightning_utilities keeps one rank-zero logger, named after whichever Lightning package was imported last.
    loggers = [logging.getLogger(f"{package}.utilities.rank_zero") for package in LIGHTNING_PACKAGES]
    for logger in loggers:
        logger.addHandler(handler)
    yield records
    for logger in loggers:
        logger.removeHandler(handler)


def test_the_reason_reaches_the_trainer_the_log_and_every_logger(tmp_path, lightning_log):
    collecting = CollectingLogger()
    callback = smart(patience=3)
    with pytest.warns(UserWarning, match="RefusingLogger.*disk full"):  # one failing logger does not fail the run
        trainer = fit(tmp_path, [callback], {"val/loss": [1.0, 0.9, 0.8, 0.85, 0.81, 0.82]},
                      logger=[RefusingLogger(), collecting])
    reason = get_stop_reason(trainer)
    assert (reason.source, reason.criterion, reason.step) == ("early_stopping", "patience", 6)
    assert reason.metric == "val/loss"
    assert reason.value == pytest.approx(0.82) and "3 checks" in reason.message and "0.8" in reason.message
    logged = [(metrics, step) for step, metrics in collecting.calls if "early_stopping/stopped" in metrics]
    assert logged == [({"early_stopping/stopped": 1.0, "early_stopping/stopped_by/patience": 1.0}, 6)]
    messages = [record.getMessage() for record in lightning_log]
    assert any("(patience)" in m and reason.message in m for m in messages), messages


def test_mlflow_gets_the_reason_as_tags(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a file store is the quickest to set up in a test
    from mlflow.tracking import MlflowClient
    from pytorch_lightning.loggers import MLFlowLogger

    uri = (tmp_path / "mlruns").as_uri()
    logger = MLFlowLogger(experiment_name="early_stopping", tracking_uri=uri)
    fit(tmp_path, [smart(stopping_threshold=0.5)], {"val/loss": [1.0, 0.4]}, logger=logger)
    run = MlflowClient(tracking_uri=uri).get_run(logger.run_id)
    assert run.data.tags["stop.criterion"] == "stopping_threshold"
    assert "0.4" in run.data.tags["stop.message"]
    assert run.data.metrics["early_stopping/stopped"] == 1.0


# id -> (arguments, script, steps before the checkpoint): without the saved state each would stop later or never.
RESUMED = {
    "patience": (dict(patience=3), {"val/loss": [1.0, 0.9, 0.95]}, 3),
    "plateau": (CASES["plateau"][0], CASES["plateau"][1], 5),
    "gradient": (CASES["gradient-flat"][0], CASES["gradient-flat"][1], 3),
    "divergence": (CASES["divergence-factor"][0], CASES["divergence-factor"][1], 2),
    "overfitting": (CASES["overfitting-growing"][0], CASES["overfitting-growing"][1], 2),
    "overfitting-smoothed": (CASES["overfitting-ratio-smoothed"][0], CASES["overfitting-ratio-smoothed"][1], 1),
    "floor": (dict(floor={"monitor": R2, "min_value": 0.3, "patience": 3}), {"val/loss": FALLING, R2: [0.1]}, 2),
}


@pytest.mark.parametrize("case", RESUMED)
def test_a_resumed_run_stops_where_the_uninterrupted_run_stops(case, tmp_path):
    arguments, scripted, interrupt_at = RESUMED[case]
    uninterrupted = smart(**arguments)
    expected = stop_of(fit(tmp_path, [uninterrupted], scripted), uninterrupted)
    assert expected[0] > interrupt_at
    first = smart(**arguments)
    path = tmp_path / "interrupted.ckpt"
    fit(tmp_path, [first], scripted, max_steps=interrupt_at).save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["callbacks"][first.state_key]  # plain values only
    assert saved == first.state_dict()
    resumed = smart(**arguments)
    trainer = fit(tmp_path, [resumed], scripted, ckpt_path=path)
    assert stop_of(trainer, resumed) == expected


def test_the_floor_reason_names_the_metric_its_value_the_floor_and_the_checks(tmp_path):
    callback = smart(floor={"monitor": R2, "min_value": 0.3, "after_steps": 2, "patience": 3})
    trainer = fit(tmp_path, [callback], {"val/loss": FALLING, R2: [0.125]})
    assert stop_of(trainer, callback) == (4, "below_floor")
    reason = callback.stop_reason
    assert (reason.metric, reason.value) == (R2, pytest.approx(0.125))
    for text in (R2, "0.125", "0.3", "3 checks", "step 2"):
        assert text in reason.message, (text, reason.message)


def test_a_checkpoint_from_before_the_floor_rule_resumes_its_alignment_counter(tmp_path):
    # Checkpoints written when the rule was Tacotron2's `alignment` keep the counter as alignment_low_count.
    arguments, scripted, interrupt_at = RESUMED["floor"]
    first = smart(**arguments)
    path = tmp_path / "old.ckpt"
    fit(tmp_path, [first], scripted, max_steps=interrupt_at).save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["callbacks"][first.state_key]
    state["alignment_low_count"] = state.pop("floor_low_count")
    torch.save(checkpoint, path)
    resumed = smart(**arguments)
    trainer = fit(tmp_path, [resumed], scripted, ckpt_path=path)
    assert stop_of(trainer, resumed) == (3, "below_floor")


def test_two_instances_keep_their_own_state_in_one_checkpoint(tmp_path):
    scripted = {"val/loss": [1.0, 0.5, 0.7, 0.8, 0.9], "val/accuracy": [0.2, 0.6, 0.4]}
    loss, accuracy = smart(patience=100), smart(monitor="val/accuracy", mode="max", patience=100)
    path = tmp_path / "both.ckpt"
    fit(tmp_path, [loss, accuracy], scripted, max_steps=3).save_checkpoint(path)
    states = torch.load(path, weights_only=True)["callbacks"]
    assert loss.state_key != accuracy.state_key
    assert states[loss.state_key]["best_score"] == pytest.approx(0.5)
    assert states[accuracy.state_key]["best_score"] == pytest.approx(0.6)
    loss, accuracy = smart(patience=100), smart(monitor="val/accuracy", mode="max", patience=100)
    fit(tmp_path, [loss, accuracy], scripted, max_steps=5, ckpt_path=path)
    assert (loss.best_score, loss.wait_count) == (pytest.approx(0.5), 3)
    assert (accuracy.best_score, accuracy.wait_count) == (pytest.approx(0.6), 3)


@pytest.mark.parametrize(("arguments", "error", "named"), [
    (dict(mode="avg"), ValueError, ["`mode`", "'avg'"]),
    (dict(monitor=""), ValueError, ["`monitor`", "''"]),
    (dict(patience=-1), ValueError, ["`patience`", "-1"]),
    (dict(patience=1.5), ValueError, ["`patience`", "1.5"]),
    (dict(patience=True), ValueError, ["`patience`", "True"]),
    (dict(min_delta=-0.1), ValueError, ["`min_delta`", "-0.1"]),
    (dict(stopping_threshold=NAN), ValueError, ["`stopping_threshold`", "nan"]),
    (dict(divergence_threshold="high"), ValueError, ["`divergence_threshold`", "'high'"]),
    (dict(min_steps=-5), ValueError, ["`min_steps`", "-5"]),
    (dict(min_epochs="2"), ValueError, ["`min_epochs`", "'2'"]),
    (dict(gradient=5), TypeError, ["`gradient`", "5"]),
    (dict(gradient={"window": 1}), ValueError, ["`gradient.window`", "1"]),
    (dict(gradient={"windw": 5}), ValueError, ["`gradient`", "'windw'", "window"]),
    (dict(gradient={"min_slope": -0.1}), ValueError, ["`gradient.min_slope`", "-0.1"]),
    (dict(plateau={"min_relative_spread": 0}), ValueError, ["`plateau.min_relative_spread`", "0"]),
    (dict(overfitting={"growing_checks": None}), ValueError, ["`overfitting`", "growing_checks", "max_ratio"]),
    (dict(overfitting={"max_ratio": 0.5}), ValueError, ["`overfitting.max_ratio`", "0.5"]),
    (dict(overfitting={"smoothing": 1.0}), ValueError, ["`overfitting.smoothing`", "1.0"]),
    (dict(overfitting={"train_monitor": None}), ValueError, ["`overfitting.train_monitor`", "None"]),
    (dict(divergence={"factor": 1.0}), ValueError, ["`divergence.factor`", "1.0"]),
    (dict(floor={"monitor": R2, "min_value": 0.3, "after_steps": -1}), ValueError, ["`floor.after_steps`", "-1"]),
    (dict(floor={"monitor": R2, "min_value": 0.3, "patience": 0}), ValueError, ["`floor.patience`", "0"]),
    (dict(floor={"monitor": R2, "min_value": "low"}), ValueError, ["`floor.min_value`", "'low'"]),
    (dict(floor={"monitor": R2, "min_value": NAN}), ValueError, ["`floor.min_value`", "nan"]),
    (dict(floor={"monitor": "", "min_value": 0.3}), ValueError, ["`floor.monitor`", "''"]),
    (dict(floor={"min_value": 0.3}), ValueError, ["`floor.monitor`"]),
    (dict(floor={"monitor": R2}), ValueError, ["`floor.min_value`"]),
    (dict(floor={}), ValueError, ["`floor.monitor`", "`floor.min_value`"]),
    (dict(floor={"monitor": R2, "min_value": 0.3, "min_score": 0.3}), ValueError, ["`floor`", "'min_score'"]),
])
def test_bad_arguments_name_the_argument_and_the_value(arguments, error, named):
    with pytest.raises(error) as raised:
        SmartEarlyStopping(**arguments)
    for text in named:
        assert text in str(raised.value)


@pytest.mark.parametrize("arguments", [dict(monitor="val/missing"),
                                       dict(floor={"monitor": "val/missing", "min_value": 0.3}),
                                       dict(overfitting={"train_monitor": "val/missing"})])
def test_a_missing_metric_is_named_or_skipped_when_not_strict(arguments, tmp_path):
    with pytest.raises(RuntimeError, match="`val/missing`.*`val/loss`"):
        fit(tmp_path, [smart(**arguments)], {"val/loss": FALLING})
    callback = smart(strict=False, **arguments)
    with pytest.warns(RuntimeWarning, match="val/missing"):
        trainer = fit(tmp_path, [callback], {"val/loss": FALLING})
    assert stop_of(trainer, callback) == (None, None)


def test_config_file_builds_the_callback_with_its_tacotron2_defaults():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config = OmegaConf.load(ROOT / "conf/callbacks/smart_early_stopping.yaml")
    callback = instantiate(config.smart_early_stopping)
    assert isinstance(callback, SmartEarlyStopping)
    assert (callback.monitor, callback.mode, callback.patience) == ("val/loss", "min", 10)
    assert callback.divergence == {"factor": 3.0}
    floor = callback.floor
    assert (floor["monitor"], floor["min_value"], floor["after_steps"]) == ("val/alignment_score", 0.25, 5000)
    # The alignment guard of the same defaults judges the same failure and gets its roll-backs first: it stops the
    # run itself after (max_recoveries + 1) * patience failed validations, before the floor would.
    guard = instantiate(OmegaConf.load(ROOT / "conf/callbacks/alignment_guard.yaml").alignment_guard,
                        snapshot_dir=None)
    assert (guard.monitor, guard.threshold, guard.warmup_steps) == (floor["monitor"], floor["min_value"],
                                                                    floor["after_steps"])
    assert floor["patience"] > (guard.max_recoveries + 1) * guard.patience


@pytest.mark.parametrize(("min_value", "expected"), [(1.01, (3, "below_floor")), (0.0, (None, None))])
def test_a_floor_on_the_tacotron2_alignment_score_stops_a_run_that_did_not_align(min_value, expected, tmp_path):
    # A score is at most 1.0: 1.01 makes any real alignment "low", 0.0 none.
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(), health_utterances=0)
    callback = smart(patience=100, floor={"monitor": "val/alignment_score", "min_value": min_value, "after_steps": 3})
    batch = synthetic_batch()
    trainer = toy_trainer(tmp_path, [callback], max_steps=5, gradient_clip_val=1.0)
    trainer.fit(module, repeated_loader(batch, 10), repeated_loader(batch, 1))
    assert stop_of(trainer, callback) == expected
    if callback.stop_reason:
        assert callback.stop_reason.metric == "val/alignment_score"
        assert 0.0 < callback.stop_reason.value <= 1.0
        assert callback.stop_reason.value == pytest.approx(float(trainer.callback_metrics["val/alignment_score"]))


@pytest.mark.slow
def test_under_ddp_one_rank_deciding_stops_both_with_its_reason(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tests.tuner_callbacks.test_early_stopping", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Rank 1 reaches its stopping threshold at step 3; rank 0 alone would have run out of patience at step 6.
    assert [r["step"] for r in ranks] == [3, 3]
    assert [r["trainer_reason"]["criterion"] for r in ranks] == ["stopping_threshold"] * 2
    assert ranks[0]["trainer_reason"] == ranks[1]["trainer_reason"] == ranks[0]["callback_reason"]


class PerRankScript(ToyRegression):
    def on_fit_start(self):
        self.scripted = {"val/loss": [[1.0, 0.9, 0.8, 0.85, 0.81, 0.82], [1.0, 0.7, 0.45]][self.global_rank]}


class WriteStop(pl.Callback):
    def __init__(self, out_dir: Path, stopper: SmartEarlyStopping):
        self.out_dir, self.stopper = out_dir, stopper

    def on_train_end(self, trainer, pl_module):
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "world_size": trainer.world_size, "step": trainer.global_step,
            "trainer_reason": get_stop_reason(trainer).to_dict(), "callback_reason": self.stopper.stop_reason.to_dict(),
        }))


if __name__ == "__main__":  # the DDP test's two processes
    stopper = smart(patience=3, stopping_threshold=0.5)
    ddp_trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=MAX_STEPS, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             val_check_interval=1, check_val_every_n_epoch=None, num_sanity_val_steps=0,
                             limit_val_batches=1, callbacks=[stopper, WriteStop(Path(sys.argv[1]), stopper)])
    ddp_trainer.fit(PerRankScript(scripted={"val/loss": [1.0]}), toy_loader(), toy_loader())
    # Lightning leaves the process group up; gloo's threads then abort the exit now and then (SIGABRT).
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
