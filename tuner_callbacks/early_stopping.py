"""SmartEarlyStopping: Lightning's EarlyStopping, plus rules that stop runs which will not get better.

A standalone ``pl.Callback`` rather than a subclass of Lightning's ``EarlyStopping``: the extra rules need the
whole decision (warm-up, one reason chosen among several rules, the reason agreed across ranks) and plain-value
state, and a subclass would override Lightning's private ``_run_early_stopping_check`` and
``_evaluate_stopping_criteria``, whose signatures change between releases. The classic chain below is Lightning's,
in its order and compared in the metric's dtype, and the tests run both callbacks on the same sequences.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import torch
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks._windows import relative_slope, relative_spread
from tuner_callbacks.lightning_compat import TrainerFn, lightning_bases, pl, rank_zero_info, rank_zero_warn
from tuner_callbacks.stop_reason import StopReason, log_stop_reason, set_stop_reason

# When several rules fire at one check, the most alarming is reported: a broken run before a finished one.
CRITERIA = ("non_finite", "divergence_threshold", "divergence", "below_floor", "overfitting",
            "stopping_threshold", "patience", "gradient", "plateau")
# Each optional rule's options and their defaults (REQUIRED: no value suits every model, the caller gives it).
RULE_DEFAULTS = {
    "gradient": {"window": 5, "min_slope": 1e-3},
    "plateau": {"window": 5, "min_relative_spread": 0.01},
    "overfitting": {"train_monitor": "train/loss", "growing_checks": 3, "max_ratio": None, "smoothing": 0.0},
    "divergence": {"factor": 3.0},
    "floor": {"monitor": options.REQUIRED, "min_value": options.REQUIRED, "after_steps": 0, "patience": 1},
}
_METRIC = "a non-empty metric name"


def _rule(name: str, given: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Rule ``name``'s options merged over :data:`RULE_DEFAULTS` and checked; None keeps the rule off."""
    rule = options.mapping(name, given, RULE_DEFAULTS[name])
    if rule is None:
        return None
    key = f"{name}.{{}}".format
    if name in ("gradient", "plateau"):
        options.integer(key("window"), rule["window"], low=2)
    if name == "gradient":
        options.number(key("min_slope"), rule["min_slope"], low=0)
    elif name == "plateau":
        options.number(key("min_relative_spread"), rule["min_relative_spread"], low=0, low_open=True)
    elif name == "overfitting":
        options.text(key("train_monitor"), rule["train_monitor"], allowed=_METRIC)
        options.integer(key("growing_checks"), rule["growing_checks"], low=1, optional=True)
        options.number(key("max_ratio"), rule["max_ratio"], low=1, low_open=True, optional=True)
        options.number(key("smoothing"), rule["smoothing"], low=0, high=1, high_open=True)
        if rule["growing_checks"] is None and rule["max_ratio"] is None:
            raise options.OptionError(name, dict(given), "a mapping with growing_checks or max_ratio",
                                      lambda q: f"{q(name)} needs growing_checks or max_ratio, got {dict(given)!r}")
    elif name == "divergence":
        options.number(key("factor"), rule["factor"], low=1, low_open=True)
    elif name == "floor":
        options.text(key("monitor"), rule["monitor"], allowed=_METRIC)
        options.number(key("min_value"), rule["min_value"])
        options.integer(key("after_steps"), rule["after_steps"], low=0)
        options.integer(key("patience"), rule["patience"], low=1)
    return rule


class SmartEarlyStopping(*lightning_bases("Callback")):
    """Stops training when the monitored metric stops improving, or when the run is failing or flat.

    Lightning's ``EarlyStopping`` semantics for ``monitor``, ``mode``, ``min_delta``, ``patience``, ``strict``,
    ``check_finite``, ``stopping_threshold``, ``divergence_threshold`` and ``check_on_train_epoch_end`` (by
    default the check runs after each validation). Each extra rule is a dict of options (None: off):

    - ``gradient`` ``{window, min_slope}``: the least-squares slope of the last ``window`` values, per check and
      relative to their mean magnitude, shows less progress than ``min_slope`` (a worsening metric counts).
    - ``plateau`` ``{window, min_relative_spread}``: (max - min) / mean magnitude of the last ``window`` values
      is below the bound, even if each check improves a little (which resets ``patience``).
    - ``overfitting`` ``{train_monitor, growing_checks, max_ratio, smoothing}``: the gap validation - training
      (training - validation in max mode) is positive and grew at each of ``growing_checks`` checks in a row,
      or validation / training is above ``max_ratio`` (for positive metrics). The training value is the latest
      in ``trainer.callback_metrics`` at check time (``train/loss`` is logged per step, so it is one batch's
      loss); ``smoothing`` > 0 replaces it by an exponential moving average over checks with that weight.
    - ``divergence`` ``{factor}``: the metric is NaN/Inf, or worse than ``factor`` times its best (best /
      factor in max mode; for positive metrics such as losses).
    - ``floor`` ``{monitor, min_value, after_steps, patience}``: from step ``after_steps`` on (default 0), the
      metric ``monitor`` (any logged metric, not only the one early stopping watches; NaN counts as below)
      stayed below ``min_value`` for ``patience`` checks in a row (default 1). ``monitor`` and ``min_value``
      have no defaults: what counts as failing is the model's, e.g. an attention alignment score that never rose.

    Before ``min_steps`` steps and ``min_epochs`` epochs no rule may stop the run, but all of them keep
    counting, as Lightning's ``EarlyStopping`` does under ``Trainer(min_steps=...)``: the first check after the
    warm-up stops if a rule still holds. The stop reason, a :class:`~tuner_callbacks.stop_reason.StopReason`, is
    in ``self.stop_reason`` and ``get_stop_reason(trainer)``, in the log, and in every logger as the metrics
    ``early_stopping/stopped`` and ``early_stopping/stopped_by/<criterion>`` (MLflow also gets tags). Under
    DDP any rank that decides stops all; the lowest such rank broadcasts its reason, so all ranks record it
    (rank 0's when it decided too). Counters, best score and windows are checkpointed: a resumed run continues.

    Example:
        >>> stopper = SmartEarlyStopping("val/loss", patience=10, divergence={"factor": 3.0},
        ...                              floor={"monitor": "val/accuracy", "min_value": 0.5, "after_steps": 5000})
        >>> trainer = pl.Trainer(callbacks=[stopper], max_steps=100_000)
    """

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "min",
        min_delta: float = 0.0,
        patience: int = 3,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        min_steps: int = 0,
        min_epochs: int = 0,
        gradient: Mapping[str, Any] | None = None,
        plateau: Mapping[str, Any] | None = None,
        overfitting: Mapping[str, Any] | None = None,
        divergence: Mapping[str, Any] | None = None,
        floor: Mapping[str, Any] | None = None,
        strict: bool = True,
        check_on_train_epoch_end: bool | None = None,
        verbose: bool = True,
    ):
        super().__init__()
        self.monitor, self.mode, self.min_delta, self.patience = monitor, mode, min_delta, patience
        self.check_finite, self.strict, self.verbose = check_finite, strict, verbose
        self.stopping_threshold, self.divergence_threshold = stopping_threshold, divergence_threshold
        self.min_steps, self.min_epochs = min_steps, min_epochs
        self._check_on_train_epoch_end = check_on_train_epoch_end
        options.choice("mode", mode, ("min", "max"))
        options.text("monitor", monitor, allowed=_METRIC)
        options.number("min_delta", min_delta, low=0)
        options.integer("patience", patience, low=0)
        options.number("stopping_threshold", stopping_threshold, optional=True)
        options.number("divergence_threshold", divergence_threshold, optional=True)
        options.integer("min_steps", min_steps, low=0)
        options.integer("min_epochs", min_epochs, low=0)
        self.gradient = _rule("gradient", gradient)
        self.plateau = _rule("plateau", plateau)
        self.overfitting = _rule("overfitting", overfitting)
        self.divergence = _rule("divergence", divergence)
        self.floor = _rule("floor", floor)
        self._better = torch.lt if mode == "min" else torch.gt
        # Lightning's sign convention: current - delta must beat the best score to count as an improvement.
        self._signed_delta = -min_delta if mode == "min" else min_delta
        windows = [rule["window"] for rule in (self.gradient, self.plateau) if rule]
        # State: plain values only, so checkpoints load with torch.load(weights_only=True).
        self.wait_count = 0
        self.best_score = math.inf if mode == "min" else -math.inf
        self.history: deque[float] = deque(maxlen=max(windows, default=0))
        self.previous_gap: float | None = None
        self.gap_growth = 0
        self.train_ema: float | None = None
        self.floor_low_count = 0
        self.stopped_step = 0
        self.stopped_epoch = 0
        self.stop_reason: StopReason | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            # Lightning's default: on train epoch end only when validation runs exactly once per epoch.
            self._check_on_train_epoch_end = trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1

    def _should_skip(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._check_on_train_epoch_end or self._should_skip(trainer):
            return
        self._run_check(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._check_on_train_epoch_end or self._should_skip(trainer):
            return
        self._run_check(trainer)

    def _read(self, logs: Mapping[str, Any], name: str) -> torch.Tensor | None:
        if name not in logs:
            message = (f"SmartEarlyStopping monitors `{name}`, which was not logged; logged: "
                       f"{', '.join(f'`{key}`' for key in logs) or 'nothing'}")
            if self.strict:
                raise RuntimeError(message)
            rank_zero_warn(message, category=RuntimeWarning)
            return None
        value = torch.as_tensor(logs[name]).detach().squeeze()
        return value if value.is_floating_point() else value.float()

    def _run_check(self, trainer: pl.Trainer) -> None:
        current = self._read(trainer.callback_metrics, self.monitor)
        if current is None:
            return
        fired = self._evaluate(trainer, current)
        local = None
        if fired:
            criterion = next(name for name in CRITERIA if name in fired)
            message, metric, value = fired[criterion]
            if trainer.global_step < self.min_steps or trainer.current_epoch < self.min_epochs:
                if self.verbose:
                    rank_zero_info(f"SmartEarlyStopping: {criterion} holds ({message}) but the warm-up lasts until "
                                   f"step {self.min_steps} and epoch {self.min_epochs}")
            else:
                local = StopReason("early_stopping", criterion, message, trainer.global_step, metric, value)
        # Any rank that wants to stop stops them all, as in Lightning's EarlyStopping.
        decision = trainer.strategy.reduce_boolean_decision(local is not None, all=False)
        trainer.should_stop = trainer.should_stop or decision
        if decision:
            self._record(trainer, self._agree(trainer, local))

    @staticmethod
    def _agree(trainer: pl.Trainer, local: StopReason | None) -> StopReason:
        """The lowest rank that decided tells the others why, so every rank records the same reason."""
        if trainer.world_size == 1:
            return local
        rank = trainer.global_rank if local else trainer.world_size
        candidate = torch.tensor(rank, device=trainer.strategy.root_device)
        source = int(trainer.strategy.reduce(candidate, reduce_op="min"))
        return StopReason(**trainer.strategy.broadcast(local.to_dict() if local else None, src=source))

    def _record(self, trainer: pl.Trainer, reason: StopReason) -> None:
        self.stop_reason = reason
        self.stopped_step, self.stopped_epoch = trainer.global_step, trainer.current_epoch
        set_stop_reason(trainer, reason)
        rank_zero_info(f"SmartEarlyStopping stopped the run at step {reason.step} ({reason.criterion}): "
                       f"{reason.message}")
        log_stop_reason(trainer, reason)

    def _evaluate(self, trainer: pl.Trainer, current: torch.Tensor) -> dict[str, tuple[str, str, float]]:
        """Updates the state with this check's values; returns criterion -> (message, metric, value) that fired."""
        fired: dict[str, tuple[str, str, float]] = {}
        name, value, best = self.monitor, float(current), self.best_score
        sign = "<" if self.mode == "min" else ">"
        # Lightning's chain, in its order and in the metric's dtype, so both stop at the same check.
        if self.check_finite and not torch.isfinite(current):
            fired["non_finite"] = (f"{name} = {value} is not finite; best was {best:.4g}", name, value)
        elif self.stopping_threshold is not None and self._better(current, self.stopping_threshold):
            fired["stopping_threshold"] = (f"{name} = {value:.4g} {sign} stopping_threshold {self.stopping_threshold}",
                                           name, value)
        elif self.divergence_threshold is not None and self._better(-current, -self.divergence_threshold):
            fired["divergence_threshold"] = (f"{name} = {value:.4g} is worse than divergence_threshold "
                                             f"{self.divergence_threshold}", name, value)
        elif self._better(current - self._signed_delta, torch.tensor(best, dtype=current.dtype, device=current.device)):
            if self.verbose:
                rank_zero_info(f"SmartEarlyStopping: {name} improved to {value:.4g} (best was {best:.4g})")
            self.best_score, self.wait_count = value, 0
        else:
            self.wait_count += 1
            if self.wait_count >= self.patience:
                fired["patience"] = (f"{name} did not improve by more than min_delta {self.min_delta} for "
                                     f"{self.wait_count} checks; best {best:.4g}", name, value)
        finite = math.isfinite(value)
        if finite:
            self.history.append(value)
        if self.divergence:
            self._check_divergence(value, fired)
        if self.floor:
            self._check_floor(trainer, fired)
        if self.overfitting and finite:
            self._check_overfitting(trainer, value, fired)
        if self.gradient and len(self.history) >= self.gradient["window"]:
            self._check_gradient(value, fired)
        if self.plateau and len(self.history) >= self.plateau["window"]:
            self._check_plateau(value, fired)
        return fired

    def _check_gradient(self, value: float, fired: dict) -> None:
        window, bound = list(self.history)[-self.gradient["window"]:], self.gradient["min_slope"]
        slope = relative_slope(window)
        progress = -slope if self.mode == "min" else slope  # worsening is no progress either
        if progress < bound:
            fired["gradient"] = (f"{self.monitor} relative slope {slope:+.3g} per check over the last {len(window)} "
                                 f"checks shows less progress than min_slope {bound}", self.monitor, value)

    def _check_plateau(self, value: float, fired: dict) -> None:
        window, bound = list(self.history)[-self.plateau["window"]:], self.plateau["min_relative_spread"]
        spread = relative_spread(window)
        if spread < bound:
            fired["plateau"] = (f"{self.monitor} relative spread {spread:.3%} over the last {len(window)} checks is "
                                f"below min_relative_spread {bound:.3%}", self.monitor, value)

    def _check_divergence(self, value: float, fired: dict) -> None:
        name, factor, best = self.monitor, self.divergence["factor"], self.best_score
        if not math.isfinite(value):
            fired["divergence"] = (f"{name} = {value} is not finite", name, value)
        elif math.isfinite(best) and best > 0:
            limit = best * factor if self.mode == "min" else best / factor
            if (value > limit) if self.mode == "min" else (value < limit):
                relation = "above" if self.mode == "min" else "below"
                fired["divergence"] = (f"{name} = {value:.4g} is {relation} {limit:.4g}, {factor} times its best "
                                       f"{best:.4g}", name, value)

    def _check_floor(self, trainer: pl.Trainer, fired: dict) -> None:
        options = self.floor
        if trainer.global_step < options["after_steps"]:
            return
        value = self._read(trainer.callback_metrics, options["monitor"])
        if value is None:
            return
        name, value, floor = options["monitor"], float(value), options["min_value"]
        low = not value >= floor  # NaN is below: a metric that became NaN has not reached the floor
        self.floor_low_count = self.floor_low_count + 1 if low else 0
        if self.floor_low_count >= options["patience"]:
            fired["below_floor"] = (f"{name} = {value:.4g} stayed below the floor min_value {floor} for "
                                    f"{self.floor_low_count} checks in a row after step {options['after_steps']}",
                                    name, value)

    def _check_overfitting(self, trainer: pl.Trainer, value: float, fired: dict) -> None:
        options = self.overfitting
        train = self._read(trainer.callback_metrics, options["train_monitor"])
        if train is None or not torch.isfinite(train):
            return
        weight, train = options["smoothing"], float(train)
        self.train_ema = train if self.train_ema is None else weight * self.train_ema + (1 - weight) * train
        gap = value - self.train_ema if self.mode == "min" else self.train_ema - value
        grew = self.previous_gap is not None and gap > 0 and gap > self.previous_gap
        self.gap_growth = self.gap_growth + 1 if grew else 0
        self.previous_gap = gap
        pair = f"{self.monitor} = {value:.4g} vs {options['train_monitor']} = {self.train_ema:.4g}"
        if options["growing_checks"] is not None and self.gap_growth >= options["growing_checks"]:
            fired["overfitting"] = (f"the gap {pair} grew for {self.gap_growth} checks in a row to {gap:.4g}",
                                    self.monitor, value)
        elif options["max_ratio"] is not None:
            numerator, denominator = (value, self.train_ema) if self.mode == "min" else (self.train_ema, value)
            if denominator > 0 and numerator / denominator > options["max_ratio"]:
                fired["overfitting"] = (f"the ratio {pair} is {numerator / denominator:.3g}, above max_ratio "
                                        f"{options['max_ratio']}", self.monitor, value)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count, "best_score": self.best_score, "history": list(self.history),
            "previous_gap": self.previous_gap, "gap_growth": self.gap_growth, "train_ema": self.train_ema,
            "floor_low_count": self.floor_low_count, "stopped_step": self.stopped_step,
            "stopped_epoch": self.stopped_epoch,
            "stop_reason": self.stop_reason.to_dict() if self.stop_reason else None,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = int(state_dict.get("wait_count", 0))
        self.best_score = float(state_dict.get("best_score", self.best_score))  # float(): also Lightning's tensor
        self.history = deque((float(v) for v in state_dict.get("history", ())), maxlen=self.history.maxlen)
        self.previous_gap = state_dict.get("previous_gap")
        self.gap_growth = int(state_dict.get("gap_growth", 0))
        self.train_ema = state_dict.get("train_ema")
        # alignment_low_count: the same counter under the name of the rule before it was generalised.
        self.floor_low_count = int(state_dict.get("floor_low_count", state_dict.get("alignment_low_count", 0)))
        self.stopped_step = int(state_dict.get("stopped_step", 0))
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
        reason = state_dict.get("stop_reason")
        self.stop_reason = StopReason(**reason) if reason else None
