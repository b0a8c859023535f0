"""What a training job returns to a sweeper: one metric, a composite objective, or several objectives.

``conf/hparams/search.yaml`` sets ``objective`` to a :class:`SynthesisObjective` (``conf/objective/synthesis.yaml``:
how the model speaks when it decodes on its own); ``objective=teacher_forced`` chooses the
:class:`CompositeObjective` of the teacher-forced validation loss instead. A list of objectives makes a
multi-objective study (e.g. validation loss and :class:`InferenceRealTimeFactor`). Without ``objective``, the
job returns ``optimized_metric`` as lightning-hydra-template does. Each objective is a callable
``(metrics, objects) -> float``, so ``TrialPruning(objective=...)`` reports the same value at every validation; one
with constraints also has ``result(metrics, objects)``, and the job then returns a
:class:`~tuner_callbacks.objective_result.ObjectiveResult` that the sweeper records on the trial.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from tacotron2_lightning.app.config_validation import ConfigError
from tuner_callbacks.history import MetricHistory
from tuner_callbacks.objective_result import ObjectiveResult
from tuner_callbacks.pruning import pruned_by_trial_pruning
from tuner_callbacks.stop_reason import get_stop_reason

log = logging.getLogger(__name__)


def metric_value(metrics: Mapping[str, float], name: str, key: str = "metric") -> float:
    """The value of a metric an objective needs; raises naming the metric (as config ``key``) when it was not
    logged."""
    if name not in metrics:
        raise ConfigError(f"{key}={name!r} was not logged; logged metrics are {sorted(metrics)}")
    return float(metrics[name])


class CompositeObjective:
    """``metric`` + ``gap_weight`` x growth of the validation-training gap + ``alignment_weight`` x shortfall of
    the alignment score; lower is better.

    * gap growth: ``val - train`` at the last validation minus its smallest value at any validation (needs
      :class:`~tuner_callbacks.MetricHistory` in the run; 0 without it). A run that starts to overfit pays
      for it even when its validation loss is still fine.
    * alignment shortfall: ``max(0, min_alignment - score) / min_alignment``, from 0 (aligned) to 1 (no
      attention at all): a Tacotron2 that never aligns cannot speak, whatever its teacher-forced loss.
    """

    def __init__(self, metric: str = "val/loss", train_metric: str = "train/loss", gap_weight: float = 0.0,
                 alignment_metric: str = "val/alignment_score", min_alignment: float = 0.25,
                 alignment_weight: float = 0.0):
        for name, value in (("gap_weight", gap_weight), ("alignment_weight", alignment_weight)):
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"objective.{name} must be a number >= 0, got {value!r}")
        if not 0 < min_alignment <= 1:
            raise ConfigError(f"objective.min_alignment must be in (0, 1], got {min_alignment!r}")
        self.metric, self.train_metric, self.gap_weight = metric, train_metric, gap_weight
        self.alignment_metric, self.min_alignment, self.alignment_weight = alignment_metric, min_alignment, \
            alignment_weight

    def __call__(self, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> float:
        value = metric_value(metrics, self.metric)
        if self.gap_weight:
            value += self.gap_weight * self.gap_growth(objects.get("trainer"))
        if self.alignment_weight:
            score = metric_value(metrics, self.alignment_metric)
            value += self.alignment_weight * max(0.0, self.min_alignment - score) / self.min_alignment
        return value

    def gap_growth(self, trainer: Any) -> float:
        history = next((c for c in getattr(trainer, "callbacks", []) if isinstance(c, MetricHistory)), None)
        if history is None:
            log.warning("objective.gap_weight is set but the run has no MetricHistory callback: no gap penalty")
            return 0.0
        wide = history.wide()
        if self.metric not in wide or self.train_metric not in wide:
            return 0.0
        # Each validation against the newest training loss recorded up to its step.
        train = wide[self.train_metric].ffill()
        gaps = (wide[self.metric] - train).dropna()
        return float(gaps.iloc[-1] - gaps.min()) if len(gaps) else 0.0


class SynthesisObjective:
    """How the model speaks when it decodes on its own: one validated metric, lower is better, and the conditions a
    usable model must meet as constraints.

    * The value is ``metric`` alone (``val/cepstral_decorrelation_sl`` by default: whether the free-running spectrum
      moves as the recording's does; the metric that ranks ``benchmarks/metric_validity.py``'s ladder and every
      aligned checkpoint above every unaligned one, which MCD does not).
    * Constraints (Optuna's convention, feasible when ``<= 0``), recorded on the trial by the sweeper
      (:class:`~tuner_callbacks.objective_result.ObjectiveResult`), so the study's best trial and the registry's
      champion are the best *feasible* trial:

      - ``gate_stop_rate``: ``min_gate_stop_rate - val/gate_stop_rate``: utterances that never stop are unusable;
      - ``duration_ratio``: how far ``val/duration_ratio`` (median synthesised over recorded length) lies outside
        ``duration_range``.

    * ``infeasible_penalty`` (0: off) adds ``penalty x`` the sum of the violations to the value: a fallback for
      samplers that ignore constraints (random, grid, CMA-ES, QMC), where a violation must cost in the value itself.

    The metrics are those :class:`~tacotron2_lightning.module.Tacotron2Module` logs at each validation
    (``health_utterances`` > 0). :class:`~tuner_callbacks.TrialPruning` calls the objective at every validation and
    sees the value (with the penalty, if any).
    """

    def __init__(self, metric: str = "val/cepstral_decorrelation_sl", gate_metric: str = "val/gate_stop_rate",
                 min_gate_stop_rate: float = 0.95, duration_metric: str = "val/duration_ratio",
                 duration_range: Sequence[float] = (0.85, 1.15), infeasible_penalty: float = 0.0):
        for name, value in (("min_gate_stop_rate", min_gate_stop_rate), ("infeasible_penalty", infeasible_penalty)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"objective.{name} must be a number >= 0, got {value!r}")
        if min_gate_stop_rate > 1:
            raise ConfigError(f"objective.min_gate_stop_rate is a fraction of utterances, at most 1, got "
                              f"{min_gate_stop_rate!r}")
        bounds = list(duration_range) if isinstance(duration_range, Sequence | ListConfig) else None
        if (bounds is None or len(bounds) != 2 or any(isinstance(b, bool) or not isinstance(b, int | float)
                                                      for b in bounds) or not 0 < bounds[0] <= bounds[1]):
            raise ConfigError(f"objective.duration_range must be [low, high] with 0 < low <= high, got "
                              f"{duration_range!r}")
        self.metric, self.gate_metric, self.min_gate_stop_rate = metric, gate_metric, float(min_gate_stop_rate)
        self.duration_metric, self.duration_range = duration_metric, (float(bounds[0]), float(bounds[1]))
        self.infeasible_penalty = float(infeasible_penalty)

    def constraints(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Each constraint's value, feasible when ``<= 0`` (by how much a condition is missed when positive)."""
        low, high = self.duration_range
        ratio = metric_value(metrics, self.duration_metric, key="objective.duration_metric")
        return {"gate_stop_rate": self.min_gate_stop_rate - metric_value(metrics, self.gate_metric,
                                                                         key="objective.gate_metric"),
                "duration_ratio": max(low - ratio, ratio - high)}

    def __call__(self, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> float:
        value = metric_value(metrics, self.metric, key="objective.metric")
        if self.infeasible_penalty:
            value += self.infeasible_penalty * sum(max(0.0, v) for v in self.constraints(metrics).values())
        return value

    def result(self, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> ObjectiveResult:
        """The value with its constraints, for the sweeper to record on the trial."""
        return ObjectiveResult(values=(self(metrics, objects),), constraints=self.constraints(metrics))


class InferenceRealTimeFactor:
    """Seconds of free-running synthesis per second of audio, on the first ``utterances`` validation texts (lower
    is faster). Measured on the trained model where it trained (CPU or GPU)."""

    def __init__(self, utterances: int = 2, max_decoder_steps: int | None = None):
        self.utterances, self.max_decoder_steps = utterances, max_decoder_steps
        self.audio_seconds = 0.0  # of the last measurement

    def __call__(self, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> float:
        import torch

        module, datamodule = objects["module"], objects["datamodule"]
        batch = next(iter(datamodule.val_dataloader()))
        text, input_lengths = batch[0][: self.utterances], batch[1][: self.utterances]
        text, input_lengths = text.to(module.device), input_lengths.to(module.device)
        model = module.model
        steps = self.max_decoder_steps or model.config.max_decoder_steps
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                start = time.perf_counter()
                lengths = model.inference(text, input_lengths, max_decoder_steps=steps, warn_at_cap=False).lengths
                seconds = time.perf_counter() - start
        finally:
            model.train(was_training)
        # ``lengths`` counts mel frames (decoder steps x n_frames_per_step already).
        self.audio_seconds = int(lengths.sum()) * module.audio.hop_length / module.audio.sampling_rate
        return seconds / self.audio_seconds if self.audio_seconds else math.inf


def objective_value(cfg: DictConfig, metrics: Mapping[str, float], objects: Mapping[str, Any]
                    ) -> float | tuple[float, ...] | ObjectiveResult:
    """What ``train.py`` returns: raises ``optuna.TrialPruned`` for a pruned trial, else the objective(s), as an
    :class:`~tuner_callbacks.objective_result.ObjectiveResult` where an objective has constraints."""
    trainer = objects.get("trainer")
    if trainer is not None and pruned_by_trial_pruning(trainer):
        import optuna

        reason = get_stop_reason(trainer)
        raise optuna.TrialPruned(reason.message if reason else "pruned")
    objective = cfg.get("objective")
    if objective is None:
        return metric_value(metrics, cfg.optimized_metric, key="optimized_metric")
    if isinstance(objective, ListConfig):
        results = [_evaluate(node, metrics, objects) for node in objective]
        constraints = {name: value for result in results if isinstance(result, ObjectiveResult)
                       for name, value in result.constraints.items()}
        values = tuple(float(result.values[0]) if isinstance(result, ObjectiveResult) else result for result in results)
        return ObjectiveResult(values, constraints) if constraints else values
    return _evaluate(objective, metrics, objects)


def _evaluate(node: Any, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> float | ObjectiveResult:
    """A metric's value, or an objective's: with its constraints where it has them (``result``)."""
    if isinstance(node, str):
        return metric_value(metrics, node)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"objective: expected a metric name or a node with _target_, got {node!r}")
    objective = instantiate(node)
    if hasattr(objective, "result"):
        return objective.result(metrics, objects)
    return float(objective(metrics, objects))
