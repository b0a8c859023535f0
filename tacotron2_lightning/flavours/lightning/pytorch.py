"""Tacotron2's classes on ``lightning.pytorch`` (see :mod:`tacotron2_lightning.lightning_compat`); the path is kept for
configs, saved run configs and pickles. Needs the ``lightning`` package (``pip install "smart-tuner[lightning]"``)."""

from tacotron2_lightning.lightning_compat import tacotron2_classes

Tacotron2Module, Tacotron2DataModule = tacotron2_classes("lightning.pytorch")
