"""``python train.py`` in a child process, as the benchmarks run it: its own thread count, its log kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train(arguments: list[str], cwd: Path, threads: int) -> float:
    """Runs ``train.py arguments`` in ``cwd`` with ``threads`` OpenMP threads; writes its output to
    ``cwd/train.log`` and returns its seconds; raises with the end of its stderr when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True)
    (cwd / "train.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(arguments[:3])} ... failed (log: {cwd / 'train.log'}):\n"
                           f"{done.stderr[-4000:]}")
    return time.perf_counter() - started
