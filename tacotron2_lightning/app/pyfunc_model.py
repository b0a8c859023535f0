"""Kept for versions registered before the rename to :mod:`~tacotron2_lightning.app.served_model`: MLflow runs each
version's own copy of the models-from-code file, and theirs imports the model from here."""

from tacotron2_lightning.app.served_model import Tacotron2PythonModel  # noqa: F401
