"""ModelRegistry: registers the model in MLflow's Model Registry when it improves and at the end of training.

The callback writes its own weights-only checkpoint rather than reusing ``ModelCheckpoint``'s file: it then
works in a Trainer without ``ModelCheckpoint`` or with one that monitors another metric, it never registers a
file that ``save_top_k`` is about to delete, it does not depend on the order in which the two callbacks run,
and the file has no optimizer state (a third of the size for Adam). It is still a Lightning checkpoint with
``hyper_parameters``, so ``load_for_synthesis`` and ``LightningModule.load_from_checkpoint`` rebuild the model.

With a ``pyfunc_model`` factory (:mod:`~tuner_callbacks.registry.pyfunc_saving`) each version is an MLflow pyfunc model
that ``mlflow.pyfunc.load_model("models:/NAME@ALIAS")`` loads and ``mlflow models serve`` serves; without one it
is a plain folder of the checkpoint and ``data.yaml``, which the registry's commands read but MLflow cannot load.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from typing_extensions import override

from tuner_callbacks import contract, options
from tuner_callbacks.lightning_compat import TrainerFn, lightning_bases, pl, rank_zero_info, rank_zero_warn
from tuner_callbacks.mlflow_utils import find_mlflow_logger, logger_tracking_uri, mask_secrets
from tuner_callbacks.registry import tags as version_tags
from tuner_callbacks.registry.client import (
    CHECKPOINT_FILE,
    DATA_CONFIG_FILE,
    TAG_ARTIFACT_PATH,
    TAG_CHECKPOINT_BYTES,
    TAG_GIT_COMMIT,
    TAG_GLOBAL_STEP,
    TAG_MODE,
    TAG_MONITOR,
    TAG_MONITOR_VALUE,
    TAG_REGISTERED_ON,
    Registry,
    is_better,
    monitor_value,
)
from tuner_callbacks.registry.pyfunc_saving import PyfuncModelFactory, pyfunc_factory, save_pyfunc_model
from tuner_callbacks.stop_reason import get_stop_reason, stop_reason_tags

REGISTER_ON = ("improvement", "end", "both")


class ModelRegistry(*lightning_bases("Callback")):
    """Registers checkpoints as versions of an MLflow registered model and keeps an alias on the best one.

    Whenever ``monitor`` improves (after a validation) and when fitting ends, the callback saves a weights-only
    Lightning checkpoint, logs it (with ``data.yaml``, the data config, when given) as an artifact of the run,
    and creates a new version of ``model_name`` from it: an MLflow pyfunc model when ``pyfunc_model`` says how
    to load it, else a plain folder of the two files. Each version is tagged with every metric logged at
    that point (``metric.<name>``), the flattened hyper-parameters (``hparam.<name>``, secrets masked),
    ``monitor``/``monitor_value``/``mode``, ``global_step``, ``registered_on``, ``checkpoint_bytes``,
    ``git_commit``, in a sweep ``optuna.trial``/``optuna.study`` (as the trial's run), and on the version
    registered at the end, why the run stopped (``stop.criterion`` etc., see :mod:`~tuner_callbacks.stop_reason`)
    when a callback said.

    The version registered at the end carries the latest validation's metrics; it is skipped when that
    validation's improvement was registered at the same step already.

    The ``alias`` moves to a new version only if it beats the version holding the alias now, compared by the
    ``monitor_value`` tag: so across all trials of a study, whatever their order, the alias ends on the best
    model. (Two jobs registering at the same instant may race; the sweeper's jobs run one at a time.)

    The run is the :class:`~pytorch_lightning.loggers.MLFlowLogger`'s when the Trainer has one in the same
    store, otherwise a run of the callback's own, in experiment ``experiment_name`` (default: ``model_name``).
    Registry I/O happens on rank zero only; a registry that refuses a version only warns: the model is
    not worth losing the training run over.

    Args:
        model_name: the registered model's name, e.g. ``tacotron2-ljspeech``.
        monitor: the metric that makes a version better.
        mode: ``"min"`` or ``"max"``.
        alias: the alias kept on the best version (``None``: no alias).
        tracking_uri: the MLflow store; ``None`` takes the MLFlowLogger's, else ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///outputs/mlflow.db``.
        register_on: ``"improvement"``, ``"end"`` or ``"both"``.
        trial_number, study_name: the Optuna trial this run is (``None`` outside a sweep).
        data_config: the data config (a mapping or Hydra node), stored as ``data.yaml`` (secrets masked) so that
            ``python -m tuner_callbacks.registry compare`` can rebuild the validation set.
        experiment_name: the experiment of the callback's own run, when there is no MLFlowLogger.
        artifact_location: where that experiment keeps artifacts, if the callback creates it (``None``:
            MLflow's default, ``./mlruns`` under the working directory for a SQLite store).
        pyfunc_model: ``factory(checkpoint, data_config) -> PyfuncModel`` (see
            :mod:`~tuner_callbacks.registry.pyfunc_saving`), or its Hydra config with ``_target_``: each version is then
            saved as an MLflow pyfunc model with the checkpoint and data config among its artifacts. ``None``: a
            plain folder, which MLflow cannot load as a model.

    Example:
        >>> registry = ModelRegistry("tacotron2-ljspeech", monitor="val/loss", alias="champion")
        >>> trainer = pl.Trainer(callbacks=[registry], logger=MLFlowLogger(tracking_uri="sqlite:///mlflow.db"))
    """

    def __init__(
        self,
        model_name: str,
        monitor: str = "val/loss",
        mode: str = "min",
        alias: str | None = "champion",
        tracking_uri: str | None = None,
        register_on: str = "both",
        trial_number: int | None = None,
        study_name: str | None = None,
        data_config: Mapping[str, Any] | None = None,
        experiment_name: str | None = None,
        artifact_location: str | None = None,
        pyfunc_model: PyfuncModelFactory | Mapping[str, Any] | None = None,
    ):
        super().__init__()
        for name, value in (("model_name", model_name), ("monitor", monitor)):
            options.check(name, value, isinstance(value, str) and value.strip() != "", "a non-empty string")
        options.choice("mode", mode, ("min", "max"))
        options.choice("register_on", register_on, REGISTER_ON)
        options.check("alias", alias, alias is None or isinstance(alias, str) and alias.strip() != ""
                      and not alias.isdigit(), "a name such as 'champion' (not a number) or None")
        options.integer("trial_number", trial_number, optional=True)
        self.model_name, self.monitor, self.mode, self.alias = model_name, monitor, mode, alias
        self.tracking_uri, self.register_on = tracking_uri, register_on
        self.trial_number, self.study_name = trial_number, study_name
        self.data_config = mask_secrets(version_tags.plain(data_config)) if data_config is not None else None
        self.experiment_name = experiment_name or model_name
        self.artifact_location = artifact_location
        self.pyfunc_model = pyfunc_factory(pyfunc_model)
        # State, checkpointed: a resumed run does not register a model worse than the one it had.
        self.best_score = math.inf if mode == "min" else -math.inf
        self.last_registered_step: int | None = None
        self.registered_versions: list[int] = []
        self._registry: Registry | None = None
        self._own_run_id: str | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(model_name=self.model_name, monitor=self.monitor)

    def _should_skip(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or bool(trainer.fast_dev_run)

    def _current(self, trainer: pl.Trainer) -> float | None:
        if self.monitor not in trainer.callback_metrics:
            return None
        return float(torch.as_tensor(trainer.callback_metrics[self.monitor]).detach().float().squeeze())

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._should_skip(trainer) or self.register_on == "end":
            return
        current = self._current(trainer)
        if current is None:
            rank_zero_warn(f"ModelRegistry monitors `{self.monitor}`, which was not logged; logged: "
                           f"{', '.join(f'`{k}`' for k in trainer.callback_metrics) or 'nothing'}")
            return
        if is_better(current, self.best_score, self.mode):
            self.best_score = current
            self._register(trainer, pl_module, current, "improvement")

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or bool(trainer.fast_dev_run) or self.register_on == "improvement":
            return
        if self.last_registered_step != trainer.global_step:  # else the end's weights are registered already
            current = self._current(trainer)
            self._register(trainer, pl_module, math.nan if current is None else current, "end")
        self._end_own_run()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._end_own_run()

    def _register(self, trainer: pl.Trainer, pl_module: pl.LightningModule, value: float, registered_on: str) -> None:
        # Every rank takes part in saving (a sharded strategy needs them all); rank zero writes and registers.
        folder = trainer.strategy.broadcast(tempfile.mkdtemp(prefix="model-registry-") if trainer.is_global_zero
                                            else None)
        checkpoint = Path(folder) / CHECKPOINT_FILE
        trainer.save_checkpoint(checkpoint, weights_only=True)
        self.last_registered_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        try:
            version = self._publish(trainer, pl_module, checkpoint, value, registered_on)
            self.registered_versions.append(version)
        except Exception as error:  # a registry outage must not end the training run that it records
            rank_zero_warn(f"ModelRegistry could not register {self.model_name!r} at step {trainer.global_step}: "
                           f"{type(error).__name__}: {error}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _store(self, trainer: pl.Trainer) -> tuple[Registry, str]:
        """The registry client and the run the artifacts go to: the MLFlowLogger's if it writes to the same
        store, else the callback's own run."""
        logger = find_mlflow_logger(trainer.loggers)
        logger_uri = logger_tracking_uri(logger) if logger is not None else None
        uri = self.tracking_uri or logger_uri
        if self._registry is None:
            self._registry = Registry(uri, create=True)
        if logger is not None and logger_uri == self._registry.tracking_uri:
            return self._registry, logger.run_id
        if self._own_run_id is None:
            client = self._registry.client
            experiment = client.get_experiment_by_name(self.experiment_name)
            experiment_id = (experiment.experiment_id if experiment else
                             client.create_experiment(self.experiment_name, self.artifact_location))
            run_tags = {key: str(value) for key, value in self._trial_tags().items()}
            self._own_run_id = client.create_run(experiment_id, tags=run_tags).info.run_id
            rank_zero_info(f"ModelRegistry logs checkpoints to its own MLflow run {self._own_run_id} in "
                           f"{self._registry.tracking_uri}")
        return self._registry, self._own_run_id

    def _end_own_run(self) -> None:
        if self._own_run_id is not None and self._registry is not None:
            self._registry.client.set_terminated(self._own_run_id)
            self._own_run_id = None

    def _trial_tags(self) -> dict[str, str]:
        tags = {}
        if self.trial_number is not None:
            tags[contract.TAG_TRIAL] = str(self.trial_number)
        if self.study_name is not None:
            tags[contract.TAG_STUDY] = str(self.study_name)
        return tags

    def _publish(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Path, value: float,
                 registered_on: str) -> int:
        from mlflow.exceptions import MlflowException

        registry, run_id = self._store(trainer)
        client = registry.client
        artifact_path = f"registry/{self.model_name}/step{trainer.global_step:08d}-{registered_on}"
        data_file = None
        if self.data_config is not None:
            from omegaconf import OmegaConf

            data_file = checkpoint.with_name(DATA_CONFIG_FILE)
            data_file.write_text(OmegaConf.to_yaml(OmegaConf.create(self.data_config)))
        file_tags = {}
        if self.pyfunc_model is not None:
            model_folder = checkpoint.parent / "pyfunc"
            file_tags = save_pyfunc_model(self.pyfunc_model, model_folder, checkpoint, data_file)
            client.log_artifacts(run_id, str(model_folder), artifact_path)
        else:
            for file in (checkpoint, data_file):
                if file is not None:
                    client.log_artifact(run_id, str(file), artifact_path)
        # The artifact folder's own URI (a local path, or the server's artifact URI), as MLflow's docs resolve
        # runs:/ URIs, but with this store rather than MLflow's global tracking URI.
        source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"
        try:
            client.create_registered_model(self.model_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {
            **version_tags.metric_tags(trainer.callback_metrics),
            **version_tags.hparam_tags(pl_module.hparams),
            **self._trial_tags(),
            TAG_MONITOR: self.monitor, TAG_MONITOR_VALUE: repr(value), TAG_MODE: self.mode,
            TAG_GLOBAL_STEP: str(trainer.global_step), TAG_REGISTERED_ON: registered_on,
            TAG_CHECKPOINT_BYTES: str(checkpoint.stat().st_size), TAG_ARTIFACT_PATH: artifact_path,
            TAG_GIT_COMMIT: version_tags.git_commit(), **file_tags,
        }
        reason = get_stop_reason(trainer)
        if registered_on == "end" and reason is not None:
            tags.update(stop_reason_tags(reason))  # why the run ended: stop.source, stop.criterion, ...
        version = client.create_model_version(self.model_name, source, run_id=run_id, tags=tags)
        rank_zero_info(f"ModelRegistry registered {self.model_name!r} version {version.version} "
                       f"({self.monitor} = {value:.4g}, step {trainer.global_step}, on {registered_on})")
        self._move_alias(registry, version, value)
        return int(version.version)

    def _move_alias(self, registry: Registry, version: Any, value: float) -> None:
        if self.alias is None:
            return
        holder_number = registry.aliases(self.model_name).get(self.alias)
        if holder_number is not None:
            holder = registry.client.get_model_version(self.model_name, str(holder_number))
            comparable = holder.tags.get(TAG_MONITOR) == self.monitor and holder.tags.get(TAG_MODE) == self.mode
            if comparable and not is_better(value, monitor_value(holder), self.mode):
                rank_zero_info(f"ModelRegistry: {self.alias!r} stays on version {holder_number} ({self.monitor} = "
                               f"{monitor_value(holder):.4g}; version {version.version} has {value:.4g})")
                return
            if not comparable:
                rank_zero_warn(f"ModelRegistry: version {holder_number} holding {self.alias!r} was registered for "
                               f"{holder.tags.get(TAG_MONITOR)!r} ({holder.tags.get(TAG_MODE)}), not {self.monitor!r} "
                               f"({self.mode}); moving the alias without comparing")
        elif math.isnan(value):
            return  # a version without a finite metric never becomes the first champion
        registry.client.set_registered_model_alias(self.model_name, self.alias, version.version)
        rank_zero_info(f"ModelRegistry moved {self.alias!r} to version {version.version}")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "last_registered_step": self.last_registered_step,
                "registered_versions": list(self.registered_versions)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = float(state_dict.get("best_score", self.best_score))
        self.last_registered_step = state_dict.get("last_registered_step")
        self.registered_versions = [int(v) for v in state_dict.get("registered_versions", [])]
