"""Decisions a study's workers take together: when the current run of the study started (``max_seconds`` counts
from there, for every worker), and whether it has stopped (``stop_when``, ``max_failure_rate``).

Both live in the study's system attributes, so every sweeper process on the study (one machine or many, PostgreSQL,
a journal file or SQLite) reads the same record:

- ``smart_tuner:run`` = ``{started_at, ended}`` (epoch seconds) and ``smart_tuner:run_seen_at``: the first worker of
  a run writes them, and every worker refreshes the second at its heartbeats (one write); a worker that starts while
  the run is live (not ended, and some worker was seen within ``stale_after_s``) joins it.
  A worker that finds the study done with nothing running marks the run ended, so the next command starts anew.
- ``smart_tuner:stop`` = ``{rule, reason, by, at}``: written once, by the first worker whose rule fires; the others
  read it before asking their next trial, stop there, and report the recorded reason. Two workers deciding in the
  same instant both write and both read back: the record holds one decision, and every worker reports that one.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from optuna.trial import TrialState

log = logging.getLogger(__name__)

RUN_ATTR = "smart_tuner:run"
SEEN_ATTR = "smart_tuner:run_seen_at"
STOP_ATTR = "smart_tuner:stop"
RULE_FAILURES = "max_failure_rate"


class StudyRun:
    """This worker's view of the study's current run; see the module's docstring."""

    def __init__(self, study: Any, started_at: float) -> None:
        self.study, self.started_at = study, started_at

    @classmethod
    def join(cls, study: Any, stale_after_s: float) -> StudyRun:
        """Joins the study's live run, or starts a new one (clearing an earlier run's stop)."""
        now = time.time()
        attrs = _attrs(study)
        run = attrs.get(RUN_ATTR)
        live = isinstance(run, dict) and not run.get("ended") and now - float(attrs.get(SEEN_ATTR) or 0) < stale_after_s
        if live:
            log.info("Joining the study's run started %.0f s ago by another worker", now - float(run["started_at"]))
            return cls(study, float(run["started_at"]))
        _set(study, SEEN_ATTR, now)
        _set(study, RUN_ATTR, {"started_at": now, "ended": False})
        _set(study, STOP_ATTR, None)
        # Workers starting a new run together each wrote: the last write holds, and all of them read it.
        run = _attrs(study).get(RUN_ATTR) or {"started_at": now}
        return cls(study, float(run["started_at"]))

    def seconds(self) -> float:
        return time.time() - self.started_at

    def seen(self) -> None:
        """Marks the run as live (a worker of it is working); called as trials end and at each heartbeat."""
        _set(self.study, SEEN_ATTR, time.time())

    def stop(self) -> dict[str, Any] | None:
        """The study's recorded stop of this run, or None."""
        stop = _attrs(self.study).get(STOP_ATTR)
        return stop if isinstance(stop, dict) else None

    def record_stop(self, rule: str, reason: str) -> dict[str, Any]:
        """Records ``reason`` as the run's stop unless one is recorded already; returns the recorded one."""
        stop = self.stop()
        if stop is None:
            _set(self.study, STOP_ATTR, {"rule": rule, "reason": reason, "by": f"{socket.gethostname()}:{os.getpid()}",
                                         "at": time.time()})
            stop = self.stop()
        return stop or {"rule": rule, "reason": reason}

    def end_if_done(self) -> None:
        """Marks the run ended when no trial of the study is running: a later command starts a new run."""
        if not self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run = _attrs(self.study).get(RUN_ATTR) or {"started_at": self.started_at}
            _set(self.study, RUN_ATTR, {**run, "ended": True})


def _attrs(study: Any) -> dict[str, Any]:
    return study._storage.get_study_system_attrs(study._study_id)


def _set(study: Any, key: str, value: Any) -> None:
    study._storage.set_study_system_attr(study._study_id, key, value)
