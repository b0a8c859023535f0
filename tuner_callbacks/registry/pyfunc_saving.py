"""Registered versions as MLflow pyfunc models: what a model package supplies, and how the registry saves it.

The registry is generic: it does not know how to load the model it registers. A package that does passes
:class:`~tuner_callbacks.registry.callback.ModelRegistry` a ``pyfunc_model`` factory, a callable
``factory(checkpoint, data_config) -> PyfuncModel`` given the local paths of the version's checkpoint and
``data.yaml`` (``None`` without a data config). The registry adds both files to the model's artifacts under the
names :data:`CHECKPOINT_ARTIFACT` and :data:`DATA_CONFIG_ARTIFACT` (the model's ``load_context`` reads them from
``context.artifacts``), saves the model with ``mlflow.pyfunc.save_model`` and logs the folder as the version.
Tacotron2's factory is :class:`tacotron2_lightning.app.pyfunc_factory.Tacotron2Pyfunc`.

Example:
    >>> def toy_pyfunc(checkpoint, data_config):
    ...     return PyfuncModel(python_model=ToyPythonModel(), signature=signature, input_example=example,
    ...                        pip_requirements=["mlflow", "torch"])
    >>> ModelRegistry("toy", pyfunc_model=toy_pyfunc)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tuner_callbacks.registry.client import TAG_CHECKPOINT_FILE, TAG_DATA_CONFIG_FILE

CHECKPOINT_ARTIFACT = "checkpoint"  # context.artifacts[...] of the saved model: the version's checkpoint
DATA_CONFIG_ARTIFACT = "data_config"  # ... and its data.yaml, when the callback has a data config


@dataclass(frozen=True)
class PyfuncModel:
    """What ``mlflow.pyfunc.save_model`` needs beyond the checkpoint and data config, from a model's package.

    Attributes:
        python_model: an ``mlflow.pyfunc.PythonModel``, or the path of a models-from-code file that calls
            ``mlflow.models.set_model``.
        signature: the ``mlflow.models.ModelSignature`` (inputs, outputs, params).
        input_example: an input MLflow stores with the model (and its serving payload, for ``/invocations``).
        pip_requirements: the model's requirements. MLflow infers them when ``None``, by loading the model in a
            subprocess for each version: give them, registration is then fast and needs no network.
        artifacts: more files for ``context.artifacts``, name -> local path (the registry's names are taken).
    """

    python_model: Any
    signature: Any = None
    input_example: Any = None
    pip_requirements: Sequence[str] | None = None
    artifacts: Mapping[str, str] = field(default_factory=dict)


class PyfuncModelFactory(Protocol):
    """Supplies the pyfunc model of one registered version, given its checkpoint and data config files."""

    def __call__(self, checkpoint: Path, data_config: Path | None) -> PyfuncModel: ...


def pyfunc_factory(value: Any) -> PyfuncModelFactory | None:
    """``ModelRegistry``'s ``pyfunc_model`` argument as a factory: a callable is one, a Hydra config with
    ``_target_`` is instantiated (the registry's own config is not recursive, so that its ``data_config`` stays
    YAML), ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, Mapping) and "_target_" in value:
        from hydra.utils import instantiate

        value = instantiate(value)
    if not callable(value):
        raise ValueError("`pyfunc_model` must be a callable (checkpoint, data_config) -> PyfuncModel, a Hydra config "
                         f"with _target_ naming one, or None, got {value!r}")
    return value


def save_pyfunc_model(factory: PyfuncModelFactory, path: Path, checkpoint: Path,
                      data_config: Path | None) -> dict[str, str]:
    """Saves the factory's model with the checkpoint and data config as artifacts into the new folder ``path``.

    Returns:
        The version tags that say where the checkpoint and data config lie inside the folder
        (``checkpoint_file``, ``data_config_file``), for :meth:`~tuner_callbacks.registry.client.Registry.download`.

    Raises:
        TypeError: the factory returned something else than a :class:`PyfuncModel`.
        ValueError: its artifacts use a name the registry reserves.
    """
    import mlflow.pyfunc
    from mlflow.models import Model

    spec = factory(checkpoint, data_config)
    if not isinstance(spec, PyfuncModel):
        raise TypeError(f"pyfunc_model {factory!r} returned a {type(spec).__name__}, expected a PyfuncModel")
    own = {CHECKPOINT_ARTIFACT: checkpoint, **({DATA_CONFIG_ARTIFACT: data_config} if data_config else {})}
    taken = sorted(set(own) & set(spec.artifacts))
    if taken:
        raise ValueError(f"pyfunc_model {factory!r} names artifacts {taken}, which the registry reserves for the "
                         "checkpoint and the data config; rename them")
    with _no_progress_bars():
        mlflow.pyfunc.save_model(
            str(path), python_model=spec.python_model,
            artifacts={**{name: str(file) for name, file in own.items()}, **dict(spec.artifacts)},
            signature=spec.signature, input_example=spec.input_example,
            pip_requirements=None if spec.pip_requirements is None else list(spec.pip_requirements))
    # MLflow picks each artifact's place in the folder (artifacts/<file name>, renamed on a clash): read it back.
    saved = Model.load(str(path / "MLmodel")).flavors["python_function"]["artifacts"]
    tags = {TAG_CHECKPOINT_FILE: saved[CHECKPOINT_ARTIFACT]["path"]}
    if data_config is not None:
        tags[TAG_DATA_CONFIG_FILE] = saved[DATA_CONFIG_ARTIFACT]["path"]
    return tags


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow "downloads" each local artifact into the model with a progress bar: two bars in the training log
    for every version. MLflow reads this switch only from the environment."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
