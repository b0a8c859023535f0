"""ValidationMedia: the alignment plot, mel plots and a Griffin-Lim sample of each validation, for every logger.

The files are made once per validation from ``Tacotron2Module.last_validation_example``, written under
``<trainer.default_root_dir>/media/step_XXXXXX/`` and handed to each logger in the form it takes (MLflow
artifacts, TensorBoard figures and audio, W&B images). Other callbacks -- alerts, reports -- read
:attr:`ValidationMedia.latest` instead of drawing again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from typing_extensions import override

from tacotron2_lightning.lightning_compat import lightning_bases, pl

log = logging.getLogger(__name__)


class ValidationMedia(*lightning_bases("Callback")):
    """Writes and logs validation media of a :class:`~tacotron2_lightning.module.Tacotron2Module`.

    One per Trainer: its state (the validations counted) is checkpointed under the class name alone, so a resumed
    run may change ``every_n_validations`` and counts on.

    Args:
        every_n_validations: make media at every N-th validation (1: all).
        griffin_lim_iters: Griffin-Lim iterations for the audio sample; 0 skips audio.

    Example:
        >>> trainer = pl.Trainer(callbacks=[ValidationMedia(every_n_validations=2)])
    """

    def __init__(self, every_n_validations: int = 1, griffin_lim_iters: int = 32):
        if not isinstance(every_n_validations, int) or every_n_validations < 1:
            raise ValueError(f"every_n_validations must be a positive integer, got {every_n_validations!r}")
        if griffin_lim_iters < 0:
            raise ValueError(f"griffin_lim_iters must be >= 0, got {griffin_lim_iters!r}")
        self.every_n_validations = every_n_validations
        self.griffin_lim_iters = griffin_lim_iters
        self.validations = 0
        self.latest: dict[str, Any] = {}  # {"step": int, "alignment": Path, "mel": Path, "audio": Path, ...}

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        example = getattr(pl_module, "last_validation_example", None)
        if not example:
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n_validations:
            return
        try:
            media = self._write(example, pl_module, Path(trainer.default_root_dir), trainer.global_step)
        except Exception:  # a plot must never end a training run
            log.exception("Could not write validation media at step %d", trainer.global_step)
            return
        self.latest = media
        for logger in trainer.loggers:
            _log_to(logger, media)

    def _write(self, example: dict, pl_module: pl.LightningModule, root: Path, step: int) -> dict[str, Any]:
        from tacotron2_lightning.audio import griffin_lim, save_wav
        from tacotron2_lightning.plots import alignment_figure, mel_figure, save_figure
        from tacotron2_lightning.text import sequence_to_text

        folder = root / "media" / f"step_{step:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        text = sequence_to_text(example["text"].tolist())
        media: dict[str, Any] = {"step": step, "folder": folder, "text": text}
        media["alignment"] = save_figure(
            alignment_figure(example["alignment"], title=f"teacher-forced, step {step}", text=text),
            folder / "alignment.png")
        media["mel"] = save_figure(mel_figure(example["mel_target"], example["mel_predicted"],
                                              title=f"target vs predicted, step {step}"), folder / "mel.png")
        if "inference_alignment" in example:
            media["inference_alignment"] = save_figure(
                alignment_figure(example["inference_alignment"], title=f"free-running, step {step}", text=text),
                folder / "inference_alignment.png")
        audio = getattr(pl_module, "audio", None)
        if self.griffin_lim_iters and audio is not None and "inference_mel" in example:
            wav = griffin_lim(example["inference_mel"], audio, n_iters=self.griffin_lim_iters)
            save_wav(folder / "sample.wav", wav, audio.sampling_rate)
            media["audio"] = folder / "sample.wav"
            media["sampling_rate"] = audio.sampling_rate
        return media

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"validations": self.validations}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.validations = state_dict.get("validations", 0)


def _log_to(logger: Any, media: dict[str, Any]) -> None:
    """Hands the files to one logger in the form it takes; other loggers keep them on disk only."""
    artifact_dir = f"validation/step_{media['step']:06d}"
    files = [media[k] for k in ("alignment", "inference_alignment", "mel", "audio") if k in media]
    try:
        if isinstance(logger, lightning_bases("loggers.MLFlowLogger")):
            for path in files:
                logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=artifact_dir)
        elif isinstance(logger, lightning_bases("loggers.TensorBoardLogger")):
            import matplotlib.image

            for key in ("alignment", "inference_alignment", "mel"):
                if key in media:
                    image = matplotlib.image.imread(str(media[key]))
                    logger.experiment.add_image(f"validation/{key}", image, media["step"], dataformats="HWC")
            if "audio" in media:
                import soundfile

                wav, rate = soundfile.read(str(media["audio"]), dtype="float32")
                logger.experiment.add_audio("validation/sample", wav, media["step"], sample_rate=rate)
        elif isinstance(logger, lightning_bases("loggers.WandbLogger")):
            keys = [k for k in ("alignment", "inference_alignment", "mel") if k in media]
            logger.log_image(key="validation", images=[str(media[k]) for k in keys], step=media["step"], caption=keys)
    except Exception:  # a logger backend hiccup must not end training either
        log.exception("Could not log validation media to %s", type(logger).__name__)
