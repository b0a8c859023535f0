"""The import paths of Tacotron2's classes on each Lightning package, kept for configs, saved run configs and pickles.

``_target_: tacotron2_lightning.flavours.${lightning}.Tacotron2Module`` names one of them; the classes are built by
:func:`tacotron2_lightning.lightning_compat.tacotron2_classes`, which explains the rule.
"""
