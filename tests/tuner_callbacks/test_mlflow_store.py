"""A new SQLite tracking store opened by several processes at once: the tables are made once, nobody fails."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from tuner_callbacks.mlflow_utils import prepare_sqlite_store


def _open_when_all_are_ready(uri: str, barrier, results) -> None:
    from mlflow.tracking import MlflowClient

    barrier.wait()
    try:
        prepare_sqlite_store(uri)
        MlflowClient(tracking_uri=uri).search_experiments()
        results.put("ok")
    except Exception as error:  # reported to the test, which names it
        results.put(f"{type(error).__name__}: {error}")


@pytest.mark.slow
def test_processes_opening_a_new_store_together_all_succeed(tmp_path):
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as parallel trials are
    barrier, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_open_when_all_are_ready, args=(uri, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok"] * 4
    tables = {row[0] for row in sqlite3.connect(tmp_path / "new/mlflow.db").execute(
        "select name from sqlite_master where type='table'")}
    assert {"experiments", "runs", "registered_models"} <= tables


def test_other_stores_are_left_alone(tmp_path):
    prepare_sqlite_store(f"file://{tmp_path}/mlruns")
    prepare_sqlite_store("postgresql://user:pw@127.0.0.1:1/none")  # not contacted: nothing to create here
    assert list(tmp_path.iterdir()) == []
