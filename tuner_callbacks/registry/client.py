"""A thin layer over MLflow's ``MlflowClient`` for the model registry: names, versions, aliases, checkpoints.

A version is named ``NAME@ALIAS`` or ``NAME/VERSION``, optionally with MLflow's ``models:/`` prefix. Each
version registered by :class:`~tuner_callbacks.registry.callback.ModelRegistry` points at a folder of its
MLflow run's artifacts holding ``model.ckpt`` (a weights-only Lightning checkpoint) and, when known,
``data.yaml`` (the data config it was validated on); its tags (see :mod:`~tuner_callbacks.registry.tags`)
say which metric it was registered for and how good it was. When the folder is an MLflow pyfunc model (see
:mod:`~tuner_callbacks.registry.pyfunc_saving`), the two files lie among its artifacts, where the tags
``checkpoint_file`` and ``data_config_file`` say; without those tags they are at the top of the folder.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner_callbacks.mlflow_utils import prepare_sqlite_store, resolve_tracking_uri

log = logging.getLogger(__name__)

MODELS_PREFIX = "models:/"
CHECKPOINT_FILE = "model.ckpt"
DATA_CONFIG_FILE = "data.yaml"

# Version tags the callback writes and the CLI reads.
TAG_MONITOR = "monitor"
TAG_MONITOR_VALUE = "monitor_value"
TAG_MODE = "mode"
TAG_ARTIFACT_PATH = "artifact_path"  # the version's folder inside its run's artifacts
TAG_CHECKPOINT_BYTES = "checkpoint_bytes"
TAG_GLOBAL_STEP = "global_step"
TAG_REGISTERED_ON = "registered_on"  # "improvement" or "end"
TAG_GIT_COMMIT = "git_commit"
TAG_CHECKPOINT_FILE = "checkpoint_file"  # the checkpoint's path inside the version's folder (default: model.ckpt)
TAG_DATA_CONFIG_FILE = "data_config_file"  # ... and the data config's (default: data.yaml)
METRIC_TAG_PREFIX = "metric."
HPARAM_TAG_PREFIX = "hparam."

_REFERENCE = re.compile(r"^(?P<name>[^@]+?)(?:@(?P<alias>[^@/]+)|/(?P<version>\d+))$")


class RegistryError(ValueError):
    """A registry request that cannot be served: the message names the bad input and what would be valid."""


class RegistryLookupError(RegistryError, LookupError):
    """An unknown registered model, version or alias; the message lists what exists."""


@dataclass(frozen=True)
class ModelReference:
    """``NAME@ALIAS`` or ``NAME/VERSION``: exactly one of ``alias`` and ``version`` is set."""

    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias is not None else f"{self.name}/{self.version}"


def parse_reference(reference: str) -> ModelReference:
    """Parses ``[models:/]NAME@ALIAS`` or ``[models:/]NAME/VERSION``.

    Example:
        >>> parse_reference("models:/tacotron2@champion")
        ModelReference(name='tacotron2', alias='champion', version=None)
    """
    text = str(reference)
    body = text[len(MODELS_PREFIX):] if text.startswith(MODELS_PREFIX) else text
    match = _REFERENCE.match(body)
    if match is None:
        raise RegistryError(f"{text!r} is not a model reference; expected NAME@ALIAS or NAME/VERSION, optionally "
                            f"prefixed with {MODELS_PREFIX!r} (e.g. 'tacotron2@champion', 'models:/tacotron2/3')")
    version = match["version"]
    return ModelReference(match["name"], match["alias"], int(version) if version is not None else None)


def monitor_value(version: Any) -> float:
    """The monitored metric a version was registered with; NaN when it has none (it then ranks last)."""
    try:
        return float(version.tags.get(TAG_MONITOR_VALUE, "nan"))
    except ValueError:
        return math.nan


def is_better(candidate: float, incumbent: float, mode: str) -> bool:
    """Whether ``candidate`` beats ``incumbent`` in ``mode``; a NaN candidate never does, a NaN incumbent always
    loses to a finite candidate."""
    if math.isnan(candidate):
        return False
    if math.isnan(incumbent):
        return True
    return candidate < incumbent if mode == "min" else candidate > incumbent


def rank_key(version: Any) -> tuple[int, float, int]:
    """Sort key putting the best version first, by the monitored metric and the mode stored in its tags;
    versions without a metric go last, and ties go to the newer version."""
    value = monitor_value(version)
    if math.isnan(value):
        return (1, 0.0, -int(version.version))
    signed = value if version.tags.get(TAG_MODE, "min") == "min" else -value
    return (0, signed, -int(version.version))


class Registry:
    """The registry of one MLflow tracking server (or SQLite file).

    Args:
        tracking_uri: the store (see :func:`resolve_tracking_uri`).
        create: create a SQLite database that does not exist yet (the callback does; lookups refuse).

    Example:
        >>> registry = Registry("sqlite:///outputs/mlflow.db")
        >>> version = registry.resolve("tacotron2-train@champion")
        >>> checkpoint = registry.download(version, "/tmp/champion")
    """

    def __init__(self, tracking_uri: str | None = None, create: bool = False):
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        database = self.tracking_uri[len("sqlite:///"):] if self.tracking_uri.startswith("sqlite:///") else None
        if database is not None and not create and not Path(database).is_file():
            # MLflow would create an empty database there: a mistyped path would then "have no models".
            raise RegistryError(f"No MLflow database at {database} (tracking URI {self.tracking_uri!r}); pass the "
                                "store the runs were logged to (--tracking-uri or MLFLOW_TRACKING_URI)")
        if database is not None and create:
            prepare_sqlite_store(self.tracking_uri)  # a sweep's parallel trials may open a new store together
        # The registry lives in the same store as the runs: a SQLite file or a tracking server hold both.
        self.client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    def model_names(self) -> list[str]:
        return sorted(model.name for model in self.client.search_registered_models())

    def registered_model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            known = self.model_names()
            raise RegistryLookupError(f"No registered model {name!r} in {self.tracking_uri}; registered models: "
                                      f"{', '.join(map(repr, known)) or 'none'}") from None

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version number of a registered model."""
        return {alias: int(version) for alias, version in self.registered_model(name).aliases.items()}

    def versions(self, name: str) -> list[Any]:
        """Every version of a registered model, best first (see :func:`rank_key`)."""
        self.registered_model(name)
        return sorted(self.client.search_model_versions(f"name='{name}'"), key=rank_key)

    def resolve(self, reference: str | ModelReference) -> Any:
        """The ``ModelVersion`` a reference names; raises :class:`RegistryLookupError` listing what exists."""
        ref = reference if isinstance(reference, ModelReference) else parse_reference(reference)
        aliases = self.aliases(ref.name)  # also checks that the model exists
        if ref.alias is not None:
            if ref.alias not in aliases:
                listed = ", ".join(f"{a} (version {v})" for a, v in sorted(aliases.items())) or "none"
                raise RegistryLookupError(f"Registered model {ref.name!r} has no alias {ref.alias!r}; its aliases: "
                                          f"{listed}")
            number = aliases[ref.alias]
        else:
            number = ref.version
        versions = {int(v.version): v for v in self.client.search_model_versions(f"name='{ref.name}'")}
        if number not in versions:
            raise RegistryLookupError(f"Registered model {ref.name!r} has no version {number}; its versions: "
                                      f"{', '.join(map(str, sorted(versions))) or 'none'}")
        return versions[number]

    def download(self, version: Any, destination: str | Path, include_data_config: bool = True) -> Path:
        """Downloads a version's checkpoint (and ``data.yaml`` if it has one) into ``destination`` as ``model.ckpt``
        and ``data.yaml``, wherever they lie in the version's folder; returns the checkpoint's local path."""
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        destination = Path(destination)
        destination.mkdir(parents=True, exist_ok=True)
        label = f"{version.name}/{version.version}"
        files = {CHECKPOINT_FILE: version.tags.get(TAG_CHECKPOINT_FILE, CHECKPOINT_FILE)}
        if include_data_config:
            files[DATA_CONFIG_FILE] = version.tags.get(TAG_DATA_CONFIG_FILE, DATA_CONFIG_FILE)
        source = urllib.parse.urlparse(version.source)
        for file_name, stored in files.items():
            try:
                if source.scheme in ("", "file"):  # a local artifact store: a copy, without MLflow's progress bars
                    shutil.copyfile(Path(source.path) / stored, destination / file_name)
                else:
                    with tempfile.TemporaryDirectory(prefix="registry-download-") as scratch:
                        local = mlflow.artifacts.download_artifacts(
                            artifact_uri=f"{version.source.rstrip('/')}/{stored}", dst_path=scratch,
                            tracking_uri=self.tracking_uri)
                        shutil.move(local, destination / file_name)
            except (MlflowException, OSError) as error:
                if file_name == DATA_CONFIG_FILE:
                    continue  # optional: versions registered without a data config
                raise RegistryError(f"Version {label} has no readable checkpoint at {version.source}/{stored} "
                                    f"(were its artifacts deleted?): {error}") from error
        return destination / CHECKPOINT_FILE

    def checkpoint(self, reference: str | ModelReference, destination: str | Path | None = None) -> Path:
        """Resolves a reference and downloads its checkpoint (into a new temporary folder by default)."""
        version = self.resolve(reference)
        folder = Path(destination) if destination is not None else Path(tempfile.mkdtemp(prefix="registry-"))
        return self.download(version, folder)

    def run_artifact_uri(self, run_id: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.artifact_uri
        except MlflowException:
            return None
