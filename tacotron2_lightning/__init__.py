"""NVIDIA's Tacotron2 as a LightningModule: same state_dict, same maths, plus health metrics."""

from tacotron2_lightning.audio import AudioConfig, MelSpectrogram, griffin_lim
from tacotron2_lightning.checkpoint import CheckpointError, load_nvidia_checkpoint
from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.model import Tacotron2
from tacotron2_lightning.module import Tacotron2Module

__all__ = [
    "AudioConfig",
    "CheckpointError",
    "MelSpectrogram",
    "Tacotron2",
    "Tacotron2Config",
    "Tacotron2Module",
    "griffin_lim",
    "load_nvidia_checkpoint",
    "tacotron2_loss",
]
