"""Shared fixtures. The helpers behind them live in ``tests/helpers/``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from tests.helpers import batches

# Tiny models are dominated by per-op overhead: one thread is faster than two, and it keeps tests from
# fighting over the cores with each other or with a benchmark running beside them.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_tracking_uri_from_earlier_tests(monkeypatch):
    """Every test starts without MLFLOW_TRACKING_URI: ``mlflow.set_tracking_uri`` writes it into the environment, and
    the training config (``paths.mlflow_tracking_uri``), ``watch`` and the registry all honour it, so one test's
    store would otherwise become the next one's."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # monkeypatch restores only what it changed itself


@pytest.fixture(autouse=True)
def signal_handlers_as_found():
    """A test that leaves SIGINT or SIGTERM handled otherwise fails, naming the handler: the next test's Ctrl+C
    and SIGTERM behaviour (the preemption tests send real signals) must not depend on the order tests ran in."""
    found = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = {signal.Signals(signum).name: signal.getsignal(signum) for signum, handler in found.items()
               if signal.getsignal(signum) != handler}
    for signum, handler in found.items():
        signal.signal(signum, handler)
    assert not changed, f"the test left signal handlers changed: {changed}"


@pytest.fixture
def tiny():
    """A Tacotron2Config small enough for a CPU test step in milliseconds."""
    return batches.tiny_config()


@pytest.fixture
def data_dir() -> Path:
    """``tests/data``: NVIDIA's reference vectors and state_dict listing."""
    return batches.DATA_DIR


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    """One built-in dataset and mel cache for the whole session: generated once, like users' runs share it."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path, shared_cache):
    """``make_cfg(overrides, tiny=True)``: the composed training config of a tiny run under ``tmp_path``."""
    from hydra.core.global_hydra import GlobalHydra

    from tests.helpers.train_configs import compose_train_config

    yield lambda overrides=(), tiny=True: compose_train_config(tmp_path, shared_cache, overrides, tiny)
    GlobalHydra.instance().clear()
