"""Tacotron2DataModule: LJSpeech folders, NVIDIA filelists or the built-in eSpeak dataset, with cached mels."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from tacotron2_lightning.audio import AudioConfig, MelSpectrogram, load_wav, resample
from tacotron2_lightning.data.builtin import (
    BuiltinDatasetConfig,
    builtin_dataset_folder,
    default_cache_root,
    ensure_builtin_dataset,
)
from tacotron2_lightning.data.collate import TextMelCollate
from tacotron2_lightning.data.dataset import CheckedUtterance, TextMelDataset, inspect_utterances
from tacotron2_lightning.data.loader import ResumableDataLoader, WorkerSignalsDataLoader, ignore_group_signals
from tacotron2_lightning.data.mel_cache import MelCache
from tacotron2_lightning.data.sampler import LengthBucketBatchSampler
from tacotron2_lightning.data.sources import DataError, Utterance, read_filelist, read_ljspeech
from tacotron2_lightning.data.timings import attach_word_timings
from tacotron2_lightning.dataclass_config import as_dataclass
from tacotron2_lightning.lightning_compat import check_same_package

log = logging.getLogger(__name__)


class WavToMel:
    """Loads a wav (resampling it when allowed) and computes NVIDIA's mel; picklable for DataLoader workers."""

    def __init__(self, audio: AudioConfig):
        self.audio = audio
        self._mel = None

    def __call__(self, path: Path) -> torch.Tensor:
        if self._mel is None:
            self._mel = MelSpectrogram(self.audio)
        wav, sampling_rate = load_wav(path)
        wav = resample(wav, sampling_rate, self.audio.sampling_rate)
        with torch.no_grad():
            return self._mel(wav.clamp(-1.0, 1.0))

    def __getstate__(self):
        return {"audio": self.audio, "_mel": None}


def init_worker(worker_id: int) -> None:
    """Leaves SIGTERM and Ctrl+C to the training process, and seeds the worker as Lightning would.

    ``timeout`` and SLURM signal the whole process group: PyTorch's workers would die of it and fail the step
    during which the training process saves its last checkpoint before stopping. Workers stop when the training
    process shuts them down or exits; they start with the signals blocked (:class:`WorkerSignalsDataLoader`), so
    one sent before this function runs is discarded too. Setting ``worker_init_fn`` stops Lightning from adding its
    own, so its seeding (``seed_everything(workers=True)``) is done here.
    """
    ignore_group_signals()
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        pl_worker_init_function(worker_id)


class MelSource:
    """Mel of a checked utterance: from the on-disk cache, or computed every time when caching is off."""

    def __init__(self, wav_to_mel: WavToMel, cache: MelCache | None):
        self.wav_to_mel = wav_to_mel
        self.cache = cache

    def __call__(self, item: CheckedUtterance) -> torch.Tensor:
        path = item.utterance.audio_path
        return self.cache.get(path) if self.cache is not None else self.wav_to_mel(path)


class Tacotron2DataModuleBase:
    """Training and validation data for :class:`~tacotron2_lightning.module.Tacotron2Module`.

    Sources, in order of precedence: ``train_filelist`` (+ ``val_filelist``) in NVIDIA's ``path|text``
    format; ``path``, an LJSpeech-style folder; nothing, which generates the built-in eSpeak dataset once
    under ``cache_dir``. Without a validation list, a seeded split of ``val_size`` utterances (a count, or a
    fraction when < 1) is held out.

    Args:
        path: LJSpeech-style folder (``metadata.csv`` + ``wavs/``).
        train_filelist, val_filelist: NVIDIA-style filelists; ``audio_root`` resolves their relative paths.
        val_size: held-out count (>= 1) or fraction (< 1) when there is no validation filelist.
        split_seed: seed of that split.
        text_cleaners: cleaner names for :func:`~tacotron2_lightning.text.text_to_sequence`.
        audio: :class:`~tacotron2_lightning.audio.AudioConfig` or a mapping of its fields.
        n_frames_per_step: must equal the model's; mel lengths are padded to a multiple of it.
        batch_size, num_workers: as in ``DataLoader``.
        bucketing: group utterances of similar length into batches (less padding); shuffled each epoch, and
            resumable mid-epoch (the training loader's position is in Lightning's checkpoints).
        bucket_size: how many length-sorted neighbours a bucket pools (default: the sampler's).
        seed: seed of the batch order.
        min_text_length, max_text_length: filters on the number of symbols after cleaning.
        min_seconds, max_seconds: filters on audio duration.
        resample: resample audio at another rate on load; otherwise such a file is an error.
        skip_bad: skip malformed list lines and bad utterances (counted and logged) instead of failing before
            training.
        cache_dir: where the built-in dataset and the mel cache live (default ``~/.cache/smart-tuner``).
        cache_mels: keep mels on disk; off recomputes them every epoch.
        mel_cache_dir: where the mels are cached (default ``<cache_dir>/mels``).
        builtin: :class:`~tacotron2_lightning.data.builtin.BuiltinDatasetConfig` fields for the built-in data.

    Example:
        >>> data = Tacotron2DataModule(path="/data/LJSpeech-1.1", batch_size=64, num_workers=4)

    This class holds the data and no Lightning base: a Trainer takes a ``Tacotron2DataModule`` of its own package,
    which :func:`~tacotron2_lightning.lightning_compat.tacotron2_classes` builds on this class.
    ``tacotron2_lightning.data.Tacotron2DataModule`` is the ``pytorch_lightning`` one.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        train_filelist: str | Path | None = None,
        val_filelist: str | Path | None = None,
        audio_root: str | Path | None = None,
        val_size: float = 0.05,
        split_seed: int = 1234,
        text_cleaners: Sequence[str] = ("english_cleaners",),
        audio: AudioConfig | Mapping[str, Any] | None = None,
        n_frames_per_step: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        bucketing: bool = True,
        bucket_size: int | None = None,
        seed: int = 0,
        min_text_length: int = 1,
        max_text_length: int | None = None,
        min_seconds: float = 0.0,
        max_seconds: float | None = None,
        resample: bool = False,
        skip_bad: bool = False,
        cache_dir: str | Path | None = None,
        cache_mels: bool = True,
        mel_cache_dir: str | Path | None = None,
        builtin: BuiltinDatasetConfig | Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if val_filelist is not None and train_filelist is None:
            raise ValueError("val_filelist is set but train_filelist is not; give both, or neither")
        if not val_size > 0:
            raise ValueError(f"val_size must be a count >= 1 or a fraction in (0, 1), got {val_size!r}")
        for name, value in (("batch_size", batch_size), ("n_frames_per_step", n_frames_per_step)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers!r}")
        self.path = Path(path) if path is not None else None
        self.train_filelist = Path(train_filelist) if train_filelist is not None else None
        self.val_filelist = Path(val_filelist) if val_filelist is not None else None
        self.audio_root = audio_root
        self.val_size = val_size
        self.split_seed = split_seed
        self.text_cleaners = list(text_cleaners)
        self.audio = as_dataclass(AudioConfig, audio)
        self.n_frames_per_step = n_frames_per_step
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.bucketing = bucketing
        self.bucket_size = bucket_size
        self.seed = seed
        self.filters = {"min_text_length": min_text_length, "max_text_length": max_text_length,
                        "min_seconds": min_seconds, "max_seconds": max_seconds}
        self.resample = resample
        self.skip_bad = skip_bad
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
        self.cache_mels = cache_mels
        self.mel_cache_dir = Path(mel_cache_dir).expanduser() if mel_cache_dir is not None else self.cache_dir / "mels"
        self.builtin = as_dataclass(BuiltinDatasetConfig, builtin)
        self.train_set: TextMelDataset | None = None
        self.val_set: TextMelDataset | None = None

    @property
    def trainer(self) -> Any:
        """The Trainer this data is attached to. Another Lightning package's Trainer is refused here, naming the import
        to use: that Trainer would otherwise fail with an error of its own that does not say why."""
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        check_same_package(self, trainer)
        self._trainer = trainer

    def _uses_builtin(self) -> bool:
        return self.path is None and self.train_filelist is None

    def prepare_data(self) -> None:
        # Lightning runs this once per machine, before setup on every process: the place to generate files.
        if self._uses_builtin():
            ensure_builtin_dataset(self.cache_dir / "datasets", self.builtin)

    def _read_sources(self) -> tuple[list[Utterance], list[Utterance] | None]:
        if self.train_filelist is not None:
            train = read_filelist(self.train_filelist, self.audio_root, skip_bad=self.skip_bad)
            val = (read_filelist(self.val_filelist, self.audio_root, skip_bad=self.skip_bad)
                   if self.val_filelist is not None else None)
            return train, val
        root = self.path if self.path is not None else ensure_builtin_dataset(
            self.cache_dir / "datasets", self.builtin, progress=False)
        return read_ljspeech(root, skip_bad=self.skip_bad), None

    def _split(self, items: list[CheckedUtterance]) -> tuple[list[CheckedUtterance], list[CheckedUtterance]]:
        count = int(self.val_size) if self.val_size >= 1 else max(1, round(self.val_size * len(items)))
        if count >= len(items):
            raise DataError(f"val_size={self.val_size!r} holds out {count} of only {len(items)} utterances")
        order = list(range(len(items)))
        random.Random(self.split_seed).shuffle(order)
        held_out = set(order[:count])
        return ([item for i, item in enumerate(items) if i not in held_out],
                [item for i, item in enumerate(items) if i in held_out])

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_sources, val_sources = self._read_sources()
        check = {"cleaners": self.text_cleaners, "audio": self.audio, "resample": self.resample,
                 "skip_bad": self.skip_bad, **self.filters}
        train_items = inspect_utterances(train_sources, **check)
        if val_sources is None:
            train_items, val_items = self._split(train_items)
        else:
            val_items = inspect_utterances(val_sources, **check)
        wav_to_mel = WavToMel(self.audio)
        cache = None
        if self.cache_mels:
            settings = {**dataclasses.asdict(self.audio), "resampler": "sinc-hann-6"}
            cache = MelCache(self.mel_cache_dir, settings, wav_to_mel)
        source = MelSource(wav_to_mel, cache)
        self.train_set = TextMelDataset(train_items, source)
        self.val_set = attach_word_timings(TextMelDataset(val_items, source), self._timings_folder(),
                                           self.text_cleaners, self.audio)
        log.info("Data: %d training and %d validation utterances (%.1f min of training audio)",
                 len(train_items), len(val_items), sum(i.seconds for i in train_items) / 60)

    def _timings_folder(self) -> Path | None:
        """The LJSpeech folder (the built-in dataset's too) whose ``timings.json``, if it has one, gives the
        validation batches their word timings; None for filelists."""
        if self.train_filelist is not None:
            return None
        return self.path if self.path is not None else builtin_dataset_folder(self.cache_dir / "datasets",
                                                                             self.builtin)

    def _loader(self, dataset: TextMelDataset, train: bool) -> DataLoader:
        collate = TextMelCollate(self.n_frames_per_step)
        common = {"collate_fn": collate, "num_workers": self.num_workers,
                  "persistent_workers": self.num_workers > 0, "worker_init_fn": init_worker}
        if self.bucketing:
            sampler = LengthBucketBatchSampler(
                [item.n_frames for item in dataset.items], self.batch_size, bucket_size=self.bucket_size,
                shuffle=train, seed=self.seed,
            )
            # Resumable: a checkpoint taken mid-epoch continues the epoch with the batches it would have had.
            return ResumableDataLoader(dataset, batch_sampler=sampler, **common)
        return WorkerSignalsDataLoader(dataset, batch_size=self.batch_size, shuffle=train, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)


def __getattr__(name: str) -> Any:
    # Built on pytorch_lightning by lightning_compat.tacotron2_classes, which imports this module: built on first use.
    if name == "Tacotron2DataModule":
        from tacotron2_lightning.lightning_compat import tacotron2_classes

        return tacotron2_classes("pytorch_lightning").Tacotron2DataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
