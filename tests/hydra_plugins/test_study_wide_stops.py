"""stop_when and max_failure_rate are the study's decisions, not each worker's: three sweeper processes on one
PostgreSQL study stop at the same point, the reason is recorded once in the study, and every worker reports it.
The clock of max_seconds is the study's run, which a worker joining it shares."""

from __future__ import annotations

import re
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._study_run import RUN_ATTR, SEEN_ATTR, STOP_ATTR, StudyRun
from tests.helpers.processes import DEADLINE_S, tails
from tests.hydra_plugins.scripted_sweep import load as load_scripted
from tests.hydra_plugins.scripted_sweep import scripted_sweeper
from tests.hydra_plugins.simulated_sweeps import load, start_worker
from tuner_callbacks.contract import ATTR_NOT_RUN

optuna.logging.set_verbosity(optuna.logging.WARNING)
WORKERS = 3


def run_workers(tmp_path, *overrides):
    started = [start_worker(tmp_path, f"worker{i}", *overrides) for i in range(WORKERS)]
    processes, logs = [p for p, _ in started], [log for _, log in started]
    try:
        codes = [p.wait(timeout=DEADLINE_S) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return codes, logs


def recorded_stop(study):
    return study._storage.get_study_system_attrs(study._study_id)[STOP_ATTR]


def ran(study):
    return [t for t in study.trials if ATTR_NOT_RUN not in t.user_attrs]


@pytest.mark.slow
# Seen once in a clean .ci/run (2026-12-07): one worker's log lacked the "Study-wide stop ..." line (it ended without
# reporting the study's stop). Not strict: the test runs and reports every time; the cause is open.
@pytest.mark.xfail(strict=False, reason="a worker can end without logging the study-wide stop (open)")
def test_three_workers_stop_together_when_one_trial_reaches_the_target(tmp_path, postgres_url):
    n_trials = 40
    codes, logs = run_workers(tmp_path, f"hydra.sweeper.storage={postgres_url}", f"hydra.sweeper.n_trials={n_trials}",
                              "hydra/sweeper/pruner=nop", "duration_s=0.6", "reports=2",
                              "hydra.sweeper.enqueue_trials=[{x: 0.3, y: 0.7}]",  # the bowl's bottom: objective 0
                              "+hydra.sweeper.stop_when.target=0.001")
    assert codes == [0] * WORKERS, tails(logs)
    study = load(postgres_url)
    stop = recorded_stop(study)
    bottom = next(t for t in study.trials if t.params == {"x": 0.3, "y": 0.7} and t.state == TrialState.COMPLETE)
    assert stop["rule"] == "target" and stop["reason"] == f"target: trial {bottom.number} reached 0 (<= 0.001)"
    # Every worker reports the one recorded decision.
    for log in logs:
        assert f"Study-wide stop (target, decided by worker {stop['by']}): {stop['reason']}" in log.read_text()
    # The same point for all: no trial ran that was asked after the stop was recorded; those running then finished.
    run = ran(study)
    assert all(t.datetime_start.timestamp() <= stop["at"] for t in run)
    assert len(run) <= 2 + WORKERS < n_trials
    assert all(t.state == TrialState.COMPLETE for t in run)
    results = OmegaConf.load(tmp_path / "outputs" / "optimization_results.yaml")
    assert results.stopped_early == stop["reason"]


@pytest.mark.slow
def test_three_workers_stop_once_the_studys_failures_pass_the_rate(tmp_path, postgres_url):
    # Every trial fails; 0.1 of 30 allows 3 failures: the study stops at the 4th, whichever worker ran them. Decided
    # per worker, each of the three would have run 4.
    codes, logs = run_workers(tmp_path, f"hydra.sweeper.storage={postgres_url}", "hydra.sweeper.n_trials=30",
                              "hydra.sweeper.max_failure_rate=0.1", "fail_every=1", "duration_s=0.6", "reports=2")
    assert all(code != 0 for code in codes), tails(logs)
    study = load(postgres_url)
    stop = recorded_stop(study)
    assert stop["rule"] == "max_failure_rate"
    assert stop["reason"].endswith("of the study's trials failed, more than max_failure_rate=0.1 of n_trials=30")
    failed = ran(study)
    assert 4 <= len(failed) <= 4 + WORKERS - 1 and all(t.state == TrialState.FAIL for t in failed)
    for log in logs:
        assert stop["reason"] in log.read_text(), tails([log])


def test_a_worker_joining_a_live_run_counts_max_seconds_from_the_runs_start(tmp_path):
    impl = scripted_sweeper(tmp_path, lambda n, _: 1.0, n_trials=5, stop_when={"max_seconds": 50})
    impl.sweep([])  # the clock starts with the run: 5 quick trials, no stop
    assert len(load_scripted(tmp_path).trials) == 5
    study = load_scripted(tmp_path)
    # Another worker's run of the study began 100 s ago and is live: a worker joining it stops before any trial.
    now = time.time()
    study._storage.set_study_system_attr(study._study_id, RUN_ATTR, {"started_at": now - 100, "ended": False})
    study._storage.set_study_system_attr(study._study_id, SEEN_ATTR, now)
    impl = scripted_sweeper(tmp_path, lambda n, _: 1.0, n_trials=8, stop_when={"max_seconds": 50})
    impl.sweep([])
    assert len(load_scripted(tmp_path).trials) == 5
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert re.match(r"max_seconds: 1\d\d s since the study's run started", results.stopped_early)  # 100 s ago
    # That run has ended (nothing running): the next command starts a new run, with a new clock and no stop.
    impl = scripted_sweeper(tmp_path, lambda n, _: 1.0, n_trials=8, stop_when={"max_seconds": 50})
    impl.sweep([])
    assert len(load_scripted(tmp_path).trials) == 8
    assert StudyRun.join(load_scripted(tmp_path), 300).stop() is None
