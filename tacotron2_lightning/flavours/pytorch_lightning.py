"""Tacotron2Module and Tacotron2DataModule on ``pytorch_lightning`` (the project's default package)."""

from tacotron2_lightning.data.datamodule import Tacotron2DataModule
from tacotron2_lightning.module import Tacotron2Module

__all__ = ["Tacotron2DataModule", "Tacotron2Module"]
