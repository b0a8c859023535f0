"""Tacotron2's classes on ``pytorch_lightning`` (see :mod:`tacotron2_lightning.lightning_compat`); the path is kept for
configs, saved run configs and pickles."""

from tacotron2_lightning.lightning_compat import tacotron2_classes

Tacotron2Module, Tacotron2DataModule = tacotron2_classes("pytorch_lightning")
