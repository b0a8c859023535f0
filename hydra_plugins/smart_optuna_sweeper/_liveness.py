"""Which RUNNING trials are still alive: a sweep marks the trials it launched with its host, pid and a
heartbeat; a later sweep on the same study fails (or re-queues) the ones whose sweep is gone.

Works on every storage (SQLite, PostgreSQL, journal files), unlike Optuna's own heartbeat, which needs an
RDB storage and ``study.optimize``. On the same host a dead pid is proof enough; elsewhere a heartbeat
older than ``stale_after_s`` is. Every sweeper on a study checks, at start, before each trial it asks, and at
each of its own heartbeats, so a worker that dies has its trial recovered by the others while they run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tuner_callbacks import contract

log = logging.getLogger(__name__)

HOST, PID, HEARTBEAT = "smart_tuner:host", "smart_tuner:pid", "smart_tuner:heartbeat"


def claim(study: Any, trial_ids: Iterable[int]) -> None:
    for trial_id in trial_ids:
        study._storage.set_trial_system_attr(trial_id, HOST, socket.gethostname())
        study._storage.set_trial_system_attr(trial_id, PID, os.getpid())
        study._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())


def is_own(trial: Any) -> bool:
    """Whether this process claimed ``trial``."""
    attrs = trial.system_attrs
    return attrs.get(PID) == os.getpid() and attrs.get(HOST) == socket.gethostname()


class Heartbeat:
    """While in its ``with`` block, refreshes the heartbeat of ``trial_ids`` every ``interval_s`` seconds, and
    calls ``on_beat`` (recovering other workers' stale trials) after each beat."""

    def __init__(self, study: Any, trial_ids: list[int], interval_s: float,
                 on_beat: Callable[[], object] | None = None):
        self.study, self.trial_ids, self.interval_s, self.on_beat = study, trial_ids, interval_s, on_beat
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
            if self.on_beat is not None:
                try:
                    self.on_beat()
                except Exception as error:  # the storage hiccuped: the next beat tries again
                    log.debug("stale-trial check: %s", error)


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
    returns their numbers. Safe to run in several workers at once: the state change is the storage's atomic
    RUNNING -> FAIL, and only the worker that made it re-enqueues."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not is_stale(trial, stale_after_s):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_INTERRUPTED, True)
            study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_ERROR,
                                                "interrupted: the sweep running it stopped")
            if not study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:  # another worker recovered it first
            continue
        # A worker killed between asking a waiting (enqueued) trial and drawing its values leaves them only in
        # fixed_params: they are run again too.
        params = trial.params or trial.system_attrs.get("fixed_params")
        if requeue and params:
            study.enqueue_trial(dict(params), user_attrs={contract.ATTR_REQUEUED_FROM: trial.number})
        recovered.append(trial.number)
    if recovered:
        log.warning("Trials %s were left RUNNING by a sweep that stopped: marked FAIL%s", recovered,
                    " and queued again" if requeue else "")
    return recovered
