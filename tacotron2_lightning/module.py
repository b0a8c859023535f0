"""Tacotron2Module: NVIDIA's Tacotron2 training recipe as a LightningModule, plus TTS health metrics.

Batches are NVIDIA's collate layout ``(text_padded, input_lengths, mel_padded, gate_padded,
output_lengths)``, optionally followed by ``word_timings`` (validation batches of data with ``timings.json``, such as
the built-in dataset). Metric names are the project's shared language (docs/design.md): ``train/loss``,
``val/loss`` (NVIDIA's loss), ``val/mel_loss``, ``val/gate_loss``, ``val/alignment_score``,
``val/diagonality``, ``val/monotonicity``, and from free-running synthesis of a few validation utterances
``val/gate_stop_rate``, ``val/inference_diagonality``, ``val/duration_ratio`` (median synthesised over true
frames; ``val/duration_ratio_iqr`` its spread), ``val/mcd`` (mel-cepstral distortion against the recordings after
DTW, dB, as the literature computes it) and ``val/cepstral_decorrelation_sl`` (whether the spectrum moves as the
recording's: what a sweep optimises, see :mod:`tacotron2_lightning.cepstral_decorrelation`), and with word timings
``val/alignment_error`` and ``val/alignment_error_ratio`` (teacher-forced attention against the true word onsets,
see :func:`tacotron2_lightning.health.word_position_errors`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from tacotron2_lightning import health
from tacotron2_lightning.alignment_prior import AttentionPrior
from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.dataclass_config import as_dataclass
from tacotron2_lightning.loss import forward_sum_loss, guided_attention_loss, tacotron2_loss, weighted_gate_loss
from tacotron2_lightning.model import Tacotron2, decoder_steps

Batch = tuple[Tensor, ...]  # NVIDIA's five tensors, then word_timings when the data has them


class Tacotron2ModuleBase:
    """Teacher-forced Tacotron2 training with NVIDIA's loss and optimiser, and alignment health metrics.

    Args:
        model_config: :class:`Tacotron2Config` or a mapping of its fields.
        learning_rate: Adam's learning rate (NVIDIA: 1e-3, constant; schedule it with a callback).
        weight_decay: Adam's L2 weight decay (NVIDIA: 1e-6).
        guided_attention_weight: weight of the guided-attention term added to the training loss; 0 is
            exactly NVIDIA's loss. An attribute, so a scheduler callback can decay it.
        guided_attention_sigma: width of the guided-attention band, relative to the lengths.
        gate_positive_weight: weight of the "stop" frames in the gate's training loss (1.0 is NVIDIA's);
            above 1 the gate learns to fire sooner. Logged losses are always NVIDIA's, unweighted.
        attention_prior_weight: weight of the beta-binomial alignment prior's log added to the attention energies in
            training steps (:mod:`~tacotron2_lightning.alignment_prior`); 0 is NVIDIA's attention. Validation and
            synthesis never use it, so they measure the model alone. An attribute, so a scheduler can anneal it.
        attention_prior_scaling: the prior's concentration per decoder step (larger: a sharper diagonal).
        align_loss_weight: weight of the forward-sum alignment loss (:func:`~tacotron2_lightning.loss.forward_sum_loss`)
            in the training loss; logged as ``train/align_loss`` and ``val/align_loss`` whenever it is above 0.
            An attribute, so a scheduler can change it.
        align_loss_start_step: the training step from which the forward-sum loss is minimised (it is logged before).
        health_utterances: how many validation utterances (of the first batch) are decoded free-running
            each validation to measure the gate-stop rate; 0 skips free-running decoding.
        health_cap_ratio: free-running decoding of an utterance stops at this multiple of its recording's length
            (or ``max_decoder_steps``, whichever is smaller): one that has not stopped by then counts as a gate
            failure and is no longer decoded, so validation stays fast.
        audio: the :class:`~tacotron2_lightning.audio.AudioConfig` the mels were made with (kept in the
            checkpoint so synthesis and audio samples use the same settings).
        text_cleaners: the cleaners the text was prepared with (kept for synthesis).

    Example:
        >>> import pytorch_lightning as pl  # or: import lightning.pytorch as pl
        >>> from tacotron2_lightning.flavours.pytorch_lightning import Tacotron2Module
        >>> # from tacotron2_lightning.flavours.lightning.pytorch import Tacotron2Module
        >>> module = Tacotron2Module({"symbols_embedding_dim": 32, "encoder_embedding_dim": 32})
        >>> trainer = pl.Trainer(max_steps=10, gradient_clip_val=1.0)  # NVIDIA clips at 1.0

    This class holds the recipe and no Lightning base: a Trainer takes a ``Tacotron2Module`` of its own package,
    which :func:`~tacotron2_lightning.lightning_compat.tacotron2_classes` builds on this class (the table is in
    :mod:`tacotron2_lightning.lightning_compat`). ``tacotron2_lightning.Tacotron2Module`` is the
    ``pytorch_lightning`` one.
    """

    def __init__(
        self,
        model_config: Tacotron2Config | Mapping[str, Any] | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        guided_attention_weight: float = 0.0,
        guided_attention_sigma: float = 0.2,
        gate_positive_weight: float = 1.0,
        attention_prior_weight: float = 0.0,
        attention_prior_scaling: float = 1.0,
        align_loss_weight: float = 0.0,
        align_loss_start_step: int = 0,
        health_utterances: int = 8,
        health_cap_ratio: float = 2.0,
        audio: AudioConfig | Mapping[str, Any] | None = None,
        text_cleaners: Sequence[str] = ("english_cleaners",),
    ):
        super().__init__()
        for name, value in (("learning_rate", learning_rate), ("guided_attention_sigma", guided_attention_sigma),
                            ("gate_positive_weight", gate_positive_weight),
                            ("attention_prior_scaling", attention_prior_scaling),
                            ("health_cap_ratio", health_cap_ratio)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Tacotron2Module {name} must be a finite number > 0, got {value!r}")
        for name, value in (("weight_decay", weight_decay), ("guided_attention_weight", guided_attention_weight),
                            ("attention_prior_weight", attention_prior_weight),
                            ("align_loss_weight", align_loss_weight), ("health_utterances", health_utterances)):
            if not (value >= 0 and math.isfinite(value)):  # NaN fails both comparisons: refused too
                raise ValueError(f"Tacotron2Module {name} must be a finite number >= 0, got {value!r}")
        if not isinstance(align_loss_start_step, numbers.Integral) or isinstance(align_loss_start_step, bool) \
                or align_loss_start_step < 0:
            raise ValueError(f"Tacotron2Module align_loss_start_step must be an integer >= 0 (a training step), "
                             f"got {align_loss_start_step!r}")
        config = as_dataclass(Tacotron2Config, model_config)
        # Without audio settings, NVIDIA's with the model's mel channel count.
        default_audio = {"n_mel_channels": config.n_mel_channels}
        self.audio = as_dataclass(AudioConfig, audio if audio is not None else default_audio)
        if self.audio.n_mel_channels != config.n_mel_channels:
            raise ValueError(f"audio.n_mel_channels={self.audio.n_mel_channels} differs from the model's "
                             f"n_mel_channels={config.n_mel_channels}")
        self.text_cleaners = list(text_cleaners)
        # Plain values only, so checkpoints load with torch.load(weights_only=True) and loggers get params.
        self.save_hyperparameters(ignore=["model_config", "audio", "text_cleaners"])
        self.hparams["model_config"] = config.to_dict()
        self.hparams["audio"] = dataclasses.asdict(self.audio)
        self.hparams["text_cleaners"] = list(self.text_cleaners)
        self.model = Tacotron2(config)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.guided_attention_weight = guided_attention_weight
        self.guided_attention_sigma = guided_attention_sigma
        self.gate_positive_weight = gate_positive_weight
        self.attention_prior_weight = attention_prior_weight
        self.attention_prior = AttentionPrior(attention_prior_scaling)
        self.align_loss_weight = align_loss_weight
        self.align_loss_start_step = int(align_loss_start_step)
        self.health_utterances = health_utterances
        self.health_cap_ratio = health_cap_ratio
        # The first validation utterance of the latest validation, on CPU, for plots and audio samples.
        self.last_validation_example: dict[str, Tensor] | None = None
        # Over one validation: sums of the attention's and the constant-rate line's word errors, and the word count.
        self._word_error_sums = torch.zeros(3)

    @property
    def config(self) -> Tacotron2Config:
        return self.model.config

    def forward(self, text_padded: Tensor, input_lengths: Tensor, mel_padded: Tensor,
                output_lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.model(text_padded, input_lengths, mel_padded, output_lengths)

    def _decoder_lengths(self, output_lengths: Tensor) -> Tensor:
        return decoder_steps(output_lengths, self.config.n_frames_per_step)

    def _shared_step(self, batch: Batch, stage: str) -> tuple[Tensor, tuple[Tensor, ...]]:
        text, input_lengths, mel, gate, output_lengths = batch[:5]
        decoder_lengths = self._decoder_lengths(output_lengths)  # the prior's, the guide's and the loss's time axis
        prior = None
        if stage == "train" and self.attention_prior_weight > 0:
            prior = self.attention_weighted_prior(input_lengths, decoder_lengths, text.size(1),
                                                  mel.size(2) // self.config.n_frames_per_step)
        outputs = self.model(text, input_lengths, mel, output_lengths, prior)
        mel_outputs, mel_outputs_postnet, gate_outputs, alignments = outputs
        losses = tacotron2_loss(mel_outputs, mel_outputs_postnet, gate_outputs, mel, gate)
        on_step = stage == "train"
        log_args = {"batch_size": text.size(0), "sync_dist": stage != "train", "on_step": on_step,
                    "on_epoch": not on_step}
        self.log(f"{stage}/loss", losses.total, prog_bar=True, **log_args)
        self.log(f"{stage}/mel_loss", losses.mel_loss, **log_args)
        self.log(f"{stage}/gate_loss", losses.gate_loss, **log_args)
        loss = losses.total
        if self.gate_positive_weight != 1.0:
            # Only the minimised loss is weighted: logged losses stay NVIDIA's, comparable across runs.
            loss = losses.mel_loss + weighted_gate_loss(gate_outputs, gate, self.gate_positive_weight)
        if self.guided_attention_weight > 0:
            guided = guided_attention_loss(alignments, input_lengths, decoder_lengths, self.guided_attention_sigma)
            self.log(f"{stage}/guided_attention_loss", guided, **log_args)
            loss = loss + self.guided_attention_weight * guided
        if self.align_loss_weight > 0:
            align = forward_sum_loss(alignments, input_lengths, decoder_lengths)
            self.log(f"{stage}/align_loss", align, **log_args)
            if stage != "train" or self.global_step >= self.align_loss_start_step:
                loss = loss + self.align_loss_weight * align
        return loss, outputs

    def attention_weighted_prior(self, input_lengths: Tensor, decoder_lengths: Tensor, max_text: int,
                                 max_steps: int) -> Tensor:
        """(B, S, N) ``attention_prior_weight`` x the log alignment prior of each utterance (0 on padding), the
        bias that training adds to the attention energies."""
        log_prior = self.attention_prior(input_lengths, decoder_lengths, max_text, max_steps)
        return log_prior.to(self.model.embedding.weight.dtype) * self.attention_prior_weight

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, _ = self._shared_step(batch, "train")
        if self.guided_attention_weight > 0 or self.align_loss_weight > 0:
            self.log("train/total_loss", loss, on_step=True, batch_size=batch[0].size(0))
        return loss

    def on_fit_start(self) -> None:
        self._check_align_loss_fits_data()

    def _check_align_loss_fits_data(self) -> None:
        """The forward-sum loss needs a monotonic path: at least one decoder step per text symbol. Refuses, before
        the first step, training data in which an utterance has fewer decoder steps than symbols."""
        dataset = getattr(getattr(self.trainer, "datamodule", None), "train_set", None)
        if self.align_loss_weight <= 0 or dataset is None or not hasattr(dataset, "items"):
            return
        r = self.config.n_frames_per_step
        short = [item for item in dataset.items if decoder_steps(item.n_frames, r) < len(item.sequence)]
        if short:
            item = short[0]
            raise ValueError(
                f"model.align_loss_weight={self.align_loss_weight}: the forward-sum loss needs at least one decoder "
                f"step per text symbol, but {len(short)} training utterance(s) have fewer, e.g. "
                f"{item.utterance.origin} ({len(item.sequence)} symbols, {item.n_frames} frames = "
                f"{decoder_steps(item.n_frames, r)} steps at model.model_config.n_frames_per_step={r}); lower "
                "n_frames_per_step, filter them out (data.max_text_length) or set model.align_loss_weight=0")

    def on_validation_epoch_start(self) -> None:
        self._word_error_sums = torch.zeros(3, device=self.device)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        text, input_lengths, mel, _, output_lengths = batch[:5]
        _, (mel_outputs, mel_outputs_postnet, _, alignments) = self._shared_step(batch, "val")
        decoder_lengths = self._decoder_lengths(output_lengths)
        log_args = {"batch_size": text.size(0), "sync_dist": True, "on_epoch": True}
        self.log("val/alignment_score", health.alignment_score(alignments, decoder_lengths), **log_args)
        self.log("val/diagonality", health.diagonality(alignments, input_lengths, decoder_lengths), **log_args)
        self.log("val/monotonicity", health.monotonicity(alignments, input_lengths, decoder_lengths), **log_args)
        if len(batch) > 5:
            errors, line, valid = health.word_position_errors(alignments, batch[5], input_lengths, output_lengths,
                                                              self.config.n_frames_per_step)
            self._word_error_sums = self._word_error_sums.to(errors.device) + torch.stack(
                [errors.sum(), line.sum(), valid.sum().float()])
        if batch_idx != 0:
            return
        example = {
            "text": text[0, : input_lengths[0]].cpu(),
            "mel_target": mel[0, :, : output_lengths[0]].float().cpu(),
            "mel_predicted": mel_outputs_postnet[0, :, : output_lengths[0]].float().cpu(),
            "alignment": alignments[0, : decoder_lengths[0], : input_lengths[0]].float().cpu(),
        }
        if self.health_utterances > 0:
            example.update(self._free_running_health(text, input_lengths, mel, output_lengths))
        self.last_validation_example = example

    def on_validation_epoch_end(self) -> None:
        # Pooled over every word of the validation set (all ranks), so the ratio is of the two mean errors.
        sums = self.trainer.strategy.reduce(self._word_error_sums.to(self.device), reduce_op="sum")
        if sums[2] > 0:
            self.log("val/alignment_error", sums[0] / sums[2])
            self.log("val/alignment_error_ratio", sums[0] / sums[1])

    def _free_running_health(self, text: Tensor, input_lengths: Tensor, mel: Tensor,
                             output_lengths: Tensor) -> dict[str, Tensor]:
        """Synthesises the first ``health_utterances`` texts free-running and judges them against their
        recordings: does the gate stop, does attention follow the text, how long, how close (MCD-DTW)."""
        count = min(self.health_utterances, text.size(0))
        text, input_lengths, mel, output_lengths = (text[:count], input_lengths[:count], mel[:count],
                                                    output_lengths[:count])
        r = self.config.n_frames_per_step
        # Each utterance is lost once it runs past health_cap_ratio x its own recording: it stops being decoded
        # there (the batch shrinks) and counts as a gate failure.
        cap_frames = torch.ceil(self.health_cap_ratio * output_lengths.float()).long()
        cap_steps = decoder_steps(cap_frames, r).clamp(min=1, max=self.config.max_decoder_steps)
        decoded = self.model.inference(
            text[:, : int(input_lengths.max())], input_lengths, max_decoder_steps=cap_steps, warn_at_cap=False,
        )
        lengths = decoded.lengths
        decoder_lengths = self._decoder_lengths(lengths)
        log_args = {"batch_size": count, "sync_dist": True, "on_epoch": True}
        self.log("val/gate_stop_rate", health.gate_stop_rate(lengths, cap_steps * r), **log_args)
        self.log("val/inference_diagonality",
                 health.diagonality(decoded.alignments, input_lengths, decoder_lengths), **log_args)
        ratios = health.duration_ratios(lengths, output_lengths)
        quartiles = torch.quantile(ratios, torch.tensor([0.25, 0.5, 0.75], device=ratios.device))
        self.log("val/duration_ratio", quartiles[1], **log_args)
        self.log("val/duration_ratio_iqr", quartiles[2] - quartiles[0], **log_args)
        distortions = health.mel_cepstral_distortions(decoded.mel_postnet, lengths, mel, output_lengths)
        self.log("val/mcd", distortions.nanmean().to(self.device), **log_args)
        decorrelations = health.cepstral_decorrelations(decoded.mel_postnet, lengths, mel, output_lengths)
        self.log("val/cepstral_decorrelation_sl", decorrelations.mean().to(self.device), **log_args)
        return {
            "inference_mel": decoded.mel_postnet[0, :, : lengths[0]].float().cpu(),
            "inference_alignment": decoded.alignments[0, : decoder_lengths[0], : input_lengths[0]].float().cpu(),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)


def __getattr__(name: str) -> Any:
    # Built on pytorch_lightning by lightning_compat.tacotron2_classes, which imports this module: built on first use.
    if name == "Tacotron2Module":
        from tacotron2_lightning.lightning_compat import tacotron2_classes

        return tacotron2_classes("pytorch_lightning").Tacotron2Module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
