"""Data for Tacotron2: LJSpeech folders, NVIDIA filelists, the built-in eSpeak dataset, cached mels, batching."""

from tacotron2_lightning.data.builtin import BuiltinDatasetConfig, ensure_builtin_dataset
from tacotron2_lightning.data.collate import TextMelCollate
from tacotron2_lightning.data.datamodule import Tacotron2DataModule
from tacotron2_lightning.data.loader import ResumableDataLoader
from tacotron2_lightning.data.mel_cache import MelCache
from tacotron2_lightning.data.sampler import LengthBucketBatchSampler
from tacotron2_lightning.data.sources import DataError, Utterance, read_filelist, read_ljspeech

__all__ = [
    "BuiltinDatasetConfig",
    "DataError",
    "LengthBucketBatchSampler",
    "MelCache",
    "ResumableDataLoader",
    "Tacotron2DataModule",
    "TextMelCollate",
    "Utterance",
    "ensure_builtin_dataset",
    "read_filelist",
    "read_ljspeech",
]
