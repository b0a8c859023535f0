"""The code MLflow runs to load a registered Tacotron2 ("models from code"): it names the model object.

:class:`~tacotron2_lightning.app.pyfunc_factory.Tacotron2Pyfunc` passes this file to
``mlflow.pyfunc.save_model``, which copies it into each saved version; loading the version runs the copy. It
holds no code of its own, so versions saved before a fix load the fixed model; the model is
:class:`~tacotron2_lightning.app.served_model.Tacotron2PythonModel`. (A pickled object instead would work as well,
but MLflow warns about unpickling at every registration.)
"""

import mlflow.models

from tacotron2_lightning.app.served_model import Tacotron2PythonModel

mlflow.models.set_model(Tacotron2PythonModel())
