"""Sweeper processes running ``benchmarks/simulated_trial.py``: trials that wait instead of training, so tests of
many workers, kills and study-wide stops take seconds, on the sweeper's real code paths (Hydra, the launcher, the
study on PostgreSQL, the jobs' reports to the pruner)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna

from tests.helpers.train_configs import ROOT
from tuner_callbacks.optuna_storage import open_storage

APP = ROOT / "benchmarks" / "simulated_trial.py"
STUDY = "simulated"


def start_worker(tmp_path: Path, name: str, *overrides: str, env: dict[str, str] | None = None
                 ) -> tuple[subprocess.Popen, Path]:
    """A sweeper process of the simulated app writing under ``tmp_path/outputs`` (shared by every worker), its
    output in ``tmp_path/<name>.log``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(APP), "-m", f"hydra.sweep.dir={tmp_path / 'outputs'}",
                                    f"hydra.sweeper.study_name={STUDY}", *overrides],
                                   cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=open_storage(url))
