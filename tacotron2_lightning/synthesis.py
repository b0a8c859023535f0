"""Text to speech with a trained Tacotron2: free-running decoding to a mel, Griffin-Lim to a wav.

``load_for_synthesis(path)`` builds the model from a checkpoint file: a Lightning checkpoint of
:class:`~tacotron2_lightning.module.Tacotron2Module` (model size, audio settings and text cleaners come from its
hyper-parameters) or an NVIDIA-format file such as NVIDIA's published ``tacotron2_statedict.pt`` (NVIDIA's default
model size, audio settings and ``english_cleaners``). ``synthesize(module, text)`` speaks. Griffin-Lim audio is for
listening to what the model learnt, not for quality; a neural vocoder is out of scope here. The command line,
which also reads registered models (``models:/NAME@ALIAS``), is :mod:`tacotron2_lightning.app.synthesize`.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from tacotron2_lightning.audio import griffin_lim
from tacotron2_lightning.checkpoint import CheckpointError, load_nvidia_checkpoint, read_checkpoint
from tacotron2_lightning.model import decoder_steps
from tacotron2_lightning.module import Tacotron2Module
from tacotron2_lightning.text import text_to_sequence

log = logging.getLogger(__name__)

# NVIDIA's log-mel floor, log(1e-5): the value of silence, used to pad mels too short for Griffin-Lim.
_SILENCE_LOG_MEL = math.log(1e-5)


class SynthesisInputError(ValueError):
    """Text that cannot be synthesised (empty after cleaning, or rejected by a cleaner); names the text."""


class Synthesis(NamedTuple):
    """What :func:`synthesize` returns; unpacks as ``wav, mel, alignment, stopped_on_gate``."""

    wav: Tensor  # (T,) float32 in [-1, 1], at the module's audio.sampling_rate
    mel: Tensor  # (n_mel_channels, frames): the postnet mel, natural-log scale
    alignment: Tensor  # (decoder steps, encoder positions)
    stopped_on_gate: bool  # False: decoding hit max_decoder_steps before the gate fired


def load_for_synthesis(checkpoint: str | Path) -> Tacotron2Module:
    """Builds a :class:`Tacotron2Module` from a checkpoint file, in eval mode on CPU.

    Files are read with ``torch.load(weights_only=True)`` whenever they allow it (see
    :func:`~tacotron2_lightning.checkpoint.read_checkpoint`).

    Args:
        checkpoint: a Lightning checkpoint of :class:`Tacotron2Module` (it has ``hyper_parameters``), or an
            NVIDIA-format file (``{'state_dict': ...}``, e.g. ``tacotron2_statedict.pt``), which is loaded
            into a module with NVIDIA's default config.

    Returns:
        The module, in eval mode.

    Raises:
        CheckpointError: the file is missing, unreadable, not a checkpoint, or its weights do not fit the
            model; the message names the file and the missing, unexpected or mis-shaped keys.

    Example:
        >>> module = load_for_synthesis("tacotron2_statedict.pt")
        >>> wav, mel, alignment, stopped_on_gate = synthesize(module, "Hello world.")
    """
    path = Path(checkpoint)
    content = read_checkpoint(path)
    hyper_parameters = content.get("hyper_parameters")
    if hyper_parameters is None:
        module = Tacotron2Module()
        origin = f"{path} has no hyper_parameters, so it is loaded into a Tacotron2 of NVIDIA's default config"
    else:
        module = _module_from_hyper_parameters(hyper_parameters, path)
        origin = f"model built from the hyper_parameters in {path}"
    try:
        # Passing the path (the file is read again) lets the error name the file rather than "checkpoint dict".
        load_nvidia_checkpoint(module.model, path)
    except CheckpointError as error:
        # The context goes first: the key list that follows can be long.
        raise CheckpointError(f"{origin}: {error}") from error
    log.info("Loaded %s (%s)", path, origin)
    return module.eval()


def _module_from_hyper_parameters(hyper_parameters: Any, path: Path) -> Tacotron2Module:
    if not isinstance(hyper_parameters, Mapping):
        raise CheckpointError(f"{path}: hyper_parameters is a {type(hyper_parameters).__name__}, expected a mapping")
    accepted = set(inspect.signature(Tacotron2Module.__init__).parameters) - {"self"}
    # A checkpoint from a newer or different module may carry more; what the weights need is checked below.
    ignored = sorted(str(key) for key in hyper_parameters if key not in accepted)
    if ignored:
        log.warning("%s: ignoring hyper_parameters that Tacotron2Module does not take: %s", path, ignored)
    try:
        return Tacotron2Module(**{key: value for key, value in hyper_parameters.items() if key in accepted})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot build Tacotron2Module from its hyper_parameters: {error}") from error


def text_to_ids(text: str, cleaners: Sequence[str]) -> list[int]:
    """Cleans ``text`` and maps it to symbol ids, refusing text with nothing to say.

    Raises:
        SynthesisInputError: if a cleaner rejects the text or nothing but whitespace is left; names the text.
    """
    try:
        ids = text_to_sequence(text, cleaners)
    except (TypeError, ValueError) as error:
        raise SynthesisInputError(f"cannot convert text {text!r} with cleaners {list(cleaners)}: {error}") from error
    if not ids or not text.strip():
        raise SynthesisInputError(f"text {text!r} has nothing to synthesise after cleaning with {list(cleaners)}")
    return ids


def synthesize(module: Tacotron2Module, text: str, max_decoder_steps: int | None = None,
               griffin_lim_iters: int = 60) -> Synthesis:
    """Synthesises one utterance with the module's text cleaners and audio settings.

    Decoding is NVIDIA's: the prenet's dropout stays on (as in NVIDIA's inference), so seed torch for a
    repeatable result. A mel too short for Griffin-Lim's padding (a gate that fired at once) is padded
    with silence for the audio only, with a warning.

    Args:
        module: the model, e.g. from :func:`load_for_synthesis`; it is put in eval mode for the call and
            its training mode restored after.
        text: raw text; ``{ARPAbet}`` groups are allowed, as in NVIDIA's ``text_to_sequence``.
        max_decoder_steps: cap on decoder steps; ``None`` uses the model's ``max_decoder_steps``.
        griffin_lim_iters: Griffin-Lim iterations.

    Returns:
        ``Synthesis(wav (T,), mel (C, frames), alignment (steps, N), stopped_on_gate)``, all on CPU; the wav
        has ``hop_length * (frames - 1)`` samples.

    Raises:
        SynthesisInputError: if the text is empty after cleaning or a cleaner rejects it.
        ValueError: if ``max_decoder_steps`` or ``griffin_lim_iters`` is out of range.
    """
    if max_decoder_steps is not None and (isinstance(max_decoder_steps, bool) or max_decoder_steps < 1):
        raise ValueError(f"max_decoder_steps must be a positive integer or None, got {max_decoder_steps!r}")
    if griffin_lim_iters < 0:
        raise ValueError(f"griffin_lim_iters must be >= 0, got {griffin_lim_iters!r}")
    ids = text_to_ids(text, module.text_cleaners)
    config, audio = module.config, module.audio
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            sequence = torch.tensor([ids], dtype=torch.long, device=module.device)
            decoded = module.model.inference(sequence, max_decoder_steps=max_decoder_steps)
    finally:
        module.train(was_training)
    frames = int(decoded.lengths[0])
    steps = decoder_steps(frames, config.n_frames_per_step)
    mel, alignment = decoded.mel_postnet[0, :, :frames].float(), decoded.alignments[0, :steps].float()
    # The last kept frame's gate says whether it stopped; comparing frames with the cap would misreport a
    # gate that fires on the very last allowed step.
    stopped_on_gate = bool(torch.sigmoid(decoded.gate[0, frames - 1].float()) > config.gate_threshold)

    # Griffin-Lim's STFT reflect-pads filter_length // 2 samples, so it needs hop * (frames - 1) beyond that.
    min_frames = (audio.filter_length // 2) // audio.hop_length + 2
    audio_mel = mel
    if frames < min_frames:
        log.warning("Only %d mel frame(s) for %r; padding with silence to %d frames for Griffin-Lim",
                    frames, text, min_frames)
        audio_mel = torch.nn.functional.pad(mel, (0, min_frames - frames), value=_SILENCE_LOG_MEL)
    with torch.no_grad():
        wav = griffin_lim(audio_mel, audio, n_iters=griffin_lim_iters)
    return Synthesis(wav.cpu(), mel.cpu(), alignment.cpu(), stopped_on_gate)
