"""The alerts a run and a sweep send, built from plain values so that any caller (callback, sweeper, script)
writes the same messages and tests need no trainer.

Each function returns an :class:`~tuner_callbacks.alerts.message.Alert`; its ``kind`` names the event.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner_callbacks.alerts.message import Alert

_MAX_FRAMES = 3
_MAX_ERROR_CHARS = 500


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h 02m 05s"``; ``42.5`` -> ``"42s"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def subject(trial_number: int | None = None, study_name: str | None = None) -> str:
    """What the alert is about: ``"Training"`` outside a sweep, ``"Trial 7 (tts-search)"`` in one."""
    if trial_number is None:
        return "Training"
    return f"Trial {trial_number}" + (f" ({study_name})" if study_name else "")


def _pairs(values: Mapping[str, Any]) -> list[str]:
    return [f"{key}: {format_value(value)}" for key, value in values.items() if value is not None]


def start_alert(facts: Mapping[str, Any], trial_number: int | None = None, study_name: str | None = None) -> Alert:
    """``facts`` such as ``{"model": "Tacotron2Module", "parameters": "2.1M", "max_steps": 600}``."""
    return Alert("info", f"{subject(trial_number, study_name)} started", _pairs(facts), emoji="🚀", kind="start")


def summary_alert(step: int, validation: int, metrics: Mapping[str, float], best: str | None = None,
                  photo: Path | None = None) -> Alert:
    """The metrics of one validation, with the alignment plot when there is one."""
    lines = [f"{name} = {format_value(value)}" for name, value in metrics.items()]
    if best:
        lines.append(f"best: {best}")
    return Alert("info", f"Step {step} · validation {validation}", lines, photo=photo, emoji="📊", kind="summary")


def audio_alert(step: int, path: Path) -> Alert:
    return Alert("info", f"Sample at step {step}", audio=path, emoji="🔊", kind="audio")


def new_best_alert(metric: str, value: float, step: int, previous: float | None = None,
                   checkpoint: str | None = None) -> Alert:
    lines = [f"{metric} = {format_value(value)}" + (f" (was {format_value(previous)})" if previous is not None else "")]
    if checkpoint:
        lines.append(f"checkpoint: {checkpoint}")
    return Alert("info", f"New best at step {step}", lines, emoji="🏆", kind="best")


def early_stop_alert(criterion: str, message: str, step: int, trial_number: int | None = None,
                     study_name: str | None = None) -> Alert:
    return Alert("warning", f"{subject(trial_number, study_name)} stopped early at step {step}: {criterion}",
                 [message], emoji="⏹", kind="early_stop")


def recovery_alert(recovery: int, max_recoveries: int, step: int, failure: str, remedy: str,
                   trial_number: int | None = None, study_name: str | None = None) -> Alert:
    return Alert("warning", f"{subject(trial_number, study_name)} rolled back at step {step} "
                 f"(recovery {recovery}/{max_recoveries})", [failure, remedy], emoji="↩️", kind="recovery")


def pruned_alert(step: int, message: str | None = None, trial_number: int | None = None,
                 study_name: str | None = None) -> Alert:
    return Alert("info", f"{subject(trial_number, study_name)} pruned at step {step}", [message] if message else [],
                 emoji="✂️", kind="pruned")


def end_alert(duration_s: float, step: int, best_metric: str | None = None, best_value: float | None = None,
              checkpoint: str | None = None, mlflow_run: str | None = None, trial_number: int | None = None,
              study_name: str | None = None) -> Alert:
    verb = "complete" if trial_number is not None else "finished"
    facts = {"duration": format_duration(duration_s), "steps": step,
             f"best {best_metric}" if best_metric else "best": best_value, "checkpoint": checkpoint,
             "MLflow run": mlflow_run}
    return Alert("info", f"{subject(trial_number, study_name)} {verb}", _pairs(facts), emoji="✅", kind="end")


def exception_alert(error: BaseException, step: int | None = None, trial_number: int | None = None,
                    study_name: str | None = None) -> Alert:
    """The exception's type and message and its last frames (innermost last), as Python prints them."""
    text = str(error)
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + "…"
    lines = [f"{type(error).__name__}: {text}" if text else type(error).__name__]
    if step is not None:
        lines.append(f"at step {step}")
    frames = traceback.extract_tb(error.__traceback__)[-_MAX_FRAMES:]
    lines += [f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"
              for frame in frames]
    interrupted = isinstance(error, KeyboardInterrupt)
    title = f"{subject(trial_number, study_name)} {'interrupted' if interrupted else 'failed'}"
    return Alert("warning" if interrupted else "critical", title, lines, emoji="🛑" if interrupted else "💥",
                 kind="exception")


def sweep_summary_alert(study_name: str, n_trials_by_state: Mapping[str, int], best_value: float | None = None,
                        best_params: Mapping[str, Any] | None = None, metric: str | None = None,
                        best_trial: int | None = None, duration_s: float | None = None,
                        stopped_early: str | None = None, infeasible: int = 0, no_best: str | None = None) -> Alert:
    """The end of a sweep; ``stopped_early`` is why it ended before n_trials (a stop_when rule), ``infeasible`` how
    many completed trials violate a constraint (the best trial is the best feasible one), ``no_best`` why there is
    no best trial (none feasible). Example:
    ``sweep_summary_alert("tts", {"COMPLETE": 12, "PRUNED": 7, "FAIL": 1}, 0.412, {"lr": 1e-3}, metric="val/loss",
    best_trial=9, stopped_early="target: trial 9 reached 0.412 (<= 0.45)")``."""
    counts = ", ".join(f"{count} {state.lower()}" for state, count in n_trials_by_state.items() if count)
    lines = [f"trials: {sum(n_trials_by_state.values())} ({counts or 'none'})"]
    if duration_s is not None:
        lines.append(f"duration: {format_duration(duration_s)}")
    if stopped_early:
        lines.append(f"stopped early: {stopped_early}")
    if infeasible:
        lines.append(f"infeasible: {infeasible} completed trial{'s violate' if infeasible != 1 else ' violates'} a "
                     "constraint")
    if best_value is not None:
        trial = f" (trial {best_trial})" if best_trial is not None else ""
        lines.append(f"best {metric or 'value'}: {format_value(best_value)}{trial}")
    elif no_best:
        lines.append(f"no best trial: {no_best}")
    lines += [f"  {name} = {format_value(value)}" for name, value in (best_params or {}).items()]
    verb = "stopped early" if stopped_early else "finished"
    return Alert("info", f"Sweep {study_name} {verb}", lines, emoji="📋", kind="sweep_summary")
