"""A built-in offline speech dataset: generated English sentences spoken by eSpeak NG, in LJSpeech layout.

When training is started without any data, :func:`ensure_builtin_dataset` writes (once, into a cache folder)
``metadata.csv`` with ``id|text|normalized_text`` lines and ``wavs/<id>.wav`` files (22050 Hz, mono, 16-bit
PCM), exactly like LJSpeech, so the rest of the pipeline cannot tell it from a real corpus, and ``timings.json``:
where eSpeak NG started speaking each word (see :mod:`tacotron2_lightning.data.timings`), the ground truth that
validation measures the attention against.

The sentences come from :mod:`tacotron2_lightning.data.sentences`, the audio from
:mod:`tacotron2_lightning.data.espeak`; this module decides what the dataset holds and caches it. The same
configuration always gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import soundfile

from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.data.espeak import (
    ESPEAK_SAMPLE_RATE,
    RATE_RANGE,
    available_voices,
    synthesize_int16,
    voice_identifier,
)
from tacotron2_lightning.data.sentences import generate_sentences
from tacotron2_lightning.data.timings import TIMINGS_FILE, UtteranceTimings, WordTiming, write_timings
from tacotron2_lightning.text.numbers import normalize_numbers

# available_voices is re-exported: it lists the values BuiltinDatasetConfig.voice accepts.
__all__ = ["BuiltinDatasetConfig", "available_voices", "builtin_dataset_folder", "default_cache_root",
           "ensure_builtin_dataset"]

logger = logging.getLogger(__name__)

_COMPLETE_MARKER = "COMPLETE"
_METADATA = "metadata.csv"
_ID_PREFIX = "ESPK-"
_STALE_TEMPORARY_S = 24 * 3600  # a generation folder this old belongs to a process that died
# What the files hold beyond the configuration: part of the folder name and the marker, so a dataset made by older
# code is regenerated, not trusted. 2: sentences with short and long words and stops inside, and timings.json.
_VERSION = 2


@dataclass
class BuiltinDatasetConfig:
    """What the built-in dataset contains; every field is part of its cache folder's identity.

    Attributes:
        size: Number of utterances.
        seed: Seed of the sentence generator; the same seed gives the same sentences.
        voice: eSpeak NG voice, a language code such as ``"en-us"`` (see :func:`available_voices`); stored
            lower-case.
        min_words: Fewest words in a sentence (a number counts as one word).
        max_words: Most words in a sentence; short utterances make attention align quickly on CPU.
        rate: Speaking rate in words per minute (eSpeak accepts 80 to 450; 175 is its default).
        sampling_rate: Sample rate of the wavs; must be 22050, the only rate eSpeak NG produces.
    """

    size: int = 300
    seed: int = 1234
    voice: str = "en-us"
    min_words: int = 2
    max_words: int = 6
    rate: int = 175
    sampling_rate: int = ESPEAK_SAMPLE_RATE

    def __post_init__(self) -> None:
        for name in ("size", "seed", "min_words", "max_words", "rate", "sampling_rate"):
            value = getattr(self, name)
            # bool is an int subclass; "size=True" is a mistake, not one utterance.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"BuiltinDatasetConfig.{name} must be an integer, got {value!r}")
        if self.size < 1:
            raise ValueError(f"BuiltinDatasetConfig.size must be at least 1, got {self.size}")
        if not isinstance(self.voice, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+-]*", self.voice):
            # The voice becomes part of a folder name, so it must be a plain token.
            raise ValueError(f"BuiltinDatasetConfig.voice must be a voice name such as 'en-us', got {self.voice!r}")
        # Voice names are case-insensitive; one spelling keeps "EN-US" and "en-us" on one cached folder.
        self.voice = self.voice.lower()
        if self.min_words < 1:
            raise ValueError(f"BuiltinDatasetConfig.min_words must be at least 1, got {self.min_words}")
        if self.max_words < self.min_words:
            raise ValueError(
                f"BuiltinDatasetConfig.max_words must be >= min_words ({self.min_words}), got {self.max_words}"
            )
        if not RATE_RANGE[0] <= self.rate <= RATE_RANGE[1]:
            raise ValueError(
                f"BuiltinDatasetConfig.rate must be between {RATE_RANGE[0]} and {RATE_RANGE[1]} words per "
                f"minute, got {self.rate}"
            )
        if self.sampling_rate != ESPEAK_SAMPLE_RATE:
            raise ValueError(
                f"BuiltinDatasetConfig.sampling_rate must be {ESPEAK_SAMPLE_RATE} (eSpeak NG's only output rate; "
                f"resample when loading instead), got {self.sampling_rate}"
            )


def default_cache_root() -> Path:
    """Where Smart Tuner caches generated data: ``$SMART_TUNER_CACHE``, else the XDG cache folder.

    Returns:
        ``$SMART_TUNER_CACHE`` if set, else ``$XDG_CACHE_HOME/smart-tuner``, else ``~/.cache/smart-tuner``.
    """
    explicit = os.environ.get("SMART_TUNER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "smart-tuner"


def _folder_name(config: BuiltinDatasetConfig) -> str:
    return (
        f"espeak-v{_VERSION}-{config.voice}-n{config.size}-s{config.seed}-w{config.min_words}-{config.max_words}"
        f"-r{config.rate}"
    )


def builtin_dataset_folder(root: Path | str, config: BuiltinDatasetConfig) -> Path:
    """Where :func:`ensure_builtin_dataset` keeps the dataset of ``config`` under ``root`` (it may not exist yet)."""
    return Path(root).expanduser() / _folder_name(config)


def _identity(config: BuiltinDatasetConfig) -> dict:
    return {**dataclasses.asdict(config), "version": _VERSION}


def _config_json(config: BuiltinDatasetConfig) -> str:
    return json.dumps(_identity(config), indent=2, sort_keys=True) + "\n"


def _is_complete(folder: Path, config: BuiltinDatasetConfig) -> bool:
    try:
        return json.loads((folder / _COMPLETE_MARKER).read_text(encoding="utf-8")) == _identity(config)
    except (OSError, ValueError):
        return False


def _remove_stale_temporaries(root: Path, name: str) -> None:
    """Deletes generation folders left by processes killed long ago (recent ones may still be in use)."""
    now = time.time()
    for folder in root.glob(f".{name}.*"):
        try:
            if now - folder.stat().st_mtime > _STALE_TEMPORARY_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def _write_dataset(folder: Path, config: BuiltinDatasetConfig, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    sentences = generate_sentences(
        size=config.size, seed=config.seed, min_words=config.min_words, max_words=config.max_words
    )
    width = max(4, len(str(config.size)))
    wavs = folder / "wavs"
    wavs.mkdir(parents=True)
    lines = []
    timings: dict[str, UtteranceTimings] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("Synthesising the built-in eSpeak dataset", total=len(sentences))
        for number, text in enumerate(sentences, start=1):
            utterance_id = f"{_ID_PREFIX}{number:0{width}d}"
            normalized = normalize_numbers(text)
            # eSpeak reads the normalized text, so the audio says exactly what the training transcript says
            # (eSpeak's own number reading differs, e.g. "two thousand and five").
            samples, starts = synthesize_int16(normalized, config.voice, config.rate)
            wav = str(wavs / f"{utterance_id}.wav")
            soundfile.write(wav, samples, ESPEAK_SAMPLE_RATE, subtype="PCM_16", format="WAV")
            lines.append(f"{utterance_id}|{text}|{normalized}\n")
            # One start per whitespace-separated word of the text eSpeak read, -1 where it reported none.
            words = [WordTiming(token.group(), token.start(), int(start))
                     for token, start in zip(re.finditer(r"\S+", normalized), starts, strict=True) if start >= 0]
            timings[utterance_id] = UtteranceTimings(normalized, tuple(words))
            bar.advance(task)
    with open(folder / _METADATA, "w", encoding="utf-8", newline="\n") as file:
        file.writelines(lines)
    # Frames at NVIDIA's hop, the datamodule's default; the datamodule maps the samples onto its own hop.
    write_timings(folder / TIMINGS_FILE, timings, ESPEAK_SAMPLE_RATE, AudioConfig().hop_length)
    # Written last: its presence is what makes the folder trusted.
    (folder / _COMPLETE_MARKER).write_text(_config_json(config), encoding="utf-8")


def _publish(temporary: Path, target: Path, config: BuiltinDatasetConfig) -> None:
    """Renames the finished ``temporary`` folder to ``target``; keeps a complete target made by someone else."""
    for _ in range(3):
        try:
            os.rename(temporary, target)  # atomic; fails if target exists and is not empty
            return
        except OSError:
            if not target.exists():
                raise
        if _is_complete(target, config):
            # Another process finished the same dataset first; its files equal ours.
            shutil.rmtree(temporary, ignore_errors=True)
            return
        # An untrusted leftover (no marker): move it aside first, so the swap never exposes a half dataset.
        stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(target, stale)
        except FileNotFoundError:
            continue  # someone else moved it; try again
        shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"Could not move the generated dataset {temporary} to {target}")


def ensure_builtin_dataset(root: Path | str, config: BuiltinDatasetConfig, progress: bool = True) -> Path:
    """Returns the built-in dataset's LJSpeech folder under ``root``, generating it first if needed.

    The folder is named after the configuration (e.g. ``espeak-v2-en-us-n300-s1234-w2-6-r175``) and is trusted
    only when its ``COMPLETE`` marker (written last, holding the configuration as JSON) matches ``config``.
    Otherwise the dataset is generated into a temporary sibling folder and renamed into place, so a killed
    run never leaves a folder that looks complete and concurrent runs do not mix their files.

    Args:
        root: Cache folder that holds built-in datasets (created if missing), e.g.
            ``default_cache_root() / "datasets"``.
        config: What to generate.
        progress: Show a progress bar while synthesising.

    Returns:
        The dataset folder: ``metadata.csv`` (``ESPK-0001|text|normalized text`` lines, UTF-8),
        ``wavs/ESPK-0001.wav`` ... (22050 Hz, mono, 16-bit PCM) and ``timings.json`` (each word's character offset
        in the normalized text and its first sample and frame in the wav).

    Raises:
        ValueError: If the voice is unknown.
        RuntimeError: If the eSpeak NG library fails.
    """
    root = Path(root).expanduser()
    name = _folder_name(config)
    target = builtin_dataset_folder(root, config)
    if _is_complete(target, config):
        logger.info("Using the built-in eSpeak dataset at %s (%d utterances)", target, config.size)
        return target

    voice_identifier(config.voice)  # fail on an unknown voice before creating anything
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root, name)
    temporary = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        _write_dataset(temporary, config, progress)
        _publish(temporary, target, config)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    logger.info(
        "Generated the built-in eSpeak dataset at %s (%d utterances, %.1f s)",
        target, config.size, time.perf_counter() - started,
    )
    return target
