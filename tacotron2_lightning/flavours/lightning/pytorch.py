"""Tacotron2Module and Tacotron2DataModule on ``lightning.pytorch``, for ``lightning.pytorch.Trainer``.

Needs the ``lightning`` package (``pip install "smart-tuner[lightning]"``).
"""

import lightning.pytorch as pl

from tacotron2_lightning.data.datamodule import Tacotron2DataModuleBase
from tacotron2_lightning.module import Tacotron2ModuleBase

__all__ = ["Tacotron2DataModule", "Tacotron2Module"]


class Tacotron2Module(Tacotron2ModuleBase, pl.LightningModule):
    """:class:`~tacotron2_lightning.module.Tacotron2ModuleBase` as a ``lightning.pytorch.LightningModule``."""


class Tacotron2DataModule(Tacotron2DataModuleBase, pl.LightningDataModule):
    """:class:`~tacotron2_lightning.data.datamodule.Tacotron2DataModuleBase` on ``lightning.pytorch``."""
