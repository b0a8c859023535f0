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
