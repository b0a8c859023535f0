"""The training app: Tacotron2 trained, tuned and judged with the generic callbacks of ``tuner_callbacks``.

- :mod:`~tacotron2_lightning.app.training`: ``train(cfg)``, what ``train.py`` runs;
- :mod:`~tacotron2_lightning.app.config_validation`: the config checked before anything is built;
- :mod:`~tacotron2_lightning.app.objective`: what a sweep trial returns;
- :mod:`~tacotron2_lightning.app.synthesize`: the synthesis command (files and registered models);
- :mod:`~tacotron2_lightning.app.registry_commands`: ``export`` and ``compare``, added to
  ``python -m tuner_callbacks.registry`` through an entry point;
- :mod:`~tacotron2_lightning.app.pyfunc_factory`: the registry's ``pyfunc_model``, so that each registered version
  is an MLflow model (:mod:`~tacotron2_lightning.app.served_model`) that ``mlflow models serve`` serves.

Imports go one way: this package uses ``tuner_callbacks`` and the model core (``model``, ``text``, ``audio``,
``data``, ``module``, ...); neither imports it back (``tests/test_import_layers.py`` checks).
"""
