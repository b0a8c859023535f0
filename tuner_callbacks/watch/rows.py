"""What the watcher shows about one MLflow run, as plain values: pure functions of the run's status, tags and
metric histories, so they are tested without a store and rendered by ``watch.render``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tuner_callbacks.contract import (
    TAG_LAST_RECOVERY,
    TAG_RECOVERIES,
    TAG_STOP_CRITERION,
    TAG_STOP_MESSAGE,
    TAG_STOP_SOURCE,
    TAG_STOP_STEP,
    TAG_STUDY,
    TAG_TRIAL,
)

RISING, FALLING, FLAT = "↑", "↓", "→"


@dataclass(frozen=True)
class MetricView:
    """The latest value of one metric and where its last few values are heading (``trend`` is "" with one)."""

    value: float
    trend: str = ""
    improving: bool | None = None  # None: direction unknown for this metric, or flat


@dataclass(frozen=True)
class RunRow:
    """One line of the watcher: a run, its state in words and its latest metrics."""

    experiment: str
    run_id: str
    name: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    state: str  # what the user reads: "running", "early-stopped (plateau)", "pruned at step 1200", "failed"
    reason: str = ""  # the stop message, when a callback stopped the run
    trial: str = ""  # "<study> #<trial>" for sweep runs
    step: int | None = None
    steps_per_s: float | None = None
    metrics: Mapping[str, MetricView] = field(default_factory=dict)
    started_ms: int = 0
    updated_ms: int | None = None  # timestamp of the newest metric point


def lower_is_better(metric: str) -> bool | None:
    """Whether falling values are good news for ``metric``; None when the name does not tell (e.g. ``lr-Adam``)."""
    name = metric.lower()
    if "loss" in name or "error" in name:
        return True
    if any(word in name for word in ("score", "diagonality", "accuracy")):
        return False
    return None


def trend(values: Sequence[float], metric: str = "", tolerance: float = 0.01) -> MetricView:
    """The last value, and an arrow comparing it with the mean of the values before it (relative to their
    magnitude, so the same ``tolerance`` fits losses and scores): ``[1.0, 0.9, 0.8]`` -> ``0.8 ↓``."""
    if not values:
        raise ValueError("trend() needs at least one value, got an empty sequence")
    last = float(values[-1])
    earlier = [float(v) for v in values[:-1] if math.isfinite(v)]
    if not earlier or not math.isfinite(last):
        return MetricView(last)
    mean = sum(earlier) / len(earlier)
    change = (last - mean) / max(abs(mean), 1e-12)
    if abs(change) <= tolerance:
        return MetricView(last, FLAT)
    direction = lower_is_better(metric)
    improving = None if direction is None else (change < 0) == direction
    return MetricView(last, RISING if change > 0 else FALLING, improving)


def step_rate(points: Sequence[tuple[int, int]], window: int = 10) -> float | None:
    """Training steps per second over the last ``window`` distinct steps of ``(step, timestamp_ms)`` points
    (from any metrics: each step counts at the first time it was logged); None without two such steps."""
    first_seen: dict[int, int] = {}
    for step, timestamp in points:
        first_seen[step] = min(timestamp, first_seen.get(step, timestamp))
    recent = sorted(first_seen.items())[-window:]
    if len(recent) < 2:
        return None
    (step0, time0), (step1, time1) = recent[0], recent[-1]
    return (step1 - step0) / ((time1 - time0) / 1000) if time1 > time0 else None


def describe_state(status: str, tags: Mapping[str, str], quiet_for_s: float | None = None,
                   quiet_after_s: float = 600.0) -> tuple[str, str]:
    """``(state, reason)`` in words from the MLflow status and the ``stop.*`` tags.

    A run can carry a stop reason while still RUNNING (the callback decided; the last checkpoint is being
    written): it reads "early-stopped (patience), finishing". A RUNNING run without a new metric for
    ``quiet_after_s`` is flagged: its process may have died without telling MLflow.
    """
    source, criterion = tags.get(TAG_STOP_SOURCE), tags.get(TAG_STOP_CRITERION)
    step, reason = tags.get(TAG_STOP_STEP), tags.get(TAG_STOP_MESSAGE, "")
    if source == "pruning":
        stopped = f"pruned at step {step}" if step else "pruned"
    elif source == "early_stopping":
        stopped = f"early-stopped ({criterion})" if criterion else "early-stopped"
    elif source:
        stopped = f"stopped by {source}" + (f" ({criterion})" if criterion else "")
    else:
        stopped = ""
    if status in ("FAILED", "KILLED"):
        state = status.lower() + (f" after {stopped}" if stopped else "")
    elif status == "RUNNING" and stopped:
        state = f"{stopped}, finishing"
    elif status == "RUNNING" and quiet_for_s is not None and quiet_for_s > quiet_after_s:
        state = f"running, quiet for {quiet_for_s / 60:.0f} min"
    else:
        state = stopped or status.lower()
    recoveries = tags.get(TAG_RECOVERIES)
    if recoveries:  # AlignmentGuard rolled the run back: worth seeing whatever the state
        state += f", rolled back {recoveries}x"
        reason = reason or tags.get(TAG_LAST_RECOVERY, "")
    return state, reason


def trial_label(tags: Mapping[str, str]) -> str:
    """``"<study> #<trial>"`` for a run the sweeper tagged, else ""."""
    study, number = tags.get(TAG_STUDY), tags.get(TAG_TRIAL)
    if study is None and number is None:
        return ""
    return f"{study or '?'} #{number if number is not None else '?'}"
