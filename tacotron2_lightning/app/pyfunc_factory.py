"""Tacotron2's ``pyfunc_model`` for the model registry: each registered version becomes a servable MLflow model.

``ModelRegistry`` is generic and does not import this package; ``conf/callbacks/model_registry.yaml`` hands it a
:class:`Tacotron2Pyfunc` (``_target_``), which says how MLflow loads a version: the model
(:mod:`~tacotron2_lightning.app.served_model`, through the models-from-code file
:mod:`~tacotron2_lightning.app.served_model_code`), its signature, an input example and its pip requirements.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from tuner_callbacks.registry.pyfunc_saving import PyfuncModel

PROJECT = "smart-tuner"
# Without the project installed (a checkout on PYTHONPATH), at least what loading the model needs.
CORE_REQUIREMENTS = ("mlflow", "torch", "pytorch-lightning", "numpy", "pandas")


def pinned_requirements(project: str = PROJECT) -> list[str]:
    """The project's own requirements (extras left out), pinned to the installed versions.

    Given to MLflow so that it does not infer them, which loads the model in a subprocess for each version. The
    served model imports this project, which is on no package index: serve it with ``--env-manager local`` from
    an environment where the project is installed; the list records what that environment held.
    """
    from packaging.requirements import Requirement

    try:
        requirements = [Requirement(text) for text in importlib.metadata.requires(project) or ()]
        names = [r.name for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]
    except importlib.metadata.PackageNotFoundError:
        names = list(CORE_REQUIREMENTS)
    pinned = []
    for name in names:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


class Tacotron2Pyfunc:
    """Supplies :class:`~tacotron2_lightning.app.served_model.Tacotron2PythonModel` for each registered version.

    Args:
        griffin_lim_iters: the default of the served model's ``griffin_lim_iters`` param.
        max_decoder_steps: the default of its ``max_decoder_steps`` param (``None``: the model's own cap).
        example_text: the input example stored with each version.

    Example:
        >>> ModelRegistry("tacotron2-ljspeech", pyfunc_model=Tacotron2Pyfunc(griffin_lim_iters=32))
    """

    def __init__(self, griffin_lim_iters: int = 60, max_decoder_steps: int | None = None,
                 example_text: str = "Hello world."):
        if isinstance(griffin_lim_iters, bool) or not isinstance(griffin_lim_iters, int) or griffin_lim_iters < 0:
            raise ValueError(f"`griffin_lim_iters` must be an integer >= 0, got {griffin_lim_iters!r}")
        if max_decoder_steps is not None and (isinstance(max_decoder_steps, bool) or
                                              not isinstance(max_decoder_steps, int) or max_decoder_steps < 1):
            raise ValueError(f"`max_decoder_steps` must be an integer >= 1 or None, got {max_decoder_steps!r}")
        if not isinstance(example_text, str) or not example_text.strip():
            raise ValueError(f"`example_text` must be a non-empty string, got {example_text!r}")
        self.griffin_lim_iters, self.max_decoder_steps = griffin_lim_iters, max_decoder_steps
        self.example_text = example_text

    def __repr__(self) -> str:
        return (f"Tacotron2Pyfunc(griffin_lim_iters={self.griffin_lim_iters}, "
                f"max_decoder_steps={self.max_decoder_steps}, example_text={self.example_text!r})")

    def signature(self) -> Any:
        """Input ``text`` (string); output ``audio`` (float32 array), ``sampling_rate``, ``num_samples``,
        ``num_frames`` (longs), ``stopped`` (boolean); params with this factory's defaults."""
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
        from mlflow.types.schema import Array

        from tacotron2_lightning.app.served_model import OUTPUT_COLUMNS, TEXT_COLUMN

        output_types = {"audio": Array(DataType.float), "sampling_rate": DataType.long,
                        "num_samples": DataType.long, "num_frames": DataType.long, "stopped": DataType.boolean}
        return ModelSignature(
            inputs=Schema([ColSpec(DataType.string, TEXT_COLUMN)]),
            outputs=Schema([ColSpec(output_types[name], name) for name in OUTPUT_COLUMNS]),
            params=ParamSchema([ParamSpec("max_decoder_steps", DataType.long, self.max_decoder_steps),
                                ParamSpec("griffin_lim_iters", DataType.long, self.griffin_lim_iters),
                                ParamSpec("seed", DataType.long, None)]),
        )

    def __call__(self, checkpoint: Path, data_config: Path | None) -> PyfuncModel:
        import pandas as pd

        return PyfuncModel(python_model=str(Path(__file__).with_name("served_model_code.py")),
                           signature=self.signature(), input_example=pd.DataFrame({"text": [self.example_text]}),
                           pip_requirements=pinned_requirements())
