"""Config schema of the ``smart_optuna`` sweeper, registered in Hydra's ConfigStore.

Search spaces are written as in hydra-optuna-sweeper (``params:`` with ``choice``/``range``/``interval``/
``tag(log, ...)``), so their configs port by changing ``override /hydra/sweeper: optuna`` to
``smart_optuna``. Samplers and pruners are config groups (``hydra/sweeper/sampler=random``) or any
``_target_``.
"""

from dataclasses import dataclass, field
from typing import Any, Optional

# OmegaConf reads these annotations at runtime: Optional[...] rather than "X | None".
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    multivariate: bool = True  # models parameters jointly: better on Tacotron2's correlated lr/batch/weights
    constant_liar: bool = True  # parallel trials do not all sample the same promising point
    group: bool = False


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class CmaEsSamplerConf:
    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 1
    sigma0: Optional[float] = None


@dataclass
class GPSamplerConf:
    _target_: str = "optuna.samplers.GPSampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50
    mutation_prob: Optional[float] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GridSamplerConf:
    # The grid is built from `params` (every distribution must be discrete: choice or range).
    _target_: str = "optuna.samplers.GridSampler"
    _partial_: bool = True
    seed: Optional[int] = None


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 3  # complete trials before any pruning: a median of fewer is noise
    n_warmup_steps: int = 0  # global steps of a trial before it can be pruned
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConf:
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 2
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class SmartOptunaSweeperConf:
    _target_: str = "hydra_plugins.smart_optuna_sweeper.smart_optuna_sweeper.SmartOptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}])

    sampler: Any = MISSING
    pruner: Any = MISSING
    # "minimize" / "maximize", or a list of them for a multi-objective study (the job returns a tuple).
    direction: Any = "minimize"
    # null: sqlite:///<sweep dir>/optuna.db. Also any SQLAlchemy URL (postgresql://...) or journal:<file path>.
    storage: Optional[str] = None
    study_name: Optional[str] = None  # null: the sweep folder's name
    n_trials: int = 20  # trials in the study in all, counting those of earlier runs of the same command
    n_jobs: int = 1  # trials running at once (in parallel with launchers such as joblib)
    # continuous: each of n_jobs slots starts its next trial as soon as its trial ends (launchers running jobs in
    # other processes: joblib, submitit); batch: n_jobs trials at a time; auto: continuous unless the basic launcher.
    launch_mode: str = "auto"
    max_failure_rate: float = 0.5  # stop the sweep once more than this fraction of its trials failed
    params: Optional[dict[str, Any]] = None
    custom_search_space: Optional[str] = None  # "module.function(cfg, trial)" adding trial.suggest_* calls
    # A trial left RUNNING by a killed sweep: "fail" marks it FAIL; "requeue" also enqueues its params again.
    stale_trials: str = "fail"
    heartbeat_interval_s: float = 30.0  # how often a sweep marks its running trials as alive in the storage
    stale_after_s: float = 300.0  # a RUNNING trial unheard of for this long is stale (same host: a dead pid is)
    report: bool = True  # write report.html (tuner_callbacks.report) into the sweep folder at the end
    # The MLflow store of the trials' runs and models: the report's media and its run, the registry alias below.
    # null: the store the trials recorded (their mlflow_tracking_uri attribute), else MLFLOW_TRACKING_URI, else
    # sqlite:///outputs/mlflow.db.
    tracking_uri: Optional[str] = None
    # A registered model the trials register versions of: at the end, registry_alias moves to the version of the
    # study's best trial. null: no registry.
    registry_model: Optional[str] = None
    registry_alias: str = "champion"
    # Names of the study's values (one per direction), shown by the report and optuna-dashboard. null: unnamed.
    metric_names: Optional[list[str]] = None
    # {} or e.g. {min_level: info}: a sweep summary through tuner_callbacks.alerts (Telegram when TELEGRAM_BOT_TOKEN
    # and TELEGRAM_CHAT_ID are set, else the log); the keys are build_dispatcher's
    alerts: Optional[dict[str, Any]] = None


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="smart_optuna", node=SmartOptunaSweeperConf, provider="smart_tuner")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "cmaes": CmaEsSamplerConf,
                     "gp": GPSamplerConf, "nsgaii": NSGAIISamplerConf, "grid": GridSamplerConf}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="smart_tuner")
for _name, _node in {"median": MedianPrunerConf, "percentile": PercentilePrunerConf,
                     "successive_halving": SuccessiveHalvingPrunerConf, "hyperband": HyperbandPrunerConf,
                     "nop": NopPrunerConf}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="smart_tuner")
