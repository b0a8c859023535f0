"""TrialPruning: reports by global step, stops a trial its pruner rejects, survives resume, and finds its trial
from study name + storage + number as the sweeper passes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import pytorch_lightning as pl
import torch

from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tests.helpers.train_configs import ROOT
from tuner_callbacks import get_stop_reason
from tuner_callbacks.optuna_storage import record_pruner
from tuner_callbacks.pruning import TrialPruning, pruned_by_trial_pruning

optuna.logging.set_verbosity(optuna.logging.WARNING)


def fit(tmp_path, pruning, scripted=None, **trainer_kwargs):
    trainer = toy_trainer(tmp_path, [pruning], **{"max_steps": 8, "val_check_interval": 2, **trainer_kwargs})
    trainer.fit(ToyRegression(scripted=scripted), toy_loader(n=64), toy_loader(n=8))
    return trainer


def completed_trial(study, values_by_step):
    trial = study.ask()
    for step, value in values_by_step.items():
        trial.report(value, step)
    study.tell(trial, values_by_step[max(values_by_step)])


def test_reports_every_validation_by_global_step_and_keeps_a_good_trial(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=0))
    trial = study.ask()
    pruning = TrialPruning(monitor="val/loss", trial=trial)
    # 64 samples / batch 8 = 8 steps an epoch, validation every 2: four validations within one epoch.
    trainer = fit(tmp_path, pruning, scripted={"val/loss": [4.0, 3.0, 2.0, 1.0]})
    assert study.trials[0].intermediate_values == {2: 4.0, 4: 3.0, 6: 2.0, 8: 1.0}
    assert not pruning.pruned and trainer.global_step == 8 and not pruned_by_trial_pruning(trainer)
    pruning.raise_if_pruned()  # does not raise


def test_a_trial_worse_than_the_median_is_stopped_with_a_reason(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    completed_trial(study, {2: 1.0, 4: 0.8, 6: 0.6, 8: 0.5})
    pruning = TrialPruning(monitor="val/loss", trial=study.ask())
    trainer = fit(tmp_path, pruning, scripted={"val/loss": [0.9, 5.0, 5.0, 5.0]})
    assert pruning.pruned and trainer.global_step == 4  # fine at step 2, worse than the median at step 4
    reason = get_stop_reason(trainer)
    assert (reason.source, reason.criterion, reason.step, reason.value) == ("pruning", "pruned", 4, 5.0)
    assert pruned_by_trial_pruning(trainer)
    with pytest.raises(optuna.TrialPruned):
        pruning.raise_if_pruned()


def test_a_nan_metric_is_reported_as_worst_and_pruned(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    completed_trial(study, {2: 1.0, 4: 0.8})
    pruning = TrialPruning(monitor="val/loss", trial=study.ask())
    fit(tmp_path, pruning, scripted={"val/loss": [float("nan")]})
    assert pruning.pruned and study.trials[1].intermediate_values == {2: float("inf")}


def test_finds_its_trial_from_study_name_storage_and_number(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    # What the sweeper records: Optuna does not store pruners, and the default MedianPruner would not prune here.
    record_pruner(study, {"_target_": "optuna.pruners.ThresholdPruner", "upper": 2.0})
    study.ask()  # trial 0: another job's
    number = study.ask().number
    pruning = TrialPruning(monitor="val/loss", study_name="s", storage=storage, trial_number=number)
    fit(tmp_path, pruning, scripted={"val/loss": [1.0, 3.0]})
    reloaded = optuna.load_study(study_name="s", storage=storage)
    assert reloaded.trials[number].intermediate_values == {2: 1.0, 4: 3.0}
    assert reloaded.trials[0].intermediate_values == {}
    assert pruning.pruned


def test_without_a_trial_it_does_nothing(tmp_path):
    pruning = TrialPruning(monitor="val/loss")
    trainer = fit(tmp_path, pruning)
    assert not pruning.active and not pruning.pruned and trainer.global_step == 8


def test_state_survives_a_checkpoint_and_a_resumed_trial_reports_no_step_twice(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    trial = study.ask()
    first = TrialPruning(monitor="val/loss", trial=trial)
    trainer = fit(tmp_path, first, max_steps=4, enable_checkpointing=True)
    path = tmp_path / "resume.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=False)["callbacks"][first.state_key] == {"pruned": False,
                                                                                   "last_reported_step": 4}
    second = TrialPruning(monitor="val/loss", trial=trial)
    trainer = toy_trainer(tmp_path, [second], max_steps=8, val_check_interval=2)
    trainer.fit(ToyRegression(), toy_loader(n=64), toy_loader(n=8), ckpt_path=path)
    assert second.last_reported_step == 8
    assert sorted(study.trials[0].intermediate_values) == [2, 4, 6, 8]


def test_multi_objective_studies_switch_pruning_off(tmp_path):
    study = optuna.create_study(directions=["minimize", "minimize"])
    pruning = TrialPruning(monitor="val/loss", trial=study.ask())
    with pytest.warns(UserWarning, match="multi-objective"):
        fit(tmp_path, pruning)
    assert not pruning.active and study.trials[0].intermediate_values == {}


def test_an_objective_of_several_metrics_is_what_the_pruner_sees(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    completed_trial(study, {2: 3.0, 4: 3.0})
    seen = []

    def objective(metrics, objects):
        seen.append(objects["trainer"].global_step)
        return metrics["val/a"] + 2.0 * metrics["val/b"]

    pruning = TrialPruning(monitor="composite", trial=study.ask(), objective=objective)
    # val/a alone would pass the median (1.0 < 3.0); the composite 1.0 + 2 * 5.0 does not.
    trainer = fit(tmp_path, pruning, scripted={"val/a": [1.0, 1.0], "val/b": [5.0, 5.0]})
    assert study.trials[1].intermediate_values == {2: 11.0}
    assert seen == [2] and pruning.pruned
    reason = get_stop_reason(trainer)
    assert (reason.metric, reason.value) == ("composite", 11.0) and "composite=11.0" in reason.message


def test_an_objective_that_cannot_be_computed_reports_nothing_and_warns(tmp_path):
    study = optuna.create_study()
    pruning = TrialPruning(monitor="composite", trial=study.ask(), objective=lambda metrics, _: metrics["val/gone"])
    with pytest.warns(UserWarning, match="objective could not be computed at step 2: 'val/gone'"):
        fit(tmp_path, pruning, scripted={"val/loss": [1.0, 1.0, 1.0, 1.0]})
    assert study.trials[0].intermediate_values == {} and not pruning.pruned


@pytest.mark.parametrize("kwargs, named", [
    ({"monitor": ""}, "monitor"),
    ({"objective": "val/loss"}, "objective"),
    ({"study_name": "s", "storage": "sqlite:///x.db"}, "trial_number"),
    ({"study_name": "s", "storage": "sqlite:///x.db", "trial_number": -1}, "trial_number"),
])
def test_bad_arguments_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        TrialPruning(**kwargs)


@pytest.mark.slow
def test_under_ddp_rank_zero_reports_and_its_decision_stops_both_ranks(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="ddp", storage=storage)
    record_pruner(study, {"_target_": "optuna.pruners.ThresholdPruner", "upper": 2.0})
    number = study.ask().number
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tests.tuner_callbacks.test_pruning", str(tmp_path), storage,
                             str(number)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # Rank 0's validation loss crosses the threshold at step 4; rank 1's never does, yet both stop there.
    assert [r["step"] for r in ranks] == [4, 4] and [r["pruned"] for r in ranks] == [True, True]
    assert [r["loaded_trial"] for r in ranks] == [True, False]  # only rank zero talked to the study
    trial = optuna.load_study(study_name="ddp", storage=storage).trials[number]
    assert trial.intermediate_values == {2: 1.0, 4: 3.0}  # rank 0's values, each step once


class PerRankLoss(ToyRegression):
    def on_fit_start(self):
        self.scripted = {"val/loss": [[1.0, 3.0, 3.0], [1.0, 1.0, 1.0]][self.global_rank]}


class WritePruned(pl.Callback):
    def __init__(self, out_dir: Path, pruning: TrialPruning):
        self.out_dir, self.pruning = out_dir, pruning

    def on_train_end(self, trainer, pl_module):
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "step": trainer.global_step, "pruned": self.pruning.pruned,
            "loaded_trial": self.pruning._trial is not None}))


if __name__ == "__main__":  # the DDP test's two processes
    out_dir, storage_url, trial_number = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    pruning = TrialPruning(monitor="val/loss", study_name="ddp", storage=storage_url, trial_number=trial_number)
    ddp_trainer = toy_trainer(out_dir, [pruning, WritePruned(out_dir, pruning)], devices=2, strategy="ddp",
                              max_steps=6, val_check_interval=2)
    ddp_trainer.fit(PerRankLoss(scripted={"val/loss": [1.0]}), toy_loader(n=64), toy_loader(n=8))
    # Lightning leaves the process group up; gloo's threads then abort the exit now and then (SIGABRT).
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
