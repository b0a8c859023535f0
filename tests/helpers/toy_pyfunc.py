"""A pyfunc model of :class:`~tests.helpers.toy_module.ToyRegression`, for the registry's generic ``pyfunc_model``.

``toy_pyfunc`` is a factory as ``ModelRegistry(pyfunc_model=...)`` takes it: the served model reads the registered
checkpoint's weights and predicts ``y = w * x + b`` for a DataFrame with an ``x`` column. It is saved as a pickled
object (Tacotron2's is saved from code): the registry passes either to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import torch
import yaml

from tuner_callbacks.registry.pyfunc_saving import CHECKPOINT_ARTIFACT, DATA_CONFIG_ARTIFACT, PyfuncModel


class ToyPythonModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        state = torch.load(context.artifacts[CHECKPOINT_ARTIFACT], weights_only=True)["state_dict"]
        self.weight, self.bias = float(state["layer.weight"]), float(state["layer.bias"])
        data_config = context.artifacts.get(DATA_CONFIG_ARTIFACT)
        self.data_config = yaml.safe_load(Path(data_config).read_text()) if data_config else None

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return pd.DataFrame({"y": model_input["x"] * self.weight + self.bias})


def toy_pyfunc(checkpoint: Path, data_config: Path | None) -> PyfuncModel:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    signature = ModelSignature(Schema([ColSpec(DataType.double, "x")]), Schema([ColSpec(DataType.double, "y")]))
    return PyfuncModel(ToyPythonModel(), signature=signature, input_example=pd.DataFrame({"x": [0.5]}),
                       pip_requirements=["mlflow", "torch"])


class ToyPyfunc:
    """``toy_pyfunc`` as a class, for a Hydra ``_target_``."""

    def __call__(self, checkpoint: Path, data_config: Path | None) -> PyfuncModel:
        return toy_pyfunc(checkpoint, data_config)
