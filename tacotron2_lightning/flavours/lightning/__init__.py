"""Classes for the ``lightning`` package; see :mod:`tacotron2_lightning.flavours.lightning.pytorch`."""
