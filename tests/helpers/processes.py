"""Waiting on other processes in tests: poll the condition itself (a study record, a trial's state), never a
proxy such as a file existing, with deadlines that hold on a machine several times slower than this one."""

from __future__ import annotations

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
