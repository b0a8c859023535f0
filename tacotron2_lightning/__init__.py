"""NVIDIA's Tacotron2 as a LightningModule: same state_dict, same maths, plus health metrics.

Names are imported on first use, so a tool that needs only the checkpoint reader or the text front end does not
pay for importing PyTorch Lightning.

``Tacotron2Module`` here is for a ``pytorch_lightning.Trainer``. For a ``lightning.pytorch.Trainer``, which refuses it
(``TypeError: `model` must be a `LightningModule`...``), import
``tacotron2_lightning.flavours.lightning.pytorch.Tacotron2Module`` (and ``Tacotron2DataModule``); the rule is in
:mod:`tacotron2_lightning.lightning_compat`.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AudioConfig": "tacotron2_lightning.audio",
    "CheckpointError": "tacotron2_lightning.checkpoint",
    "MelSpectrogram": "tacotron2_lightning.audio",
    "Tacotron2": "tacotron2_lightning.model",
    "Tacotron2Config": "tacotron2_lightning.config",
    "Tacotron2Module": "tacotron2_lightning.module",
    "griffin_lim": "tacotron2_lightning.audio",
    "load_nvidia_checkpoint": "tacotron2_lightning.checkpoint",
    "tacotron2_loss": "tacotron2_lightning.loss",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return __all__
