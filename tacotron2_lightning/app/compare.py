"""Compares two Tacotron2 models utterance by utterance on one validation set, with a paired test per metric.

Per utterance and model: NVIDIA's teacher-forced losses (``loss``, ``mel_loss``, ``gate_loss``), the
teacher-forced ``alignment_score`` (as ``val/alignment_score``), and from free-running decoding capped at
``cap_ratio`` times the target length (as ``val/gate_stop_rate``): ``gate_stop`` (1 if the gate stopped it),
``mcd``, the mel-cepstral distortion against the ground truth (see :mod:`~tacotron2_lightning.mcd`), and
``cepstral_decorrelation``, the sweep's objective (see :mod:`~tacotron2_lightning.cepstral_decorrelation`).
On data with word timings (the built-in dataset's ``timings.json``), also ``alignment_error``: the teacher-forced
attention's mean distance in symbols from each word as the audio starts it (as ``val/alignment_error``), and
``alignment_error_ratio``: that over the mean error of a constant-rate line on the same utterances (as
``val/alignment_error_ratio``; per utterance its error over that mean line error, so it averages to the ratio and
its paired test is the error's). The prenet's dropout stays on at inference, as NVIDIA's, so both models decode each
utterance under the same seed. Differences are B - A, tested with
:func:`~tacotron2_lightning.app.paired_statistics.paired_permutation_p_value`.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from tacotron2_lightning.app.paired_statistics import paired_permutation_p_value
from tacotron2_lightning.cepstral_decorrelation import cepstral_decorrelation
from tacotron2_lightning.mcd import mel_cepstral_distortion
from tuner_callbacks.registry.client import DATA_CONFIG_FILE, Registry, RegistryError

if TYPE_CHECKING:
    from tacotron2_lightning.module import Tacotron2Module

# Metric -> (label, lower is better); the last two only where the data has word timings.
METRICS = {
    "loss": ("loss", True), "mel_loss": ("mel loss", True), "gate_loss": ("gate loss", True),
    "alignment_score": ("alignment score", False), "gate_stop": ("gate-stop rate", False),
    "mcd": ("MCD (dB)", True), "cepstral_decorrelation": ("cepstral decorrelation", True),
    "alignment_error": ("alignment error", True),
    "alignment_error_ratio": ("alignment error ratio", True),
}
_LINE_ERROR = "constant_rate_error"  # per utterance, the same for both models: the ratio's denominator


@dataclass
class MetricComparison:
    metric: str
    mean_a: float
    mean_b: float
    mean_difference: float  # B - A
    p_value: float
    verdict: str


@dataclass
class Comparison:
    """What :func:`compare_modules` returns: per-metric summaries and the per-utterance values of A and B."""

    a: str
    b: str
    utterances: int
    alpha: float
    metrics: list[MetricComparison] = field(default_factory=list)
    per_utterance: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # metric -> {"a": [...], "b": ...}

    @property
    def verdict(self) -> str:
        return "; ".join(m.verdict for m in self.metrics)

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}

    def table(self) -> str:
        header = f"{'metric':<22} {'A':>10} {'B':>10} {'B - A':>10} {'p':>7}  verdict"
        lines = [f"A = {self.a}", f"B = {self.b}", f"{self.utterances} validation utterances, paired "
                 f"sign-flip permutation test, alpha = {self.alpha}", "", header, "-" * len(header)]
        for m in self.metrics:
            lines.append(f"{METRICS[m.metric][0]:<22} {m.mean_a:>10.4g} {m.mean_b:>10.4g} "
                         f"{m.mean_difference:>+10.3g} {m.p_value:>7.3g}  {m.verdict}")
        return "\n".join(lines)


def _verdict(metric: str, mean_difference: float, p_value: float, alpha: float) -> str:
    label, lower_is_better = METRICS[metric]
    if not p_value < alpha or mean_difference == 0:
        return f"no significant difference on {label} (p={p_value:.2g})"
    b_better = mean_difference < 0 if lower_is_better else mean_difference > 0
    return f"{'B' if b_better else 'A'} better on {label} (p={p_value:.2g})"


@torch.no_grad()
def utterance_metrics(module: Tacotron2Module, text: Tensor, mel: Tensor, seed: int, cap_ratio: float = 2.0,
                      word_timings: Tensor | None = None) -> dict[str, float]:
    """The metrics of one (text ids (N,), natural-log mel (C, T)) utterance for a ``Tacotron2Module``; with its
    (W, 2) ``word_timings`` also ``alignment_error`` and the constant-rate line's error on it."""
    from tacotron2_lightning import health
    from tacotron2_lightning.data.collate import TextMelCollate
    from tacotron2_lightning.loss import tacotron2_loss
    from tacotron2_lightning.model import decoder_steps

    config = module.config
    r = config.n_frames_per_step
    # NVIDIA's prenet keeps its dropout on, teacher-forced too: the same seed gives both models the same masks.
    torch.manual_seed(seed)
    item = (text, mel) if word_timings is None else (text, mel, word_timings)
    text_padded, input_lengths, mel_padded, gate_padded, output_lengths, *timed = TextMelCollate(r)([item])
    mel_outputs, mel_postnet, gate_outputs, alignments = module.model(text_padded, input_lengths, mel_padded,
                                                                      output_lengths)
    losses = tacotron2_loss(mel_outputs, mel_postnet, gate_outputs, mel_padded, gate_padded)
    decoder_lengths = decoder_steps(output_lengths, r)
    cap_steps = max(1, min(config.max_decoder_steps, decoder_steps(math.ceil(cap_ratio * mel.size(1)), r)))
    decoded = module.model.inference(text.unsqueeze(0), max_decoder_steps=cap_steps, warn_at_cap=False)
    frames = int(decoded.lengths[0])
    synthesised, recording = decoded.mel_postnet[0, :, :frames].double().numpy(), mel.double().numpy()
    metrics = {
        "loss": float(losses.total), "mel_loss": float(losses.mel_loss), "gate_loss": float(losses.gate_loss),
        "alignment_score": float(health.alignment_score(alignments, decoder_lengths)),
        "gate_stop": float(health.gate_stop_rate(decoded.lengths, cap_steps * r)),
        "mcd": mel_cepstral_distortion(synthesised, recording),
        "cepstral_decorrelation": cepstral_decorrelation(synthesised, recording),
    }
    if timed:
        errors, line, valid = health.word_position_errors(alignments, timed[0], input_lengths, output_lengths, r)
        if valid.any():
            metrics["alignment_error"] = float(errors.sum() / valid.sum())
            metrics[_LINE_ERROR] = float(line.sum() / valid.sum())
    return metrics


def _check_compatible(module: Tacotron2Module, label: str, mel: Tensor) -> None:
    channels = module.config.n_mel_channels
    if mel.size(0) != channels:
        raise RegistryError(f"{label} predicts {channels} mel channels but the validation set has {mel.size(0)}; "
                            "compare on the data the models were trained on (--data-config)")


def compare_modules(module_a: Tacotron2Module, module_b: Tacotron2Module, utterances: Sequence[tuple[Tensor, ...]],
                    label_a: str = "A", label_b: str = "B", alpha: float = 0.05, seed: int = 0) -> Comparison:
    """Scores both modules on every (text ids, mel) pair, or (text ids, mel, word timings) triple, and tests the
    paired differences per metric. The alignment errors are compared only when every utterance has timings."""
    if not utterances:
        raise RegistryError("The validation set is empty: nothing to compare on")
    if not 0 < alpha < 1:
        raise RegistryError(f"alpha must be in (0, 1), got {alpha!r}")
    was_training = module_a.training, module_b.training
    module_a.eval()
    module_b.eval()
    values: dict[str, dict[str, list[float]]] = {metric: {"a": [], "b": []} for metric in [*METRICS, _LINE_ERROR]}
    try:
        for index, (text, mel, *timings) in enumerate(utterances):
            word_timings = timings[0] if timings else None
            for key, module, label in (("a", module_a, label_a), ("b", module_b, label_b)):
                _check_compatible(module, label, mel)
                measured = utterance_metrics(module, text, mel.float(), seed + index, word_timings=word_timings)
                for metric, value in measured.items():
                    values[metric][key].append(value)
    finally:
        module_a.train(was_training[0])
        module_b.train(was_training[1])
    line = values.pop(_LINE_ERROR)["a"]  # the data's, not a model's: the same for B
    if len(line) == len(utterances) and sum(line) > 0:
        mean_line = sum(line) / len(line)
        values["alignment_error_ratio"] = {key: [error / mean_line for error in values["alignment_error"][key]]
                                           for key in ("a", "b")}
    values = {metric: pair for metric, pair in values.items() if len(pair["a"]) == len(utterances)}
    comparison = Comparison(label_a, label_b, len(utterances), alpha, per_utterance=values)
    for metric in values:
        a, b = np.array(values[metric]["a"]), np.array(values[metric]["b"])
        difference = float(np.nanmean(b - a)) if np.isfinite(b - a).any() else math.nan
        p_value = paired_permutation_p_value(b - a, seed=seed)
        comparison.metrics.append(MetricComparison(metric, float(np.nanmean(a)), float(np.nanmean(b)), difference,
                                                   p_value, _verdict(metric, difference, p_value, alpha)))
    return comparison


def validation_utterances(data_config: dict, max_utterances: int | None = None) -> list[tuple[Tensor, ...]]:
    """The validation set of a data config (the ``data`` node of a training config, with ``_target_``): (text ids,
    mel) pairs, or (text ids, mel, word timings) triples where the data has timings."""
    from hydra.utils import instantiate

    if "_target_" not in data_config:
        raise RegistryError(f"The data config has no _target_ (keys: {sorted(data_config)[:10]}); pass the `data` "
                            "node of a training config, or a run's .hydra/config.yaml")
    datamodule = instantiate(data_config)
    datamodule.prepare_data()
    datamodule.setup("validate")
    val_set = datamodule.val_set
    count = len(val_set) if max_utterances is None else min(max_utterances, len(val_set))
    return [val_set[index] for index in range(count)]


def load_data_config(path: str | Path) -> dict:
    """A data config file: the ``data`` node of a run's ``.hydra/config.yaml`` (interpolations resolved), or a
    file that is the data node itself (a version's ``data.yaml``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise RegistryError(f"Data config file not found: {path}")
    try:
        config = OmegaConf.load(path)
        node = config.data if "data" in config and "_target_" not in config else config
        return OmegaConf.to_container(node, resolve=True)
    except (OmegaConfBaseException, ValueError, AttributeError) as error:
        raise RegistryError(f"Cannot read the data config {path}: {error}") from error


def compare_versions(registry: Registry, reference_a: str, reference_b: str, data_config: str | Path | None = None,
                     max_utterances: int | None = None, alpha: float = 0.05, seed: int = 0) -> Comparison:
    """Compares two registered versions on the validation set of ``data_config`` (a file, see
    :func:`load_data_config`), by default the ``data.yaml`` stored with version A."""
    from tacotron2_lightning.synthesis import load_for_synthesis

    with tempfile.TemporaryDirectory(prefix="registry-compare-") as folder:
        modules, labels, stored = [], [], []
        for key, reference in (("a", reference_a), ("b", reference_b)):
            version = registry.resolve(reference)
            checkpoint = registry.download(version, Path(folder) / key)
            modules.append(load_for_synthesis(checkpoint))
            labels.append(f"{version.name}/{version.version} ({reference})")
            stored.append(checkpoint.with_name(DATA_CONFIG_FILE))
        if data_config is None:
            if not stored[0].is_file():
                raise RegistryError(f"{reference_a} was registered without data.yaml; pass --data-config (e.g. the "
                                    "run's .hydra/config.yaml)")
            data_config = stored[0]
        utterances = validation_utterances(load_data_config(data_config), max_utterances)
    return compare_modules(modules[0], modules[1], utterances, labels[0], labels[1], alpha=alpha, seed=seed)
