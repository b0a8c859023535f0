"""ParamScheduler: schedules any numeric hyperparameter -- an optimizer's ``lr`` or ``weight_decay``, or any
attribute of the LightningModule -- per step or per epoch, in anyone's Trainer.

The curves are the pure functions of :mod:`tuner_callbacks.schedule_curves` (see there why not torch's
``lr_scheduler`` classes). Since a value depends only on the step, a resumed run and every DDP rank compute the
same value with no communication. Plateau schedules follow a metric, and a schedule with ``start_when`` waits for
one (its curve starts, step 0, at the first validation where the metric meets a threshold): their state goes into
checkpoints, and rank 0's decision is broadcast, so ranks agree even when the metric was logged without
``sync_dist=True``.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks.lightning_compat import lightning_bases, pl, rank_zero_info, rank_zero_warn
from tuner_callbacks.schedule_curves import Plateau, Schedule, base_key, build_schedule

log = logging.getLogger(__name__)

_TARGET = re.compile(r"^(?:optimizer(?P<opt>\d*)\.(?P<key>[A-Za-z_]\w*)(?:@(?P<group>\d+))?"
                     r"|module(?P<path>(?:\.[A-Za-z_]\w*)+))$")


@dataclass
class _Slot:
    """One scheduled number: a param group's key, or a module attribute."""

    name: str  # "optimizer.lr", "optimizer.lr@1", "module.guided_attention_weight"
    entry: str  # "schedules['guided_attention']", for error messages
    spec: dict[str, Any]
    # The param group dict, or the object holding the attribute. Looked up at each use: restoring a checkpoint
    # replaces the optimizer's param group dicts after on_fit_start.
    owner: Callable[[], Any]
    key: str
    identity: tuple[Any, ...]  # what two slots that set the same number share
    schedule: Schedule | Plateau | None = None

    def read(self) -> Any:
        owner = self.owner()
        return owner.get(self.key) if isinstance(owner, dict) else getattr(owner, self.key)

    def write(self, value: float) -> None:
        owner, current = self.owner(), self.read()
        if isinstance(current, torch.Tensor):  # a buffer, or a capturable optimizer's tensor lr: keep the tensor
            with torch.no_grad():
                current.fill_(value)
        elif isinstance(owner, dict):
            owner[self.key] = value
        else:
            setattr(owner, self.key, value)


def _is_number(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and value.is_floating_point()
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """Hydra's DictConfig/ListConfig as plain dicts and lists, so specs and checkpoints hold plain values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _start_when(entry: str, condition: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """A checked ``start_when`` condition, with its mode filled in; errors name ``entry``."""
    try:
        condition = options.mapping("start_when", condition,
                                    {"monitor": options.REQUIRED, "threshold": options.REQUIRED, "mode": "max"})
        options.text("start_when.monitor", condition["monitor"], allowed="a metric name")
        options.check("start_when.threshold", condition["threshold"], _is_number(condition["threshold"]), "a number")
        options.choice("start_when.mode", condition["mode"], ("min", "max"))
    except options.OptionError as error:
        raise ValueError(f"{entry}: {error}") from None
    if spec.get("strategy") == "plateau":
        raise ValueError(f"{entry}: `start_when` does not combine with strategy 'plateau', which follows its own "
                         "metric from the start")
    return {**condition, "threshold": float(condition["threshold"])}


class ParamScheduler(*lightning_bases("Callback")):
    """Sets numeric hyperparameters from schedules at every training step (or epoch), logs and records changes.

    Args:
        schedules: named entries (``{"name": spec}``, Hydra-friendly) or a list of specs. A spec is a mapping
            with ``target``, ``strategy`` and the strategy's arguments (see
            :func:`~tuner_callbacks.schedule_curves.build_schedule`); ``None`` entries are skipped, so a config can
            switch one off. Targets: ``"optimizer.<key>"`` sets ``<key>`` (``lr``, ``weight_decay``, ...) in every
            param group of the first optimizer, ``"optimizer.<key>@<i>"`` in group ``i`` only,
            ``"optimizer<n>.<key>"`` in optimizer ``n``; ``"module.<attr.path>"`` sets an attribute of the
            LightningModule. Left out, ``start`` (``peak`` for warmup) is the target's value at fit start, per
            param group. Strategies: constant, linear, exponential, cosine, step, warmup, sequential, plateau
            (needs ``monitor``, a metric logged at validation). A spec may add ``start_when: {monitor, threshold,
            mode}``: the target holds the curve's step-0 value until the first validation whose ``monitor`` is at
            or above (``mode: max``, the default) or at or below (``mode: min``) ``threshold``, and the curve
            (``delay_steps`` included) runs from that validation's step on, e.g. a guided-attention weight that
            decays once the measured alignment has formed instead of at a fixed step.
        interval: ``"step"`` evaluates schedules at ``trainer.global_step`` before each training batch;
            ``"epoch"`` at ``trainer.current_epoch`` when each epoch starts (``*_steps`` then count epochs).
        log_changes: log each new value to every logger as ``sched/<target>`` (``@i`` written ``/group<i>``),
            apart from LearningRateMonitor's ``lr-<Optimizer>`` names.
        max_history: how many changes :attr:`history` keeps (the newest).

    Example:
        >>> scheduler = ParamScheduler({
        ...     "lr": {"target": "optimizer.lr", "strategy": "warmup", "warmup_steps": 100, "total_steps": 1000},
        ...     "guided_attention": {"target": "module.guided_attention_weight", "strategy": "cosine",
        ...                          "start": 5.0, "end": 0.0, "delay_steps": 300, "total_steps": 600},
        ... })
        >>> trainer = pl.Trainer(max_steps=1000, callbacks=[scheduler], logger=False, enable_progress_bar=False)
    """

    def __init__(self, schedules: Mapping[str, Any] | Sequence[Any], interval: str = "step", log_changes: bool = True,
                 max_history: int = 10_000):
        self.interval = options.choice("interval", interval, ("step", "epoch"))
        self.log_changes = options.boolean("log_changes", log_changes)
        self.max_history = options.integer("max_history", max_history, low=0)
        self.schedules = _plain(schedules)  # as given, in plain values
        self._specs = self._validate(self.schedules)  # {"schedules['name']": spec}, the label names errors
        self._slots: list[_Slot] = []
        self._base: dict[str, float] = {}  # resolved start values of specs that leave `start` out
        self._last: dict[str, float] = {}
        self._pending_plateaus: dict[str, dict[str, Any]] = {}  # restored before the slots exist
        self._started: dict[str, int] = {}  # slot name -> the step its start_when condition first held
        self._history: deque[tuple[int, str, float]] = deque(maxlen=max_history)

    @staticmethod
    def _validate(schedules: Any) -> dict[str, dict[str, Any]]:
        if isinstance(schedules, dict):
            items = [(f"schedules[{key!r}]", spec) for key, spec in schedules.items()]
        elif isinstance(schedules, list):
            items = [(f"schedules[{i}]", spec) for i, spec in enumerate(schedules)]
        else:
            raise options.OptionError("schedules", schedules, "a mapping of names to specs or a list of specs")
        entries: dict[str, dict[str, Any]] = {}
        targets: dict[str, str] = {}
        for entry, spec in items:
            if spec is None:
                continue
            if not isinstance(spec, dict):
                raise ValueError(f"{entry} must be a mapping with `target` and `strategy`, got {spec!r}")
            spec = dict(spec)
            start_when = spec.pop("start_when", None)
            target = spec.pop("target", None)
            if not isinstance(target, str) or not _TARGET.match(target):
                raise ValueError(f"{entry}: `target` must be 'optimizer.<key>', 'optimizer.<key>@<group>' or "
                                 f"'module.<attribute.path>', got {target!r}")
            if target in targets:
                raise ValueError(f"{entry}: `target` {target!r} is already scheduled by {targets[target]}")
            targets[target] = entry
            # Check the arguments now, not at fit start; a left-out start gets a stand-in until then.
            stand_in = spec.get("end")  # a start equal to the end suits every strategy's checks
            try:
                build_schedule(spec, stand_in if _is_number(stand_in) and stand_in != 0 else 1.0)
            except ValueError as error:
                raise ValueError(f"{entry}: {error}") from None
            if start_when is not None:
                spec["start_when"] = _start_when(entry, start_when, spec)
            entries[entry] = {"target": target, **spec}
        if not entries:
            raise ValueError(f"`schedules` must hold at least one schedule, got {schedules!r}")
        return entries

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(targets=[spec["target"] for spec in self._specs.values()])

    @property
    def history(self) -> list[tuple[int, str, float]]:
        """``(trainer.global_step, target, value)`` of each change, oldest first."""
        return list(self._history)

    @property
    def values(self) -> dict[str, float]:
        """The value each target was last set to."""
        return dict(self._last)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        slots = [slot for entry, spec in self._specs.items() for slot in self._resolve(entry, spec, trainer,
                                                                                           pl_module)]
        taken = {slot.identity: f"{slot.entry} ({slot.name})" for callback in trainer.callbacks
                 if isinstance(callback, ParamScheduler) and callback is not self for slot in callback._slots}
        for slot in slots:
            other = taken.setdefault(slot.identity, f"{slot.entry} ({slot.name})")
            if other != f"{slot.entry} ({slot.name})":
                raise ValueError(f"{slot.entry}: target {slot.spec['target']!r} sets {slot.name}, which {other} "
                                 "already schedules; two schedules would overwrite each other")
        self._slots = slots
        self._build_schedules()
        if trainer.lr_scheduler_configs and any(s.name.split("@")[0].endswith(".lr") for s in slots):
            rank_zero_warn("ParamScheduler schedules an optimizer's lr and configure_optimizers returned an "
                           "lr scheduler too: the last to run wins. Schedule the lr in one place.")
        rank_zero_info("ParamScheduler: " + ", ".join(f"{s.name} ({s.spec['strategy']})" for s in slots))

    def _resolve(self, entry: str, spec: dict[str, Any], trainer: pl.Trainer,
                 pl_module: pl.LightningModule) -> list[_Slot]:
        target = spec["target"]
        match = _TARGET.match(target)
        if match["path"]:
            owner: Any = pl_module
            *parents, key = match["path"][1:].split(".")
            for part in parents:
                owner = getattr(owner, part, None)
            if owner is None or not hasattr(owner, key):
                raise AttributeError(f"{entry}: target {target!r}: {type(pl_module).__name__} has no attribute "
                                     f"{match['path'][1:]!r}")
            slot = _Slot(target, entry, spec, lambda owner=owner: owner, key, (id(owner), key))
            if not _is_number(slot.read()):
                raise TypeError(f"{entry}: target {target!r}: {type(pl_module).__name__}.{match['path'][1:]} is "
                                f"{slot.read()!r}, not a number; schedule a float attribute")
            return [slot]
        index, key = int(match["opt"] or 0), match["key"]
        if index >= len(trainer.optimizers):
            raise ValueError(f"{entry}: target {target!r} needs optimizer {index}, but "
                             f"{type(pl_module).__name__}.configure_optimizers gave {len(trainer.optimizers)}")
        optimizer = trainer.optimizers[index]
        groups = optimizer.param_groups
        if match["group"] is not None and int(match["group"]) >= len(groups):
            raise ValueError(f"{entry}: target {target!r}: {type(optimizer).__name__} has {len(groups)} param "
                             f"group(s), no group {match['group']}")
        chosen = [int(match["group"])] if match["group"] is not None else range(len(groups))
        prefix = target.split("@")[0]
        slots = [_Slot(prefix if match["group"] is None and len(groups) == 1 else f"{prefix}@{i}", entry, spec,
                       lambda i=i: trainer.optimizers[index].param_groups[i], key, ("optimizer", index, i, key))
                 for i in chosen]
        for slot in slots:
            if not _is_number(slot.read()):
                numeric = sorted(k for k, v in slot.owner().items() if _is_number(v))
                raise ValueError(f"{entry}: target {target!r}: {type(optimizer).__name__}'s param group has no "
                                 f"numeric {key!r} (got {slot.read()!r}); numeric keys: {numeric}")
        return slots

    def _build_schedules(self) -> None:
        for slot in self._slots:
            start = None
            if base_key(slot.spec["strategy"]) not in slot.spec:
                # Kept in checkpoints: a resumed run starts its curve from the same value as the first run.
                start = self._base.setdefault(slot.name, float(slot.read()))
            spec = {k: v for k, v in slot.spec.items() if k not in ("target", "start_when")}
            try:
                slot.schedule = build_schedule(spec, start)
            except ValueError as error:
                raise ValueError(f"{slot.entry} ({slot.name}): {error}") from None
            if isinstance(slot.schedule, Plateau) and slot.name in self._pending_plateaus:
                slot.schedule.load_state_dict(self._pending_plateaus.pop(slot.name))

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.interval != "step":
            return
        self._apply(trainer, self._slots, trainer.global_step)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interval != "epoch":
            return
        self._apply(trainer, self._slots, trainer.current_epoch)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._check_start_conditions(trainer)
        plateaus = [slot for slot in self._slots if isinstance(slot.schedule, Plateau)]
        for slot in plateaus:
            monitor = slot.schedule.monitor
            if monitor not in trainer.callback_metrics:
                raise RuntimeError(f"{slot.entry}: plateau monitors {monitor!r}, which was not logged; logged "
                                   f"metrics: {sorted(trainer.callback_metrics)}")
            slot.schedule.update(float(trainer.callback_metrics[monitor]))
            slot.schedule.load_state_dict(trainer.strategy.broadcast(slot.schedule.state_dict(), src=0))
        if plateaus:
            self._apply(trainer, plateaus, trainer.global_step)

    def _check_start_conditions(self, trainer: pl.Trainer) -> None:
        waiting = [slot for slot in self._slots if "start_when" in slot.spec and slot.name not in self._started]
        for slot in waiting:
            condition = slot.spec["start_when"]
            monitor = condition["monitor"]
            if monitor not in trainer.callback_metrics:
                raise RuntimeError(f"{slot.entry}: start_when monitors {monitor!r}, which was not logged; logged "
                                   f"metrics: {sorted(trainer.callback_metrics)}")
            value = float(trainer.callback_metrics[monitor])
            met = value >= condition["threshold"] if condition["mode"] == "max" else value <= condition["threshold"]
            if trainer.strategy.broadcast(met, src=0):
                step = trainer.global_step if self.interval == "step" else trainer.current_epoch
                self._started[slot.name] = step
                rank_zero_info(f"ParamScheduler: {slot.name} starts its {slot.spec['strategy']} schedule at "
                               f"{self.interval} {step} ({monitor} = {value:.4g})")

    def _apply(self, trainer: pl.Trainer, slots: list[_Slot], step: int) -> None:
        changes = {}
        for slot in slots:
            if "start_when" in slot.spec:  # held at the curve's start until the condition, then counted from it
                step_of_slot = step - self._started[slot.name] if slot.name in self._started else 0
                value = float(slot.schedule(max(step_of_slot, 0)))
            else:
                value = float(slot.schedule(step))
            slot.write(value)
            if self._last.get(slot.name) != value:
                self._last[slot.name] = value
                self._history.append((trainer.global_step, slot.name, value))
                changes[f"sched/{slot.name.replace('@', '/group')}"] = value
        if changes and self.log_changes and trainer.is_global_zero:
            log.debug("step %d: %s", trainer.global_step, changes)
            for logger in trainer.loggers:
                logger.log_metrics(changes, step=trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        plateaus = dict(self._pending_plateaus)
        plateaus.update({s.name: s.schedule.state_dict() for s in self._slots if isinstance(s.schedule, Plateau)})
        return {"base_values": dict(self._base), "last_values": dict(self._last), "plateaus": plateaus,
                "started": dict(self._started), "history": [list(change) for change in self._history]}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._base = {str(k): float(v) for k, v in state_dict.get("base_values", {}).items()}
        self._last = {str(k): float(v) for k, v in state_dict.get("last_values", {}).items()}
        self._pending_plateaus = {str(k): dict(v) for k, v in state_dict.get("plateaus", {}).items()}
        self._started = {str(k): int(v) for k, v in state_dict.get("started", {}).items()}
        self._history = deque(((int(s), str(n), float(v)) for s, n, v in state_dict.get("history", [])),
                              maxlen=self.max_history)
        if self._slots:  # strategies that restore after on_fit_start (restore_checkpoint_after_setup)
            self._build_schedules()
