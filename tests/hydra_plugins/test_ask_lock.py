"""Sweepers sharing one SQLite file ask one at a time, so an enqueued trial is popped by one of them only
(SQLite ignores the ``FOR UPDATE`` with which Optuna pops it)."""

from __future__ import annotations

import optuna
import pytest

from hydra_plugins.smart_optuna_sweeper._ask_lock import ask_lock_path, asking_alone
from tests.helpers.threads import run_in_threads

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = optuna.distributions.FloatDistribution(0.0, 1.0)


@pytest.mark.parametrize(("url", "lock"), [
    ("sqlite:///{tmp}/sweep/optuna.db", "{tmp}/sweep/optuna.db.ask-lock"),
    ("postgresql://tuner:secret@127.0.0.1:5432/optuna", None),  # the row lock orders pops
    ("journal:///{tmp}/optuna.log", None),  # the log orders pops
    ("sqlite:///:memory:", None),  # one process
])
def test_only_a_sqlite_file_has_a_lock_beside_it(tmp_path, url, lock):
    found = ask_lock_path(url.format(tmp=tmp_path))
    assert found == (None if lock is None else type(tmp_path)(lock.format(tmp=tmp_path)))


def test_workers_asking_alone_on_one_sqlite_file_never_pop_the_same_enqueued_trial(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="s", storage=url)
    workers, rounds = 4, 3
    for value in range(workers * rounds):
        optuna.load_study(study_name="s", storage=url).enqueue_trial({"x": value / 100})
    popped = []

    def worker():
        study = optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url))  # a connection each
        for _ in range(rounds):
            with asking_alone(ask_lock_path(url)):
                popped.append(study.ask({"x": X}).number)

    run_in_threads([worker] * workers, timeout_s=60)
    assert sorted(popped) == list(range(workers * rounds))  # each enqueued trial once, and no new trial
