"""TelegramAlerts: tells a chat how a run is going, without ever making the run wait for the chat.

Rank zero builds an :class:`~tuner_callbacks.alerts.dispatcher.AlertDispatcher` at setup (checking the token and
chat), then each hook only builds an alert from plain values and enqueues it. Validation summaries and "new best"
alerts wait for the next training step: Lightning runs ``ModelCheckpoint`` after every other callback, so only
then is the best checkpoint of that validation known.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks.alerts import templates
from tuner_callbacks.alerts.channels import ChannelError, LogChannel, RetryableError
from tuner_callbacks.alerts.dispatcher import AlertDispatcher, AlertsConfigError, build_dispatcher
from tuner_callbacks.alerts.message import Alert, check_level
from tuner_callbacks.alerts.redaction import Secret
from tuner_callbacks.lightning_compat import TrainerFn, lightning_bases, pl
from tuner_callbacks.mlflow_utils import find_mlflow_logger, logger_tracking_uri, redact_url
from tuner_callbacks.state_keys import adopt_older_state
from tuner_callbacks.stop_reason import get_stop_reason

log = logging.getLogger(__name__)

_MAX_METRICS = 15  # lines of a summary when `metrics` is not given


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value) if value.numel() == 1 else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def mlflow_run(trainer: pl.Trainer) -> str | None:
    logger = find_mlflow_logger(trainer.loggers)
    if logger is None or not logger.run_id:
        return None
    uri = logger_tracking_uri(logger)
    return logger.run_id + (f" ({redact_url(uri)})" if uri else "")


def latest_media(trainer: pl.Trainer) -> dict[str, Any]:
    """The ``latest`` media of a callback that keeps one (``ValidationMedia``); found by duck typing so that any
    callback drawing figures can feed alerts."""
    for callback in trainer.callbacks:
        latest = getattr(callback, "latest", None)
        if isinstance(latest, dict) and latest:
            return latest
    return {}


class TelegramAlerts(*lightning_bases("Callback")):
    """Sends the start, validation summaries (with the alignment plot), new best models, early stops, the end and
    exceptions of a run to Telegram, or to the log when no token is configured.

    Args:
        token: bot token; None reads ``TELEGRAM_BOT_TOKEN``. Never logged, saved or put in errors.
        chat_id: user, group or ``@channel``; None reads ``TELEGRAM_CHAT_ID``.
        base_url: Bot API root (a local Bot API server); None: Telegram's.
        min_level: "info", "warning" or "critical": alerts below are not sent.
        every_n_validations: a metrics summary every N validations (the first one included).
        metrics: the metrics a summary lists; None: all scalar metrics (at most 15).
        send_photo: attach the latest alignment plot of a ``ValidationMedia``-like callback to summaries.
        send_audio: send its latest audio sample after a summary.
        notify_new_best: an alert when ModelCheckpoint's best model changes between summaries.
        on_bad_token: "fail" the run, or "continue" with alerts in the log, when the token or chat is rejected.
        check_timeout_s: how long the start-up check may wait for Telegram; no answer only warns.
        timeout_s: connect/read/write timeout of each request.
        flush_timeout_s: how long the end of training may wait for queued alerts.
        min_interval_s: least time between two messages; None: Telegram's limit for the chat type.
        max_queue, max_retries, backoff_s: see :class:`~tuner_callbacks.alerts.dispatcher.AlertDispatcher`.
        trial_number, study_name: set by the sweeper; start and end alerts then speak of the trial.
        start_info: extra ``name: value`` lines for the start alert (from config: batch size, learning rate, ...).

    Only rank zero sends; nothing is sent under ``fast_dev_run``. A new best is ModelCheckpoint's
    (``trainer.checkpoint_callback``): without one, summaries carry no "best" line.

    Example:
        >>> trainer = pl.Trainer(callbacks=[ModelCheckpoint(monitor="val/loss"), TelegramAlerts(min_level="info")])
    """

    def __init__(self, token: str | None = None, chat_id: int | str | None = None, base_url: str | None = None,
                 min_level: str = "info", every_n_validations: int = 1, metrics: Sequence[str] | None = None,
                 send_photo: bool = True, send_audio: bool = False, notify_new_best: bool = True,
                 on_bad_token: str = "fail", check_timeout_s: float = 10.0, timeout_s: float = 10.0,
                 flush_timeout_s: float = 10.0, min_interval_s: float | None = None, max_queue: int = 100,
                 max_retries: int = 3, backoff_s: float = 1.0, trial_number: int | None = None,
                 study_name: str | None = None, start_info: Mapping[str, Any] | None = None):
        super().__init__()
        self._token = Secret(token) if token else None
        self.chat_id, self.base_url = chat_id, base_url
        self.min_level = check_level("min_level", min_level)
        options.integer("every_n_validations", every_n_validations, low=1)
        options.choice("on_bad_token", on_bad_token, ("fail", "continue"))
        for name, value in (("check_timeout_s", check_timeout_s), ("timeout_s", timeout_s),
                            ("flush_timeout_s", flush_timeout_s)):
            options.number(name, value, low=0, low_open=True)
        self.every_n_validations, self.metrics = every_n_validations, list(metrics) if metrics is not None else None
        self.send_photo, self.send_audio, self.notify_new_best = send_photo, send_audio, notify_new_best
        self.on_bad_token, self.check_timeout_s, self.flush_timeout_s = on_bad_token, check_timeout_s, flush_timeout_s
        self.trial_number, self.study_name = trial_number, study_name
        self.start_info = {str(key): value for key, value in (start_info or {}).items()}
        self._dispatcher_options = dict(min_level=min_level, timeout_s=timeout_s, min_interval_s=min_interval_s,
                                        max_queue=max_queue, max_retries=max_retries, backoff_s=backoff_s)
        self.dispatcher: AlertDispatcher | None = None
        # State (checkpointed): a resumed run counts validations and training time on.
        self.validations = 0
        self.elapsed_s = 0.0
        # ModelCheckpoint's best as last announced; taken from it at the start, so a resumed run does not
        # announce the best it resumed with.
        self.best_path: str | None = None
        self.best_score: float | None = None
        self._started: float | None = None
        self._pending: dict[str, Any] | None = None  # the last validation's summary, sent at the next step

    def __repr__(self) -> str:
        return f"TelegramAlerts(chat_id={self.chat_id!r}, min_level={self.min_level!r})"

    @property
    @override
    def state_key(self) -> str:
        # The chat identifies the conversation the counts belong to; min_level only filters what is sent.
        return self._generate_state_key(chat_id=self.chat_id)

    def _about(self) -> dict[str, Any]:
        return {"trial_number": self.trial_number, "study_name": self.study_name}

    def send(self, alert: Alert) -> None:
        """Queues an alert of your own through this callback's channel (rank zero, during fit)."""
        if self.dispatcher is not None:
            self.dispatcher.send(alert)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.fast_dev_run:
            return
        problem = self._open() if trainer.is_global_zero else None
        # Every rank must fail together, or the others wait forever in their next collective.
        problem = trainer.strategy.broadcast(problem, src=0)
        if problem is None:
            return
        advice = ("Fix `token`/TELEGRAM_BOT_TOKEN or `chat_id`/TELEGRAM_CHAT_ID, or set on_bad_token=continue to "
                  "train with alerts in the log")
        if self.on_bad_token == "fail":
            self._close(timeout_s=1.0)
            raise AlertsConfigError(f"TelegramAlerts: {problem}. {advice}")
        if trainer.is_global_zero:
            log.warning("TelegramAlerts: %s; alerts go to the log instead (on_bad_token=continue)", problem)
            self._close(timeout_s=1.0)
            self.dispatcher = AlertDispatcher(LogChannel(), min_level=self.min_level)

    def _open(self) -> str | None:
        """Builds the dispatcher and checks the channel; returns what is wrong with the credentials, if anything."""
        try:
            self.dispatcher = build_dispatcher(self._token, self.chat_id, self.base_url, **self._dispatcher_options)
        except AlertsConfigError as error:
            return str(error)
        try:
            log.info("TelegramAlerts: sending to %s", self.dispatcher.check(self.check_timeout_s))
        except (RetryableError, TimeoutError) as error:  # down now is not wrong: the dispatcher retries
            log.warning("TelegramAlerts: could not reach the %s channel at start (%s); alerts are queued and retried",
                        self.dispatcher.channel.name, error)
        except ChannelError as error:  # a rejected token or chat, or another answer that will not change
            return str(error)
        return None

    def _close(self, timeout_s: float) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close(timeout_s)
            self.dispatcher = None

    def _active(self, trainer: pl.Trainer) -> bool:
        return self.dispatcher is not None and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return
        self._started = time.monotonic()
        self._new_best(trainer)
        parameters = sum(p.numel() for p in pl_module.parameters())
        facts = {"model": type(pl_module).__name__,
                 "parameters": f"{parameters / 1e6:.2f}M" if parameters >= 100_000 else f"{parameters:,}",
                 "max_steps": trainer.max_steps if trainer.max_steps > 0 else None,
                 "devices": f"{trainer.world_size} × {type(trainer.accelerator).__name__.removesuffix('Accelerator')}",
                 "precision": trainer.precision,
                 "resumed at step": trainer.global_step or None, **self.start_info, "MLflow run": mlflow_run(trainer)}
        self.send(templates.start_alert(facts, **self._about()))

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return
        self.validations += 1
        due = (self.validations - 1) % self.every_n_validations == 0
        metrics = {}
        if due:
            names = self.metrics if self.metrics is not None else sorted(trainer.callback_metrics)[:_MAX_METRICS]
            logged = trainer.callback_metrics
            metrics = {name: _scalar(logged[name]) for name in names if name in logged}
        media = latest_media(trainer)
        fresh = media.get("step") == trainer.global_step
        self._pending = {"due": due, "step": trainer.global_step, "validation": self.validations,
                         "metrics": {k: v for k, v in metrics.items() if v is not None},
                         "photo": media.get("alignment") if fresh and self.send_photo else None,
                         "audio": media.get("audio") if fresh and self.send_audio else None}

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._pending is not None:
            self._send_pending(trainer)

    def _new_best(self, trainer: pl.Trainer) -> tuple[str, float] | None:
        """ModelCheckpoint's best (monitor, score) when it changed since the last look."""
        checkpoint = trainer.checkpoint_callback
        path = getattr(checkpoint, "best_model_path", None)
        score = getattr(checkpoint, "best_model_score", None)
        if not path or score is None or path == self.best_path:
            return None
        self.best_path, self.best_score = path, float(score)
        return checkpoint.monitor, self.best_score

    def _send_pending(self, trainer: pl.Trainer) -> None:
        pending, self._pending = self._pending, None
        if self.dispatcher is None:
            return
        previous = self.best_score
        best = self._new_best(trainer)
        if pending["due"]:
            note = f"{best[0]} = {best[1]:.4g} (new)" if best else None
            self.send(templates.summary_alert(pending["step"], pending["validation"], pending["metrics"], note,
                                              photo=pending["photo"]))
            if pending["audio"]:
                self.send(templates.audio_alert(pending["step"], Path(pending["audio"])))
        elif best is not None and self.notify_new_best:
            self.send(templates.new_best_alert(best[0], best[1], pending["step"], previous, self.best_path))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return
        if self._pending is not None:
            self._send_pending(trainer)
        reason = get_stop_reason(trainer)
        if reason is not None and reason.source == "pruning":
            self.send(templates.pruned_alert(reason.step, reason.message, **self._about()))
            return
        if reason is not None:
            self.send(templates.early_stop_alert(reason.criterion, reason.message, reason.step, **self._about()))
        checkpoint = trainer.checkpoint_callback
        score = getattr(checkpoint, "best_model_score", None)
        self.send(templates.end_alert(
            self._elapsed(), trainer.global_step, getattr(checkpoint, "monitor", None),
            float(score) if score is not None else None,
            getattr(checkpoint, "best_model_path", None) or getattr(checkpoint, "last_model_path", None) or None,
            mlflow_run(trainer), **self._about()))

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self.dispatcher is None:
            return
        if type(exception).__name__ == "TrialPruned":  # optuna's way of saying "stop, this trial is pruned"
            self.send(templates.pruned_alert(trainer.global_step, str(exception) or None, **self._about()))
        else:
            self.send(templates.exception_alert(exception, trainer.global_step, **self._about()))
        self._close(self.flush_timeout_s)  # teardown is not called after an exception

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._close(self.flush_timeout_s)

    def _elapsed(self) -> float:
        return self.elapsed_s + (time.monotonic() - self._started if self._started is not None else 0.0)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations, "elapsed_s": self._elapsed()}

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        adopt_older_state(self, checkpoint, chat_id=self.chat_id)  # keys once held min_level too

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = int(state_dict.get("validations", 0))
        self.elapsed_s = float(state_dict.get("elapsed_s", 0.0))
