"""Kept as the parent of :mod:`tacotron2_lightning.flavours.lightning.pytorch`, a path that configs name."""
