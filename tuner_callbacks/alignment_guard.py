"""AlignmentGuard: rolls a run whose health metric failed back to its last healthy state, with a remedy.

Tacotron2's attention sometimes never forms, or collapses mid-training, and once stuck it rarely unlearns:
people roll back by hand. This callback does it in-process. It watches one metric at each validation (for
Tacotron2 ``val/alignment_score``, ``val/gate_stop_rate`` or ``val/alignment_error_ratio``; any metric works).
A validation is healthy when the metric is on the right side of ``threshold``. At every healthy validation the
callback keeps a snapshot of the module's weights and the optimizers' state (in memory; also on disk under
``snapshot_dir``, so a run killed and resumed can still roll back). When the metric fails for ``patience``
validations in a row, or collapses at once (it fell by ``collapse_drop`` of its last healthy value), the
snapshot is restored and the next remedy applied:

- ``lr_factor``: multiply every param group's learning rate;
- ``attributes``: set module attributes (e.g. ``guided_attention_weight: 1.0``) for ``hold_steps`` steps,
  re-applied before every batch so that they win over a ``ParamScheduler`` placed before this callback, then
  handed back to whatever drove them;
- ``reinitialize``: module paths (``model.decoder.attention_layer``) whose submodules get
  ``reset_parameters()``.

Training goes on from the same global step. After ``max_recoveries`` the next failure stops the run with a
:class:`~tuner_callbacks.stop_reason.StopReason` (``source="alignment_guard"``). Before any healthy validation
the guard has nothing to roll back to: failures count from ``warmup_steps`` on, and a failed run is then given
the remedy in place.

Each recovery is logged as the metric ``alignment_guard/recoveries`` at its step, as MLflow tags
(``alignment_guard.recoveries``, ``alignment_guard.last``), and as an alert through the alert callbacks given as
``alerts``, or by default every ``TelegramAlerts`` in the same Trainer. Under DDP every rank keeps its own
(identical) snapshot and follows rank zero's decision.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks.contract import TAG_LAST_RECOVERY, TAG_RECOVERIES
from tuner_callbacks.lightning_compat import TrainerFn, lightning_bases, pl, rank_zero_info, rank_zero_warn
from tuner_callbacks.mlflow_utils import is_mlflow_logger
from tuner_callbacks.stop_reason import StopReason, log_stop_reason, set_stop_reason

SOURCE = "alignment_guard"
# What a checkpoint keeps of the guard (state_dict and load_state_dict); the snapshot itself is on disk.
_STATE_KEYS = ("recoveries", "failed_checks", "last_healthy_value", "last_healthy_step", "hold_until", "held",
               "previous", "history")
_REMEDY_KEYS = ("lr_factor", "attributes", "hold_steps", "reinitialize")


def _check_remedy(index: int, remedy: Any) -> dict[str, Any]:
    key = f"remedies[{index}]"
    remedy = options.mapping(key, remedy, dict.fromkeys(_REMEDY_KEYS), optional=False)
    factor = options.number(f"{key}.lr_factor", remedy["lr_factor"], low=0, low_open=True, optional=True)
    attributes = remedy["attributes"] or {}
    options.check(f"{key}.attributes", attributes, isinstance(attributes, Mapping), "a mapping of names to values")
    hold = remedy["hold_steps"]
    if attributes:
        options.integer(f"{key}.hold_steps", hold, low=1)
    paths = remedy["reinitialize"] or []
    options.check(f"{key}.reinitialize", paths, not isinstance(paths, str) and all(isinstance(p, str) and p
                                                                                  for p in paths),
                  "a list of module paths")
    return {"lr_factor": factor, "attributes": dict(attributes), "hold_steps": hold, "reinitialize": list(paths)}


class AlignmentGuard(*lightning_bases("Callback")):
    """Restores the last healthy weights and optimizer state when a health metric fails, then applies a remedy.

    Args:
        monitor: the health metric, logged at validation.
        mode: ``"max"`` (healthy at or above ``threshold``) or ``"min"`` (at or below).
        threshold: the healthy side's bound.
        patience: failed validations in a row that trigger a recovery.
        collapse_drop: a recovery at once when the metric falls by this fraction of its last healthy value
            (0.5: to half of it; ``"min"`` mode: rises by it); None: patience only.
        warmup_steps: before this step a run that has never been healthy is not failing yet (its alignment
            is still forming); a run that was healthy is guarded from its first healthy validation.
        remedies: what each recovery applies after the restore, in order; the last one repeats. Each is a
            mapping of ``lr_factor``, ``attributes`` + ``hold_steps``, ``reinitialize`` (see the module doc).
        max_recoveries: recoveries allowed; the failure after them stops the run.
        snapshot_dir: where rank zero also writes the healthy snapshot (None: memory only, so a run resumed
            from a checkpoint has nothing to roll back to until its next healthy validation).
        alerts: the callbacks that send each recovery as an alert (``TelegramAlerts``, or anything with
            ``send(alert)``), also to be in the Trainer's callbacks; ``[]``: none. ``None`` (what a Hydra config
            gets, as one callback's config cannot name another): every ``TelegramAlerts`` in the Trainer's callbacks.

    Example:
        >>> guard = AlignmentGuard("val/alignment_score", threshold=0.25, patience=2,
        ...                        remedies=[{"lr_factor": 0.5, "attributes": {"guided_attention_weight": 1.0},
        ...                                   "hold_steps": 200}])
    """

    def __init__(self, monitor: str = "val/alignment_score", mode: str = "max", threshold: float = 0.25,
                 patience: int = 2, collapse_drop: float | None = 0.5, warmup_steps: int = 0,
                 remedies: Sequence[Mapping[str, Any]] = ({"lr_factor": 0.5},), max_recoveries: int = 2,
                 snapshot_dir: str | Path | None = None, alerts: Sequence[Any] | None = None):
        super().__init__()
        options.text("monitor", monitor, allowed="a metric name")
        options.choice("mode", mode, ("min", "max"))
        options.number("threshold", threshold)
        options.integer("patience", patience, low=1)
        options.integer("warmup_steps", warmup_steps, low=0)
        options.integer("max_recoveries", max_recoveries, low=0)
        options.number("collapse_drop", collapse_drop, low=0, high=1, low_open=True, high_open=True, optional=True)
        options.check("remedies", remedies, not isinstance(remedies, Mapping | str) and bool(remedies),
                      "a non-empty list of mappings")
        options.check("alerts", alerts, alerts is None or (not isinstance(alerts, str) and isinstance(alerts, Sequence)
                                                          and all(callable(getattr(a, "send", None)) for a in alerts)),
                      "a list of alert callbacks (with a send method) or None")
        self.monitor, self.mode, self.threshold = monitor, mode, float(threshold)
        self.patience, self.collapse_drop, self.warmup_steps = patience, collapse_drop, warmup_steps
        self.remedies = [_check_remedy(i, remedy) for i, remedy in enumerate(remedies)]
        self.max_recoveries = max_recoveries
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir is not None else None
        self.alerts = list(alerts) if alerts is not None else None
        # State (checkpointed).
        self.recoveries = 0
        self.failed_checks = 0
        self.last_healthy_value: float | None = None
        self.last_healthy_step: int | None = None
        self.hold_until: int | None = None  # the step until which the current remedy's attributes are held
        self.held: dict[str, Any] = {}
        self.previous: dict[str, Any] = {}  # the held attributes' values before the remedy, given back after it
        self.history: list[dict[str, Any]] = []  # one record per recovery
        # Not checkpointed: the snapshot itself (in memory; on disk under snapshot_dir).
        self._snapshot: dict[str, Any] | None = None
        self._missing_warned = False

    # -- decisions ---------------------------------------------------------------------------------------------

    def _healthy(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value >= self.threshold if self.mode == "max" else value <= self.threshold

    def _collapsed(self, value: float) -> bool:
        if self.collapse_drop is None or self.last_healthy_value is None:
            return False
        if not math.isfinite(value):
            return True
        previous = self.last_healthy_value
        if self.mode == "max":
            return value <= previous * (1 - self.collapse_drop)
        return value >= previous * (1 + self.collapse_drop)

    def _judge(self, trainer: pl.Trainer, value: float) -> str | None:
        """Updates the counters with this validation's value; returns why it fails (None: no recovery now)."""
        if self._healthy(value):
            self.failed_checks = 0
            self.last_healthy_value, self.last_healthy_step = value, trainer.global_step
            return None
        if self.last_healthy_step is None and trainer.global_step < self.warmup_steps:
            return None  # the alignment is still forming: not failing yet, and not counted
        self.failed_checks += 1
        if self._collapsed(value):
            return (f"{self.monitor} collapsed to {value:.4g} from {self.last_healthy_value:.4g} "
                    f"(healthy at step {self.last_healthy_step})")
        if self.failed_checks >= self.patience:
            side = "below" if self.mode == "max" else "above"
            return (f"{self.monitor} = {value:.4g} stayed {side} {self.threshold:g} for {self.failed_checks} "
                    f"validations")
        return None

    # -- hooks -------------------------------------------------------------------------------------------------

    @staticmethod
    def _fitting(trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not trainer.fast_dev_run

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for index, remedy in enumerate(self.remedies):  # a typo fails now, not at the first failure hours later
            for name in remedy["attributes"]:
                _get_attribute(pl_module, name, where=f"remedies[{index}].attributes")
            for path in remedy["reinitialize"]:
                _module_at(pl_module, path, where=f"remedies[{index}].reinitialize")
        if self._snapshot is None and self.snapshot_dir is not None and self._snapshot_file().is_file():
            # A resumed run: the healthy state saved before it was stopped.
            self._snapshot = torch.load(self._snapshot_file(), map_location="cpu", weights_only=False)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.hold_until is None:
            return
        if trainer.global_step < self.hold_until:
            for name, value in self.held.items():
                _set_attribute(pl_module, name, value)
            return
        for name, value in self.previous.items():
            _set_attribute(pl_module, name, value)
        rank_zero_info(f"AlignmentGuard: the remedy's hold ended at step {trainer.global_step}")
        self.hold_until, self.held, self.previous = None, {}, {}

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._fitting(trainer):
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            if not self._missing_warned:
                rank_zero_warn(f"AlignmentGuard monitors `{self.monitor}`, which was not logged; logged: "
                               f"{', '.join(f'`{key}`' for key in metrics) or 'nothing'}")
                self._missing_warned = True
            return
        value = float(metrics[self.monitor])
        # Rank zero decides and every rank follows, so all snapshot, restore (or stop) together.
        failure = self._judge(trainer, value)
        failure, healthy = trainer.strategy.broadcast((failure, self.last_healthy_step == trainer.global_step), src=0)
        if healthy:
            self._take_snapshot(trainer, pl_module)
        if failure is None:
            return
        if self.recoveries >= self.max_recoveries:
            self._stop(trainer, failure, value)
        else:
            self._recover(trainer, pl_module, failure, value)

    # -- snapshot, recovery, stop --------------------------------------------------------------------------------

    def _snapshot_file(self) -> Path:
        return self.snapshot_dir / "healthy.pt"

    def _take_snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {"step": trainer.global_step, "module": _cpu_copy(pl_module.state_dict()),
                 "optimizers": [_cpu_copy(o.state_dict()) for o in trainer.optimizers]}
        self._snapshot = state
        if self.snapshot_dir is not None and trainer.is_global_zero:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            partial = self._snapshot_file().with_suffix(".tmp")
            torch.save(state, partial)
            partial.replace(self._snapshot_file())  # atomic: a kill mid-write leaves the previous snapshot

    def _recover(self, trainer: pl.Trainer, pl_module: pl.LightningModule, failure: str, value: float) -> None:
        remedy = self.remedies[min(self.recoveries, len(self.remedies) - 1)]
        restored = self._restore(trainer, pl_module)
        done = [f"restored step {restored}" if restored is not None else "nothing healthy to restore yet"]
        if remedy["lr_factor"] is not None:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] *= remedy["lr_factor"]
            done.append(f"learning rate x{remedy['lr_factor']:g}")
        for path in remedy["reinitialize"]:
            count = _reinitialize(pl_module, path)
            done.append(f"re-initialised {path} ({count} layers)")
        if remedy["attributes"]:
            if not self.previous:  # a remedy during another's hold gives back the values from before both
                self.previous = {name: _get_attribute(pl_module, name) for name in remedy["attributes"]}
            self.held = dict(remedy["attributes"])
            self.hold_until = trainer.global_step + remedy["hold_steps"]
            for name, held in self.held.items():
                _set_attribute(pl_module, name, held)
            done.append(", ".join(f"{k}={v}" for k, v in self.held.items()) + f" for {remedy['hold_steps']} steps")
        self.recoveries += 1
        self.failed_checks = 0
        record = {"step": trainer.global_step, "failure": failure, "value": value, "restored_step": restored,
                  "remedy": "; ".join(done)}
        self.history.append(record)
        rank_zero_info(f"AlignmentGuard recovery {self.recoveries}/{self.max_recoveries} at step "
                       f"{trainer.global_step}: {failure}; {record['remedy']}")
        self._report(trainer, record)

    def _restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> int | None:
        if self._snapshot is None:
            return None
        pl_module.load_state_dict(self._snapshot["module"])
        for optimizer, state in zip(trainer.optimizers, self._snapshot["optimizers"], strict=True):
            optimizer.load_state_dict(state)  # moves the state to the parameters' device
        return self._snapshot["step"]

    def _report(self, trainer: pl.Trainer, record: Mapping[str, Any]) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            try:
                logger.log_metrics({f"{SOURCE}/recoveries": float(self.recoveries)}, step=record["step"])
                if is_mlflow_logger(logger):
                    logger.experiment.set_tag(logger.run_id, TAG_RECOVERIES, str(self.recoveries))
                    logger.experiment.set_tag(logger.run_id, TAG_LAST_RECOVERY,
                                              f"step {record['step']}: {record['failure']}; {record['remedy']}")
            except Exception as error:  # a logger's hiccup must not end the run being rescued
                rank_zero_warn(f"AlignmentGuard could not log the recovery to {type(logger).__name__}: {error}")
        from tuner_callbacks.alerts.templates import recovery_alert

        for callback in self._alert_callbacks(trainer):
            callback.send(recovery_alert(self.recoveries, self.max_recoveries, record["step"], record["failure"],
                                         record["remedy"], getattr(callback, "trial_number", None),
                                         getattr(callback, "study_name", None)))

    def _alert_callbacks(self, trainer: pl.Trainer) -> list[Any]:
        if self.alerts is not None:
            return self.alerts
        from tuner_callbacks.alerts import TelegramAlerts

        return [callback for callback in trainer.callbacks if isinstance(callback, TelegramAlerts)]

    def _stop(self, trainer: pl.Trainer, failure: str, value: float) -> None:
        message = f"{failure}, after {self.recoveries} recoveries (max_recoveries {self.max_recoveries})"
        reason = StopReason(SOURCE, "max_recoveries", message, trainer.global_step, self.monitor, value)
        trainer.should_stop = True
        if set_stop_reason(trainer, reason):
            rank_zero_info(f"AlignmentGuard stopped the run at step {trainer.global_step}: {message}")
            log_stop_reason(trainer, reason)

    # -- state -------------------------------------------------------------------------------------------------

    @property
    @override
    def state_key(self) -> str:
        # Two guards on different metrics keep separate states in one checkpoint.
        return self._generate_state_key(monitor=self.monitor)

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # Checkpoints written before the guard had a state_key hold its state under the class name alone.
        states = checkpoint.get("callbacks")
        older = type(self).__qualname__
        if states and self.state_key not in states and older in states:
            states[self.state_key] = states.pop(older)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {key: copy.copy(getattr(self, key)) for key in _STATE_KEYS}  # copies: later changes stay out

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in _STATE_KEYS:
            if key in state_dict:
                setattr(self, key, state_dict[key])


def _cpu_copy(state: Any) -> Any:
    """``state`` with every tensor copied to the CPU: a snapshot that later training steps do not change."""
    return apply_to_collection(state, torch.Tensor, lambda tensor: tensor.detach().to("cpu", copy=True))


def _resolve(root: Any, path: str, where: str) -> tuple[Any, str]:
    *parents, name = path.split(".")
    owner = root
    for part in parents:
        if not hasattr(owner, part):
            raise AttributeError(f"AlignmentGuard {where}: {type(owner).__name__} has no attribute {part!r} "
                                 f"(in {path!r})")
        owner = getattr(owner, part)
    if not hasattr(owner, name):
        raise AttributeError(f"AlignmentGuard {where}: {type(owner).__name__} has no attribute {name!r} (in {path!r})")
    return owner, name


def _get_attribute(pl_module: Any, path: str, where: str = "attributes") -> Any:
    owner, name = _resolve(pl_module, path, where)
    return getattr(owner, name)


def _set_attribute(pl_module: Any, path: str, value: Any) -> None:
    owner, name = _resolve(pl_module, path, "attributes")
    setattr(owner, name, value)


def _module_at(pl_module: torch.nn.Module, path: str, where: str = "reinitialize") -> torch.nn.Module:
    module = _get_attribute(pl_module, path, where)
    if not isinstance(module, torch.nn.Module):
        raise AttributeError(f"AlignmentGuard {where}: {path!r} is a {type(module).__name__}, not a module")
    return module


def _reinitialize(pl_module: torch.nn.Module, path: str) -> int:
    layers = [m for m in _module_at(pl_module, path).modules() if callable(getattr(m, "reset_parameters", None))]
    for layer in layers:
        layer.reset_parameters()
    return len(layers)
