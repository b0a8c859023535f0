"""Several `python train.py -m hparams=search` workers on one study, as on several machines: a PostgreSQL server the
test starts (tests/helpers/postgres_server.py, psycopg as the driver) or a journal file (the no-server option for an
NFS folder). n_trials caps the study across workers, pruning uses every worker's reports, a worker killed mid-trial
has its trial recovered by the others, and the database password shows nowhere. Bad storages are refused at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._impl import SweepError
from hydra_plugins.smart_optuna_sweeper._liveness import PID
from tests.helpers.postgres_server import PASSWORD
from tests.helpers.processes import DEADLINE_S, study_or_none, tails, wait_until
from tests.helpers.train_configs import ROOT
from tests.hydra_plugins.scripted_sweep import scripted_sweeper
from tests.hydra_plugins.test_sweeper import SWEEP
from tuner_callbacks.contract import ATTR_INTERRUPTED, ATTR_NOT_RUN, ATTR_REQUEUED_FROM
from tuner_callbacks.optuna_storage import STORAGE_ENV, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDY = "shared"
# Cheap trials: a validation every 4 steps of 8, teacher-forced only (no free-running decode), nothing registered.
LEAN = ["trainer.max_steps=8", "trainer.val_check_interval=4", "objective=teacher_forced", "model.health_utterances=0",
        "logger=none", "callbacks.model_registry=null", "callbacks.smart_early_stopping=null",
        "hydra.sweeper.registry_model=null", "hydra.sweeper.heartbeat_interval_s=1"]
# Destructive learning rates: the trial's objective at its first validation is far above the configured run's, so
# the median pruner (one complete trial is enough) stops it there.
BAD_RATES = (100.0, 150.0, 200.0, 300.0)


def start_worker(tmp_path, cache, name, *overrides, env=None):
    """A sweeper process in ``tmp_path`` (all workers share its outputs/ folder), its output in ``<name>.log``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SMART_TUNER_CACHE": str(cache),
           **(env or {})}
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", "hparams=search", *SWEEP,
                                    *LEAN, f"hydra.sweeper.study_name={STUDY}", *overrides],
                                   cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def finish(processes, logs):
    for process in processes:
        try:
            process.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"a worker did not end within {DEADLINE_S} s\n{tails(logs)}")
    assert [p.returncode for p in processes] == [0] * len(processes), tails(logs)


def trial_state(url, number):
    """Trial ``number``'s frozen trial once the study and the trial exist, else None."""
    def read():
        try:
            study = study_or_none(STUDY, open_storage(url))
        except Exception:  # the first worker is still creating Optuna's tables
            return None
        trials = [t for t in study.trials if t.number == number] if study else []
        return trials[0] if trials else None
    return read


def told(logs):
    """The trial numbers each worker's sweeper told Optuna the end of ("Trial 3: PRUNED")."""
    return [int(n) for log in logs for n in re.findall(r"\] Trial (\d+): (?:COMPLETE|PRUNED|FAIL)", log.read_text())]


def assert_no_password(tmp_path, logs):
    """Not in the workers' output, nor in any file of the sweep: the results, the report, each trial's config and
    overrides, Hydra's record of the command line."""
    for path in [*logs, *(p for p in (tmp_path / "outputs").rglob("*") if p.is_file())]:
        assert PASSWORD.encode() not in path.read_bytes(), f"the database password is in {path}"


@pytest.mark.slow
@pytest.mark.parametrize("storage, workers", [("postgresql", 3), ("journal", 2)])
def test_workers_sharing_a_study_run_n_trials_once_each_and_prune_on_another_workers_reports(storage, workers,
                                                                                           tmp_path, shared_cache,
                                                                                           request):
    url = (request.getfixturevalue("postgres_url") if storage == "postgresql"
           else f"journal:{tmp_path / 'nfs' / 'study.log'}")
    bad = BAD_RATES[:workers + 1]
    report = storage == "postgresql"  # the report takes a while to build: once is enough
    n_trials = 1 + len(bad)
    # The URL with its password from the environment: Hydra records the command line in the sweep folder.
    env = {STORAGE_ENV: url}
    args = ["hydra.sweeper.storage='${oc.env:" + STORAGE_ENV + "}'",
            "model.learning_rate=tag(log, interval(1e-4, 1e3))",
            "hydra.sweeper.enqueue_trials=[" + ", ".join(f"{{model.learning_rate: {r}}}" for r in bad) + "]",
            "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0"]
    # A first worker runs the configured values (trial 0) and stops: the only complete trial the others will see.
    first, first_log = start_worker(tmp_path, shared_cache, "first", *args, "hydra.sweeper.n_trials=1",
                                    "hydra.sweeper.report=false", env=env)
    finish([first], [first_log])
    processes, logs = [], [first_log]
    try:
        for index in range(workers):
            process, log = start_worker(tmp_path, shared_cache, f"worker{index}", *args,
                                        f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.report={report}",
                                        env=env)
            processes.append(process)
            logs.append(log)
        finish(processes, logs)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    study = optuna.load_study(study_name=STUDY, storage=open_storage(url))
    ran = [t for t in study.trials if ATTR_NOT_RUN not in t.user_attrs]
    # The cap holds across workers: n_trials ran, each once (each told by one worker), and none is left over.
    assert len(ran) == n_trials and sorted(told(logs)) == [t.number for t in ran]
    assert all(not t.intermediate_values for t in study.trials if ATTR_NOT_RUN in t.user_attrs)  # given back unrun
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert len({t.system_attrs[PID] for t in ran[1:]}) >= 2, "the trials all ran in one worker"
    assert len({tuple(sorted(t.params.items())) for t in ran}) == n_trials  # workers of one seed ask different values
    # Pruning used another worker's reports: every worker pruned its destructive trials at their first validation
    # against trial 0, which the first worker ran.
    assert [t.state for t in ran] == [TrialState.COMPLETE] + [TrialState.PRUNED] * len(bad)
    assert all(t.last_step == 4 and t.system_attrs[PID] != first.pid for t in ran[1:])
    # Every worker ends once the study has: the last one's results and report describe all of it.
    sweep_dir = tmp_path / "outputs" / "sweeps" / "search"
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.trials == {"complete": 1, "pruned": len(bad)}
    assert results.best_trial.number == 0 and results.best_value == pytest.approx(study.best_value)
    if report:
        assert f"{len(study.trials)} trials: " in (sweep_dir / "report.html").read_text()
    assert_no_password(tmp_path, logs)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_has_its_trial_requeued_by_the_others_and_nothing_finished_is_lost(
        tmp_path, shared_cache, postgres_url):
    stale_after_s = 60
    # libpq's own way: a URL without the password, which comes from PGPASSWORD (or ~/.pgpass).
    env = {"PGPASSWORD": PASSWORD}
    url = postgres_url.replace(f":{PASSWORD}@", "@")
    args = [f"hydra.sweeper.storage='{url}'", "hydra.sweeper.n_trials=3",
            "hydra/sweeper/pruner=nop", "hydra.sweeper.stale_trials=requeue",
            f"hydra.sweeper.stale_after_s={stale_after_s}", "hydra.sweeper.report=false"]
    # The victim's trials are long, so that the kill lands inside the trial the test saw training, not after it.
    workers = [start_worker(tmp_path, shared_cache, "worker0", *args, env=env),
               start_worker(tmp_path, shared_cache, "worker1", *args, "trainer.max_steps=100000", env=env)]
    processes, logs = [w[0] for w in workers], [w[1] for w in workers]
    victim, survivor = processes[1], processes[0]
    try:
        def victims_trial_training():
            study = trial_state(postgres_url, 0)() and optuna.load_study(study_name=STUDY,
                                                                           storage=open_storage(postgres_url))
            mine = [t for t in study.trials if t.state == TrialState.RUNNING and t.system_attrs.get(PID) == victim.pid
                    and t.intermediate_values] if study else []
            return mine[0] if mine else None

        killed = wait_until(victims_trial_training, "a trial of the second worker training", processes, logs)
        finished_before = {t.number: t.values for t in optuna.load_study(
            study_name=STUDY, storage=open_storage(postgres_url)).trials if t.state.is_finished()}
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        recovered = wait_until(lambda: (t := trial_state(postgres_url, killed.number)()).state == TrialState.FAIL
                               and t, f"trial {killed.number} recovered", [survivor], logs[:1],
                               timeout_s=stale_after_s)
        recovered_after_s = time.monotonic() - killed_at
        finish([survivor], logs[:1])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert recovered.user_attrs[ATTR_INTERRUPTED] is True and recovered_after_s < stale_after_s
    study = optuna.load_study(study_name=STUDY, storage=open_storage(postgres_url))
    counted = [t for t in study.trials if t.state.is_finished() and ATTR_INTERRUPTED not in t.user_attrs
               and ATTR_NOT_RUN not in t.user_attrs]
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    # Two workers of one seed, started together: no values asked twice but the requeued ones, on purpose.
    assert len({tuple(sorted(t.params.items())) for t in [*counted, recovered]}) == 3
    (again,) = [t for t in counted if t.user_attrs.get(ATTR_REQUEUED_FROM) == killed.number]
    assert again.params == killed.params and again.system_attrs[PID] == survivor.pid
    assert {n: v for n, v in ((t.number, t.values) for t in study.trials) if n in finished_before} == finished_before
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert "were left RUNNING by a sweep that stopped" in logs[0].read_text()


# --- bad input, on PostgreSQL (in-process: nothing trains) ----------------------------------------------------------

def test_an_unreachable_database_fails_at_once_with_its_password_masked(tmp_path, postgres_server, caplog):
    closed = postgres_server.url().replace(f":{postgres_server.port}/", ":1/")  # nothing listens on port 1
    started = time.monotonic()
    with pytest.raises(SweepError, match=r"storage='postgresql\+psycopg://smart:\*\*\*@127\.0\.0\.1:1/postgres' "
                                         r"cannot be opened: .*refused") as error:
        scripted_sweeper(tmp_path, lambda n, _: 1.0, storage=closed).sweep([])
    assert time.monotonic() - started < 30
    assert PASSWORD not in str(error.value) and PASSWORD not in caplog.text


def test_a_postgresql_study_of_other_directions_or_another_search_space_is_named_and_left_untouched(tmp_path,
                                                                                                   postgres_url,
                                                                                                   monkeypatch):
    monkeypatch.setenv(STORAGE_ENV, "")  # the sweeper exports its URL for its jobs: removed after the test
    def snapshot(name):
        study = optuna.load_study(study_name=name, storage=open_storage(postgres_url))
        return ([(t.number, t.state, t.values, t.user_attrs, t.system_attrs) for t in study.trials],
                study._storage.get_study_system_attrs(study._study_id), study.user_attrs)

    other = optuna.create_study(study_name="other", storage=open_storage(postgres_url), direction="maximize")
    other.tell(other.ask(), 1.0)
    before = snapshot("other")
    with pytest.raises(SweepError, match=r"study 'other' in postgresql\+psycopg://smart:\*\*\*@.* exists with "
                                         r"directions \['maximize'\], not \['minimize'\]"):
        scripted_sweeper(tmp_path, lambda n, _: 1.0, storage=postgres_url, study_name="other").sweep([])
    assert snapshot("other") == before

    scripted_sweeper(tmp_path, lambda n, _: 1.0, storage=postgres_url, study_name="tts", n_trials=1).sweep([])
    before = snapshot("tts")
    with pytest.raises(SweepError, match=r"study 'tts' in postgresql\+psycopg://smart:\*\*\*@.* exists with another "
                                         r"search space \(data.batch_size: "):
        scripted_sweeper(tmp_path, lambda n, _: 1.0, storage=postgres_url, study_name="tts",
                         n_trials=2).sweep(["data.batch_size=choice(2, 4)"])
    assert snapshot("tts") == before
