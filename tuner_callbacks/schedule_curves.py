"""Schedule curves: the value of a hyperparameter as a pure function of the step, testable without a Trainer.

Each schedule is a frozen dataclass called as ``schedule(step) -> float``, ``step`` counting from 0 (optimizer
steps, or epochs). Past ``total_steps`` a schedule holds its final value; torch's ``CosineAnnealingLR`` would
swing back up instead, which nobody wants from a loss weight. :class:`Plateau` is the exception: it follows a
monitored metric, so it is a small stateful object whose state is plain values for checkpoints.

Why closed forms rather than driving the optimizer with torch's ``lr_scheduler`` classes: those schedule only
an optimizer's ``lr``, and they are chainable (each ``step()`` multiplies the current lr), so they cannot
schedule a weight decay or a module attribute, they fight anything else that sets the lr, and a resumed run
must replay their counter. A closed form gives the value at any step at once, on every rank and after a
resume, with no state. Torch's classes are the reference curves instead:
``tests/tuner_callbacks/test_param_scheduler.py`` checks that ours equal ``LinearLR``, ``ExponentialLR``,
``StepLR``, ``CosineAnnealingLR``, ``SequentialLR`` (warmup) and ``ReduceLROnPlateau`` step by step.

:func:`build_schedule` turns a plain dict (a Hydra config node) into a schedule.

Example:
    >>> Cosine(start=5.0, end=0.0, total_steps=600)(300)
    2.5
    >>> hold_then_decay = build_schedule({"strategy": "cosine", "start": 5.0, "total_steps": 600, "delay_steps": 300})
    >>> [hold_then_decay(step) for step in (0, 300, 600, 900, 1200)]
    [5.0, 5.0, 2.5, 0.0, 0.0]
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuner_callbacks import options

Schedule = Callable[[int], float]


def _progress(step: int, total_steps: int) -> float:
    return min(max(step, 0), total_steps) / total_steps


@dataclass(frozen=True)
class Constant:
    """``start`` at every step (a hold, mostly as a phase of :class:`Sequential`)."""

    start: float

    def __post_init__(self) -> None:
        options.number("start", self.start)

    def __call__(self, step: int) -> float:
        return float(self.start)


@dataclass(frozen=True)
class Linear:
    """``start`` to ``end`` in a straight line over ``total_steps``, then ``end`` (torch's ``LinearLR``)."""

    start: float
    end: float
    total_steps: int

    def __post_init__(self) -> None:
        options.number("start", self.start), options.number("end", self.end)
        options.integer("total_steps", self.total_steps, low=1)

    def __call__(self, step: int) -> float:
        return self.start + (self.end - self.start) * _progress(step, self.total_steps)


@dataclass(frozen=True)
class Exponential:
    """``start * gamma**step`` (torch's ``ExponentialLR``); or, given ``end`` and ``total_steps`` instead of
    ``gamma``, the decay that reaches ``end`` at ``total_steps`` and holds it."""

    start: float
    gamma: float | None = None
    end: float | None = None
    total_steps: int | None = None

    def __post_init__(self) -> None:
        options.number("start", self.start)
        if self.gamma is not None:
            if self.end is not None or self.total_steps is not None:
                raise ValueError(f"give either `gamma` or `end` and `total_steps`, not both: got gamma={self.gamma!r}, "
                                 f"end={self.end!r}, total_steps={self.total_steps!r}")
            options.number("gamma", self.gamma, low=0, low_open=True)
            return
        if self.end is None or self.total_steps is None:
            raise ValueError(f"needs `gamma`, or `end` and `total_steps`: got gamma=None, end={self.end!r}, "
                             f"total_steps={self.total_steps!r}")
        options.integer("total_steps", self.total_steps, low=1)
        if not options.number("end", self.end) * self.start > 0:
            raise ValueError(f"`end` must be non-zero with the sign of `start` to decay exponentially, got "
                             f"end={self.end!r} with start={self.start!r}")

    def __call__(self, step: int) -> float:
        if self.gamma is not None:
            return self.start * self.gamma ** max(step, 0)
        return self.start * (self.end / self.start) ** _progress(step, self.total_steps)


@dataclass(frozen=True)
class Cosine:
    """Half a cosine from ``start`` to ``end`` over ``total_steps``, then ``end`` (torch's ``CosineAnnealingLR``
    with ``eta_min=end`` up to ``T_max``)."""

    start: float
    total_steps: int
    end: float = 0.0

    def __post_init__(self) -> None:
        options.number("start", self.start), options.number("end", self.end)
        options.integer("total_steps", self.total_steps, low=1)

    def __call__(self, step: int) -> float:
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * _progress(step, self.total_steps))) / 2


@dataclass(frozen=True)
class Step:
    """``start`` multiplied by ``gamma`` every ``step_size`` steps (torch's ``StepLR``)."""

    start: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        options.number("start", self.start), options.integer("step_size", self.step_size, low=1)
        options.number("gamma", self.gamma, low=0, low_open=True)

    def __call__(self, step: int) -> float:
        return self.start * self.gamma ** (max(step, 0) // self.step_size)


@dataclass(frozen=True)
class Warmup:
    """A straight line from ``warmup_start`` to ``peak`` over ``warmup_steps``, then a cosine from ``peak`` to
    ``end`` by ``total_steps`` (counted from 0, warmup included), then ``end``."""

    peak: float
    warmup_steps: int
    total_steps: int
    warmup_start: float = 0.0
    end: float = 0.0

    def __post_init__(self) -> None:
        options.number("peak", self.peak), options.number("warmup_start", self.warmup_start)
        options.number("end", self.end), options.integer("warmup_steps", self.warmup_steps, low=0)
        options.integer("total_steps", self.total_steps, low=1)
        if self.warmup_steps >= self.total_steps:
            raise ValueError(f"`warmup_steps` must be < `total_steps`, got warmup_steps={self.warmup_steps!r}, "
                             f"total_steps={self.total_steps!r}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (self.peak - self.warmup_start) * max(step, 0) / self.warmup_steps
        return Cosine(self.peak, self.total_steps - self.warmup_steps, self.end)(step - self.warmup_steps)


@dataclass(frozen=True)
class Sequential:
    """Runs ``phases``, ``(schedule, steps)`` pairs, one after another, each with its own step counter from 0.
    The last phase's ``steps`` may be None (it runs on); otherwise the last value is held."""

    phases: tuple[tuple[Schedule, int | None], ...]

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError(f"`phases` must hold at least one phase, got {self.phases!r}")
        for i, (schedule, steps) in enumerate(self.phases):
            if isinstance(schedule, Plateau) or not callable(schedule):
                raise ValueError(f"`phases[{i}]` must be a schedule of the step (not a plateau), got {schedule!r}")
            if steps is None and i < len(self.phases) - 1:
                raise ValueError(f"`phases[{i}].steps` is required for all but the last phase, got None")
            if steps is not None:
                options.integer(f"phases[{i}].steps", steps, low=1)

    def __call__(self, step: int) -> float:
        for schedule, steps in self.phases:
            if steps is None or step < steps:
                return schedule(step)
            step -= steps
        schedule, steps = self.phases[-1]
        return schedule(steps)


@dataclass
class Plateau:
    """Multiplies the value by ``factor`` once ``monitor`` has not improved for more than ``patience`` checks,
    then waits ``cooldown`` checks; never below ``min_value``. Torch's ``ReduceLROnPlateau`` for one value.

    Not a function of the step: :meth:`update` takes each new metric value; ``state_dict`` is plain values.
    """

    start: float
    monitor: str
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    cooldown: int = 0
    min_value: float = 0.0
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    eps: float = 1e-8  # smaller reductions are skipped, as torch's
    value: float = field(init=False)
    best: float = field(init=False)
    num_bad: int = field(init=False, default=0)
    cooldown_counter: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.value = float(options.number("start", self.start))
        options.text("monitor", self.monitor, allowed="a logged metric's name")
        options.choice("mode", self.mode, ("min", "max"))
        options.choice("threshold_mode", self.threshold_mode, ("rel", "abs"))
        options.number("factor", self.factor, low=0, high=1, low_open=True, high_open=True)
        options.integer("patience", self.patience, low=0), options.integer("cooldown", self.cooldown, low=0)
        options.number("min_value", self.min_value)
        options.number("threshold", self.threshold, low=0), options.number("eps", self.eps, low=0)
        self.best = math.inf if self.mode == "min" else -math.inf

    def _is_better(self, current: float) -> bool:
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            return sign * current < sign * self.best * (1 - sign * self.threshold)
        return sign * current < sign * self.best - self.threshold

    def update(self, metric: float) -> float:
        """Takes one check's metric value and returns the (possibly reduced) value."""
        current = float(metric)
        if self._is_better(current):
            self.best, self.num_bad = current, 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0  # bad checks during the cooldown don't count
        if self.num_bad > self.patience:
            reduced = max(self.value * self.factor, self.min_value)
            if self.value - reduced > self.eps:
                self.value = reduced
            self.cooldown_counter, self.num_bad = self.cooldown, 0
        return self.value

    def __call__(self, step: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "best": self.best, "num_bad": self.num_bad,
                "cooldown_counter": self.cooldown_counter}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.value = float(state.get("value", self.value))
        self.best = float(state.get("best", self.best))
        self.num_bad = int(state.get("num_bad", 0))
        self.cooldown_counter = int(state.get("cooldown_counter", 0))


STRATEGIES: dict[str, type] = {"constant": Constant, "linear": Linear, "exponential": Exponential, "cosine": Cosine,
                               "step": Step, "warmup": Warmup, "plateau": Plateau, "sequential": Sequential}


def base_key(strategy: str) -> str:
    """The argument that a spec may leave out to start from the target's current value."""
    return "peak" if strategy == "warmup" else "start"


def build_schedule(spec: Mapping[str, Any], start: float | None = None) -> Schedule | Plateau:
    """Builds a schedule from ``{"strategy": name, <its arguments>, "delay_steps": n}``.

    ``start`` fills the base value (``start``; ``peak`` for warmup) when ``spec`` leaves it out. ``delay_steps``
    holds the base value that many steps before the schedule's own counter starts. ``sequential`` takes
    ``phases``, a list of specs each with its length ``steps`` (all but the last); a phase's base value defaults
    to where the previous phase ended and its ``total_steps`` to its ``steps``. Errors name the argument and value.
    """
    spec = dict(spec)
    strategy = spec.pop("strategy", None)
    options.choice("strategy", strategy, sorted(STRATEGIES))
    delay = options.integer("delay_steps", spec.pop("delay_steps", 0), low=0)
    key = base_key(strategy)
    if key not in spec and start is not None:
        spec[key] = start
    if strategy == "sequential":
        schedule = _build_sequential(spec)
    else:
        fields = {f.name: f for f in dataclasses.fields(STRATEGIES[strategy]) if f.init}
        unknown = sorted(set(spec) - set(fields))
        if unknown:
            raise ValueError(f"unknown argument {unknown[0]!r} for strategy {strategy!r}; valid: {sorted(fields)}")
        for name, f in fields.items():
            if name not in spec and f.default is dataclasses.MISSING:
                raise ValueError(f"missing argument {name!r} for strategy {strategy!r}")
        schedule = STRATEGIES[strategy](**spec)
    if delay and isinstance(schedule, Plateau):
        raise ValueError(f"`delay_steps` is not supported by strategy 'plateau', got {delay!r}")
    return Sequential(((Constant(schedule(0)), delay), (schedule, None))) if delay else schedule


def _build_sequential(spec: dict[str, Any]) -> Sequential:
    start = spec.pop("start", None)
    phases = spec.pop("phases", None)
    if spec:
        raise ValueError(f"unknown argument {sorted(spec)[0]!r} for strategy 'sequential'; valid: ['phases', 'start']")
    if isinstance(phases, (str, bytes)) or not isinstance(phases, Sequence) or not phases:
        raise ValueError(f"`phases` must be a non-empty list of schedules, got {phases!r}")
    built: list[tuple[Schedule, int | None]] = []
    for i, phase in enumerate(phases):
        if not isinstance(phase, Mapping):
            raise ValueError(f"`phases[{i}]` must be a mapping with a `strategy`, got {phase!r}")
        phase = dict(phase)
        steps = phase.pop("steps", None)
        strategy_class = STRATEGIES.get(phase.get("strategy"))
        total = next((f for f in dataclasses.fields(strategy_class) if f.name == "total_steps"), None) \
            if strategy_class is not None else None
        if total is not None and total.default is dataclasses.MISSING and steps is not None:
            phase.setdefault("total_steps", steps)
        try:
            schedule = build_schedule(phase, start)
        except ValueError as error:
            raise ValueError(f"phases[{i}]: {error}") from None
        built.append((schedule, steps))
        if steps is not None and not isinstance(steps, bool) and isinstance(steps, numbers.Integral):
            start = schedule(steps)  # the next phase starts where this one ended
    return Sequential(tuple(built))
