"""Waiting on other processes in tests: poll the condition itself (a study record, a trial's state), never a
proxy such as a file existing, with deadlines that hold on a machine several times slower than this one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

DEADLINE_S = 600.0  # a whole multi-process sweep of tiny trials takes well under a minute here


def study_or_none(name: str, storage: Any) -> optuna.Study | None:
    """The study, or None while its record is not written yet (a sweeper starting up). ``storage``: a storage or a
    URL (opened as the sweeper opens it, riding out a sweeper creating Optuna's tables at the same moment)."""
    from tuner_callbacks.optuna_storage import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage) if isinstance(storage, str)
                                 else storage)
    except KeyError:  # "Record does not exist."
        return None


def wait_until(condition: Callable[[], Any], what: str, processes: Sequence[subprocess.Popen] = (),
               logs: Sequence[Path] = (), timeout_s: float = DEADLINE_S, every_s: float = 0.5) -> Any:
    """Polls ``condition`` until it returns something truthy, and returns that. Fails naming ``what`` at the
    deadline, or as soon as one of ``processes`` has ended (they were meant to be running), with the tail of
    ``logs``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        ended = [p for p in processes if p.poll() is not None]
        if ended:
            raise AssertionError(f"waiting for {what}: process {ended[0].pid} ended ({ended[0].returncode})\n"
                                 + tails(logs))
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n" + tails(logs))


def tails(logs: Sequence[Path], chars: int = 3000) -> str:
    return "\n".join(f"--- {log}:\n{log.read_text(errors='replace')[-chars:]}" for log in logs if log.exists())


def run_ddp_script(script: str, out_dir: Path, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """Runs ``tests/helpers/scripts/<script>``, a two-process DDP run that writes what each rank saw into
    ``out_dir``/rank<N>.json (read them with :func:`rank_records`), with the project importable and one thread."""
    import os
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(root / "tests/helpers/scripts" / script), str(out_dir)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=timeout_s)


def rank_records(out_dir: Path, world_size: int = 2) -> list[dict[str, Any]]:
    """What each rank of a :func:`run_ddp_script` run wrote, by rank."""
    import json

    return [json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(world_size)]


def stop_ray_head(head: subprocess.Popen, folder: str | Path) -> None:
    """Stops a ``ray start --head --block`` process and removes its session folder. The head node and everything it
    started (GCS, raylet, workers) share its process group: SIGTERM lets the head stop them, SIGKILL ends what is left
    after a few seconds (Ray's own shutdown can take half a minute, and the test cluster keeps nothing)."""
    try:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(3)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()
    shutil.rmtree(folder, ignore_errors=True)
