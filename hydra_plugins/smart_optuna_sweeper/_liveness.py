"""Which RUNNING trials are still alive: a sweep marks the trials it launched with its host, pid and a
heartbeat; a later sweep on the same study fails (or re-queues) the ones whose sweep is gone.

Works on every storage (SQLite, PostgreSQL, journal files), unlike Optuna's own heartbeat, which needs an
RDB storage and ``study.optimize``. On the same host a dead pid is proof enough; elsewhere a heartbeat
older than ``stale_after_s`` is.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from tuner_callbacks import contract

log = logging.getLogger(__name__)

HOST, PID, HEARTBEAT = "smart_tuner:host", "smart_tuner:pid", "smart_tuner:heartbeat"


def claim(study: Any, trial_ids: Iterable[int]) -> None:
    for trial_id in trial_ids:
        study._storage.set_trial_system_attr(trial_id, HOST, socket.gethostname())
        study._storage.set_trial_system_attr(trial_id, PID, os.getpid())
        study._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())


class Heartbeat:
    """While in its ``with`` block, refreshes the heartbeat of ``trial_ids`` every ``interval_s`` seconds."""

    def __init__(self, study: Any, trial_ids: list[int], interval_s: float):
        self.study, self.trial_ids, self.interval_s = study, trial_ids, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smart-optuna-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        claim(self.study, self.trial_ids)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for trial_id in self.trial_ids:
                try:
                    self.study._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception as error:  # finished meanwhile, or the storage hiccuped: try again next beat
                    log.debug("heartbeat of trial %s: %s", trial_id, error)


def is_stale(trial: Any, stale_after_s: float, now: float | None = None) -> bool:
    now = time.time() if now is None else now
    attrs = trial.system_attrs
    if attrs.get(HOST) == socket.gethostname() and attrs.get(PID) is not None:
        if attrs[PID] == os.getpid():
            return False
        try:
            os.kill(int(attrs[PID]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
    beat = attrs.get(HEARTBEAT)
    if beat is None:  # asked by something other than this sweeper: judge by its age
        beat = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(beat) > stale_after_s


def recover_stale_trials(study: Any, stale_after_s: float, requeue: bool) -> list[int]:
    """Marks stale RUNNING trials FAIL (user attr ``interrupted``), re-enqueuing their params when ``requeue``;
    returns their numbers."""
    import optuna

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not is_stale(trial, stale_after_s):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_INTERRUPTED, True)
        study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_ERROR,
                                            "interrupted: the sweep running it stopped")
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if requeue and trial.params:
            study.enqueue_trial(trial.params, user_attrs={contract.ATTR_REQUEUED_FROM: trial.number})
        recovered.append(trial.number)
    if recovered:
        log.warning("Trials %s were left RUNNING by a sweep that stopped: marked FAIL%s", recovered,
                    " and queued again" if requeue else "")
    return recovered
