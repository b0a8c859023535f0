"""Tacotron2Module and Tacotron2DataModule for each Lightning package.

A Trainer accepts only a LightningModule of its own package, so the recipe (``Tacotron2ModuleBase``,
``Tacotron2DataModuleBase``) is built once on each:

===========================================================  ======================================
``tacotron2_lightning.flavours.pytorch_lightning.Tacotron2Module``  ``pytorch_lightning.Trainer``
``tacotron2_lightning.flavours.lightning.pytorch.Tacotron2Module``  ``lightning.pytorch.Trainer``
===========================================================  ======================================

(and the same for ``Tacotron2DataModule``). The module path ends in the package's own name, so a config can
choose with one key: ``_target_: tacotron2_lightning.flavours.${lightning}.Tacotron2Module``. The
``pytorch_lightning`` classes are also ``tacotron2_lightning.Tacotron2Module`` and
``tacotron2_lightning.data.Tacotron2DataModule``. Checkpoints of either load into either.
"""
