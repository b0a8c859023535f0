"""Checking utterances before training, and the text-mel dataset built from the ones that pass.

``inspect_utterances`` reads every wav header and cleans every text up front, so a missing file, a wrong
sample rate or an empty text is reported (file and line) before the first step -- not an hour into training
when a worker first touches it. Nothing is ever silently dropped: skipped and filtered utterances are
counted and listed in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import soundfile
import torch

from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.data.sources import DataError, Utterance, settle_problems
from tacotron2_lightning.text import TextCleaningError, text_to_sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckedUtterance:
    """An utterance whose audio and text were checked, with what the loader needs to know ahead of time."""

    utterance: Utterance
    sequence: tuple[int, ...]  # symbol ids of the cleaned text
    sampling_rate: int  # of the file; resampled to the configured rate when they differ
    n_frames: int  # mel frames it will have at the configured rate and hop
    seconds: float  # duration at the configured rate


def _check_one(utterance: Utterance, cleaners: Sequence[str], audio: AudioConfig,
               resample: bool) -> CheckedUtterance | str:
    """A CheckedUtterance, or a message naming the problem and where the utterance was declared."""
    where = f"{utterance.origin} ({utterance.audio_path})"
    try:
        info = soundfile.info(str(utterance.audio_path))
    except Exception as error:  # libsndfile raises several types; all mean the same to the user here
        missing = not utterance.audio_path.is_file()
        return f"{where}: audio file {'is missing' if missing else f'is unreadable: {error}'}"
    if info.frames == 0:
        return f"{where}: audio is empty (0 samples)"
    if info.channels != 1:
        return f"{where}: audio has {info.channels} channels; expected mono"
    if info.samplerate != audio.sampling_rate and not resample:
        return (f"{where}: audio is {info.samplerate} Hz, expected {audio.sampling_rate} Hz "
                "(set resample=true to resample it on load)")
    if not utterance.text.strip():
        return f"{where}: text is empty"
    try:
        sequence = text_to_sequence(utterance.text, list(cleaners))
    except TextCleaningError as error:
        return f"{where}: text cannot be cleaned: {error}"
    if not sequence:
        return f"{where}: text {utterance.text!r} cleans to nothing"
    samples = round(info.frames * audio.sampling_rate / info.samplerate)
    return CheckedUtterance(utterance, tuple(sequence), info.samplerate, 1 + samples // audio.hop_length,
                            samples / audio.sampling_rate)


def inspect_utterances(
    utterances: Sequence[Utterance], cleaners: Sequence[str], audio: AudioConfig, *, resample: bool = False,
    skip_bad: bool = False, min_text_length: int = 1, max_text_length: int | None = None,
    min_seconds: float = 0.0, max_seconds: float | None = None,
) -> list[CheckedUtterance]:
    """Checks every utterance and applies the length filters.

    Raises:
        DataError: listing every bad utterance (file and line), unless ``skip_bad`` -- then they are skipped,
            counted and listed in the log.
    """
    checked, problems = [], []
    for utterance in utterances:
        result = _check_one(utterance, cleaners, audio, resample)
        (problems if isinstance(result, str) else checked).append(result)
    settle_problems(problems, len(utterances), "bad utterance", skip_bad)

    kept, filtered = [], {"text too short": 0, "text too long": 0, "audio too short": 0, "audio too long": 0}
    for item in checked:
        reason = (
            "text too short" if len(item.sequence) < min_text_length
            else "text too long" if max_text_length is not None and len(item.sequence) > max_text_length
            else "audio too short" if item.seconds < min_seconds
            else "audio too long" if max_seconds is not None and item.seconds > max_seconds
            else None
        )
        if reason is None:
            kept.append(item)
        else:
            filtered[reason] += 1
    if any(filtered.values()):
        log.info("Length filters removed %d of %d utterance(s): %s", sum(filtered.values()), len(checked),
                 ", ".join(f"{count} {reason}" for reason, count in filtered.items() if count))
    if not kept:
        raise DataError(f"No utterance is left after checking and filtering {len(utterances)} "
                        f"(bad: {len(problems)}, filtered: {filtered})")
    return kept


class TextMelDataset(torch.utils.data.Dataset):
    """(text ids (N,), mel (C, T)) pairs of checked utterances; mels come from ``mel_of`` (usually a cache)."""

    def __init__(self, items: Sequence[CheckedUtterance], mel_of: Callable[[CheckedUtterance], torch.Tensor]):
        self.items = list(items)
        self.mel_of = mel_of

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.items[index]
        return torch.tensor(item.sequence, dtype=torch.long), self.mel_of(item)

    @property
    def text_lengths(self) -> list[int]:
        return [len(item.sequence) for item in self.items]
