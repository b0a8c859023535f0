"""The smart_optuna sweeper when trials go wrong, end to end: a destructive learning rate is pruned and a NaN trial
fails without ending the sweep, a killed sweep resumes requeueing the trial it left running, and trials run side by
side through the joblib launcher. A file of its own so that it runs beside test_sweeper.py on another test worker."""

from __future__ import annotations

import signal
import time

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._liveness import HOST, PID, is_stale
from tests.helpers.processes import study_or_none, wait_until
from tests.hydra_plugins.test_sweeper import load, states, sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.slow
def test_a_destructive_learning_rate_is_pruned_and_a_nan_trial_fails_without_ending_the_sweep(tmp_path,
                                                                                            shared_cache):
    storage = f"sqlite:///{tmp_path}/outputs/sweeps/search/optuna.db"
    (tmp_path / "outputs" / "sweeps" / "search").mkdir(parents=True)
    study = optuna.create_study(study_name="search", storage=storage)
    # lr 100 wrecks the weights within a step (val/loss ~1e7); lr 1e30 overflows them (val/loss NaN). Judged by the
    # teacher-forced objective: at step 2 the synthesis metric rightly finds a wrecked model and an untrained one
    # equally useless (both drone), while the validation loss tells a wreck from a start.
    for learning_rate in (1e-3, 100.0, 1e30):
        study.enqueue_trial({"model.learning_rate": learning_rate})
    sweep(tmp_path, shared_cache, "hydra.sweeper.n_trials=3", "logger=none", "hydra.sweeper.enqueue_defaults=false",
          "model.learning_rate=tag(log, interval(1e-4, 1e31))", "hydra.sweeper.pruner.n_startup_trials=1",
          "hydra.sweeper.pruner.n_warmup_steps=0", "objective=teacher_forced")
    study = load(tmp_path)
    assert states(study) == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for pruned in study.trials[1:]:  # stopped at their first validation, recorded with its value
        assert pruned.last_step == 2 and pruned.user_attrs["global_step"] == 2
    # The wrecked model's objective dwarfs the sane trial's at the same step; the overflowed one is the worst.
    assert study.trials[1].intermediate_values[2] > 10 * study.trials[0].intermediate_values[2]
    assert study.trials[2].intermediate_values[2] == float("inf")
    # Without a pruner, the NaN trial runs to its end and is recorded FAIL with the reason.
    storage_nop = tmp_path / "nop"
    (storage_nop / "outputs" / "sweeps" / "search").mkdir(parents=True)
    study = optuna.create_study(study_name="search",
                                storage=f"sqlite:///{storage_nop}/outputs/sweeps/search/optuna.db")
    for learning_rate in (1e30, 2e-3):  # the failure first: the sweep goes on to the next trial
        study.enqueue_trial({"model.learning_rate": learning_rate})
    sweep(storage_nop, shared_cache, "hydra.sweeper.n_trials=2", "logger=none", "hydra/sweeper/pruner=nop",
          "hydra.sweeper.enqueue_defaults=false",
          "model.learning_rate=tag(log, interval(1e-4, 1e31))", "callbacks.smart_early_stopping=null",
          "objective=teacher_forced")
    study = load(storage_nop)
    assert states(study) == [TrialState.FAIL, TrialState.COMPLETE]
    assert "not finite" in study.trials[0].user_attrs["error"]


@pytest.mark.slow
def test_a_killed_sweep_resumes_failing_and_requeueing_the_trial_it_left_running(tmp_path, shared_cache):
    args = ["hydra.sweeper.n_trials=3", "logger=none", "hydra.sweeper.stale_trials=requeue"]
    # Long trials, so that the kill lands inside trial 1 (polled every 0.5 s); judged teacher-forced (quick).
    process = sweep(tmp_path, shared_cache, *args, "trainer.max_steps=24", "trainer.val_check_interval=12",
                    "objective=teacher_forced", wait=False)
    storage = f"sqlite:///{tmp_path}/outputs/sweeps/search/optuna.db"

    def trial_1_claimed():
        # The study record, not the file: the file exists before the sweeper has written the study into it.
        study = study_or_none("search", storage) if (tmp_path / "outputs/sweeps/search/optuna.db").exists() else None
        trials = study.trials if study else []
        # Running, claimed by the sweep (the claim follows the ask by a few storage writes) and with its values
        # drawn, all of them (they follow the claim): a kill mid-draw would requeue part of them.
        return ([t.state for t in trials] == [TrialState.COMPLETE, TrialState.RUNNING]
                and PID in trials[1].system_attrs and trials[1].params.keys() == trials[0].params.keys())

    try:
        wait_until(trial_1_claimed, "trial 1 running", [process])
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    interrupted = load(tmp_path).trials[1]
    assert interrupted.system_attrs[PID] == process.pid and is_stale(interrupted, stale_after_s=1e9)
    sweep(tmp_path, shared_cache, *args)
    study = load(tmp_path)
    assert states(study) == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["interrupted"] is True
    assert study.trials[2].params == study.trials[1].params  # requeued
    assert study.trials[2].user_attrs["requeued_from"] == 1
    # The resumed process has the same sampler seed: its first sampled trial used to be trial 1's values again.
    assert study.trials[3].params != study.trials[1].params


def test_a_trial_of_a_live_sweep_on_another_host_is_not_stale_until_its_heartbeat_is():
    study = optuna.create_study()
    trial = study.ask()
    for key, value in ((HOST, "elsewhere"), (PID, 1), ("smart_tuner:heartbeat", time.time() - 100)):
        study._storage.set_trial_system_attr(trial._trial_id, key, value)
    frozen = study.trials[0]
    assert not is_stale(frozen, stale_after_s=300)
    assert is_stale(frozen, stale_after_s=60)


@pytest.mark.slow
def test_parallel_trials_through_the_joblib_launcher_start_as_soon_as_a_slot_frees(tmp_path, shared_cache):
    (tmp_path / "outputs" / "sweeps" / "search").mkdir(parents=True)
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{tmp_path}/outputs/sweeps/search/optuna.db")
    for max_steps in (24, 4, 4):  # trial 0 is long; trial 1 ends early and frees its slot for trial 2
        study.enqueue_trial({"trainer.max_steps": max_steps})
    sweep(tmp_path, shared_cache, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
          "hydra.sweeper.n_trials=3", "logger=none", "trainer.max_steps=choice(4, 24)",
          "hydra/sweeper/pruner=nop", "hydra.sweeper.enqueue_defaults=false")
    study = load(tmp_path)
    assert states(study) == [TrialState.COMPLETE] * 3
    long, short, next_one = study.trials
    assert long.user_attrs["global_step"] == 24 and short.user_attrs["global_step"] == 4
    assert short.datetime_start < long.datetime_complete  # ran side by side
    assert next_one.datetime_start < long.datetime_complete  # did not wait for the whole batch
    assert {t.user_attrs["output_dir"] for t in study.trials} == {
        str(tmp_path / "outputs" / "sweeps" / "search" / f"trial_{n}") for n in (0, 1, 2)}
