"""What a training job returns to a sweeper: one metric, a composite objective, or several objectives.

``conf/hparams/search.yaml`` sets ``objective`` to a :class:`SynthesisObjective` (``conf/objective/synthesis.yaml``:
how the model speaks when it decodes on its own); ``objective=teacher_forced`` chooses the
:class:`CompositeObjective` of the teacher-forced validation loss instead. A list of objectives makes a
multi-objective study (e.g. validation loss and :class:`InferenceRealTimeFactor`). Without ``objective``, the
job returns ``optimized_metric`` as lightning-hydra-template does. Each objective is a callable
``(metrics, objects) -> float``, so ``TrialPruning(objective=...)`` reports the same value at every validation.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from tacotron2_lightning.app.config_validation import ConfigError
from tuner_callbacks.history import MetricHistory
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
    """How the model speaks when it decodes on its own, in dB; lower is better.

    ``mcd`` (mel cepstral distortion of free-running synthesis against the recordings, after DTW) plus penalties
    for what MCD alone forgives:

    * gate failures: ``gate_weight x (1 - gate_stop_rate)``: utterances that never stop cannot be used;
    * duration: ``duration_weight x max(0, |duration_ratio - 1| - duration_tolerance)``: speech more than
      ``duration_tolerance`` (20%) too short or too long, by the median over the health utterances;
    * alignment failure: ``alignment_weight x max(0, min_alignment - inference_diagonality) / min_alignment``.

    The metrics are those :class:`~tacotron2_lightning.module.Tacotron2Module` logs at each validation
    (``health_utterances`` > 0). Teacher-forced loss is a weak guide to how a Tacotron2 sounds, as the model never
    predicts from its own output there; this judges the synthesis users will hear.
    """

    def __init__(self, mcd_metric: str = "val/mcd_dtw", gate_metric: str = "val/gate_stop_rate",
                 gate_weight: float = 10.0, duration_metric: str = "val/duration_ratio",
                 duration_tolerance: float = 0.2, duration_weight: float = 10.0,
                 alignment_metric: str = "val/inference_diagonality", min_alignment: float = 0.8,
                 alignment_weight: float = 5.0):
        for name, value in (("gate_weight", gate_weight), ("duration_weight", duration_weight),
                            ("alignment_weight", alignment_weight), ("duration_tolerance", duration_tolerance)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"objective.{name} must be a number >= 0, got {value!r}")
        if not 0 < min_alignment <= 1:
            raise ConfigError(f"objective.min_alignment must be in (0, 1], got {min_alignment!r}")
        self.mcd_metric, self.gate_metric, self.gate_weight = mcd_metric, gate_metric, gate_weight
        self.duration_metric, self.duration_tolerance, self.duration_weight = (duration_metric, duration_tolerance,
                                                                               duration_weight)
        self.alignment_metric, self.min_alignment, self.alignment_weight = (alignment_metric, min_alignment,
                                                                            alignment_weight)

    def parts(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """The objective's terms by name (``mcd``, ``gate``, ``duration``, ``alignment``), for reports."""
        parts = {"mcd": metric_value(metrics, self.mcd_metric)}
        if self.gate_weight:
            parts["gate"] = self.gate_weight * (1.0 - metric_value(metrics, self.gate_metric))
        if self.duration_weight:
            off = abs(metric_value(metrics, self.duration_metric) - 1.0)
            parts["duration"] = self.duration_weight * max(0.0, off - self.duration_tolerance)
        if self.alignment_weight:
            shortfall = self.min_alignment - metric_value(metrics, self.alignment_metric)
            parts["alignment"] = self.alignment_weight * max(0.0, shortfall) / self.min_alignment
        return parts

    def __call__(self, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> float:
        return sum(self.parts(metrics).values())


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
                    ) -> float | tuple[float, ...]:
    """What ``train.py`` returns: raises ``optuna.TrialPruned`` for a pruned trial, else the objective(s)."""
    trainer = objects.get("trainer")
    if trainer is not None and pruned_by_trial_pruning(trainer):
        import optuna

        reason = get_stop_reason(trainer)
        raise optuna.TrialPruned(reason.message if reason else "pruned")
    objective = cfg.get("objective")
    if objective is None:
        return metric_value(metrics, cfg.optimized_metric, key="optimized_metric")
    if isinstance(objective, ListConfig):
        return tuple(_evaluate(node, metrics, objects) for node in objective)
    return _evaluate(objective, metrics, objects)


def _evaluate(node: Any, metrics: Mapping[str, float], objects: Mapping[str, Any]) -> float:
    if isinstance(node, str):
        return metric_value(metrics, node)
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ConfigError(f"objective: expected a metric name or a node with _target_, got {node!r}")
    return float(instantiate(node)(metrics, objects))
