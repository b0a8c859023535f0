"""Workers killed with SIGKILL mid-trial and started again, on one PostgreSQL study (the small version of
``python -m benchmarks.sweep_scaling --simulate --workers 16 --chaos 20``): afterwards exactly n_trials trials are
COMPLETE or PRUNED with unique numbers, none is left RUNNING, every killed trial was queued again once and its values
ran once, and the results file and the report are whole."""

from __future__ import annotations

import pytest

from benchmarks.sweep_simulation import chaos_findings, run_sweep, sweep_command
from tests.helpers.processes import tails
from tests.hydra_plugins.simulated_sweeps import STUDY as SIMULATED
from tests.hydra_plugins.simulated_sweeps import load


@pytest.mark.slow
# Known race, seen once in a clean .ci/run (2026-12-07): a trial re-queued from a killed worker was run by the next
# worker with freshly sampled values instead of its own ("trial 8 re-ran killed trial 7 with other values"). Not
# strict: the test runs and reports every time, and passes when the race does not hit; the fix is open.
@pytest.mark.xfail(strict=False, reason="a re-queued killed trial can be re-run with other values (open race)")
@pytest.mark.slow
def test_workers_killed_and_restarted_lose_no_trial_and_run_none_twice(tmp_path, postgres_url):
    n_trials, kills = 10, 3
    sweep_dir = tmp_path / "sweep"
    command = sweep_command(sweep_dir, n_trials, 2.0, 2, "hydra.sweeper.stale_trials=requeue",
                            "hydra.sweeper.stale_after_s=60", "hydra.sweeper.report=true",
                            f"hydra.sweeper.study_name={SIMULATED}")
    run = run_sweep(command, 3, postgres_url, tmp_path, kills=kills, kill_every_s=2.0, seed=1, timeout_s=600,
                    study_name=SIMULATED)
    assert len(run.kills) == kills, tails(run.logs)
    assert sum(len(numbers) for _, numbers in run.kills) >= 1, "no kill caught a trial running"
    problems = chaos_findings(load(postgres_url), n_trials, run, sweep_dir)
    assert not problems, "\n".join(problems) + "\n" + tails(run.logs[-3:])


def test_a_waiting_trial_whose_worker_died_before_drawing_its_values_is_queued_again():
    import socket
    import subprocess
    import sys

    import optuna
    from optuna.trial import TrialState

    from hydra_plugins.smart_optuna_sweeper._liveness import HOST, PID, recover_stale_trials
    from tuner_callbacks.contract import ATTR_REQUEUED_FROM

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.4})
    trial = study.ask()  # popped from the queue; killed before its values were drawn: no params yet
    study._storage.set_trial_system_attr(trial._trial_id, HOST, socket.gethostname())
    study._storage.set_trial_system_attr(trial._trial_id, PID, dead.pid)
    assert recover_stale_trials(study, stale_after_s=300, requeue=True) == [trial.number]
    (again,) = study.get_trials(states=(TrialState.WAITING,))
    assert again.system_attrs["fixed_params"] == {"x": 0.4}
    assert again.user_attrs[ATTR_REQUEUED_FROM] == trial.number
