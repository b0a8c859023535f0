"""Config schema of the ``smart_optuna`` sweeper, registered in Hydra's ConfigStore.

Search spaces are written as in hydra-optuna-sweeper (``params:`` with ``choice``/``range``/``interval``/
``tag(log, ...)``), so their configs port by changing ``override /hydra/sweeper: optuna`` to
``smart_optuna``. Samplers and pruners are config groups (``hydra/sweeper/sampler=random``) or any
``_target_``.

Every pruner takes ``n_warmup_steps``: no trial is pruned before that global step. Median, percentile,
learning_curve (and any pruner whose class has the argument) get it as their own; hyperband raises its
``min_resource`` to it (Optuna's samplers treat a HyperbandPruner specially, so it is not wrapped); nop ignores it;
the others are wrapped in ``tuner_callbacks.WarmupPruner``, which asks them only from that step on.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

# OmegaConf reads these annotations at runtime: Optional[...] rather than "X | None".
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from hydra_plugins.smart_optuna_sweeper._errors import sweeper_keys
from tuner_callbacks import options as check

DIRECTIONS = ("minimize", "maximize")


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
    n_warmup_steps: int = 0  # applied by the sweeper (WarmupPruner): no decision before this global step


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    n_warmup_steps: int = 0  # the sweeper raises min_resource to it: the first rung is no earlier


@dataclass
class WilcoxonPrunerConf:
    # Prunes a trial whose values are, by a Wilcoxon signed-rank test, worse than the best trial's at the same steps
    # (TrialPruning reports by global step, so every trial reports at the same steps when val_check_interval is
    # the same).
    _target_: str = "optuna.pruners.WilcoxonPruner"
    p_threshold: float = 0.1  # the larger, the more aggressive
    n_startup_steps: int = 2  # reported values (not global steps) a trial shares with the best before any test
    n_warmup_steps: int = 0  # applied by the sweeper (WarmupPruner): no decision before this global step


@dataclass
class PatientPrunerConf:
    # Prunes only when its wrapped pruner says so and the trial has not improved (by more than min_delta) over its
    # last `patience` reports. The wrapped pruner is a config group of its own:
    # hydra/sweeper/pruner/wrapped_pruner=median|percentile|successive_halving|hyperband|wilcoxon (median by
    # default; `~hydra/sweeper/pruner/wrapped_pruner` for none: then patience alone decides).
    _target_: str = "optuna.pruners.PatientPruner"
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"wrapped_pruner": "median"}])
    wrapped_pruner: Any = None
    patience: int = 3  # reports without improvement tolerated
    min_delta: float = 0.0  # smaller improvements do not count
    n_warmup_steps: int = 0  # applied by the sweeper (WarmupPruner around the patient pruner)


@dataclass
class LearningCurvePrunerConf:
    # Fits each trial's curve (power law, exponential) and extrapolates it to max_resource; prunes only when the trial
    # is very unlikely to beat the best feasible COMPLETE trial, with the uncertainty measured on those trials' own
    # curves (tuner_callbacks.LearningCurvePruner). A late bloomer heading below the best is kept.
    _target_: str = "tuner_callbacks.learning_curve_pruner.LearningCurvePruner"
    max_resource: Any = "auto"  # the step a trial's budget ends at (${trainer.max_steps}); auto: longest COMPLETE trial
    prune_probability: float = 0.05  # prune when the chance of beating the best is below this
    n_startup_trials: int = 5  # COMPLETE trials before any pruning: their curves calibrate the extrapolation
    n_warmup_steps: int = 0  # global steps of a trial before it can be pruned
    min_points: int = 5  # reports a trial needs before its curve is fitted (at least 4)
    models: list[str] = field(default_factory=lambda: ["power_law", "exponential"])  # pruned only if all agree


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"
    n_warmup_steps: int = 0  # ignored: nothing is pruned anyway (kept so configs that set a warm-up still compose)


@dataclass
class SmartOptunaSweeperConf:
    _target_: str = "hydra_plugins.smart_optuna_sweeper.smart_optuna_sweeper.SmartOptunaSweeper"
    # The sweeper builds its sampler and pruner itself: it maps the pruner's n_warmup_steps and records the pruner
    # in the study for the jobs (hydra_plugins/smart_optuna_sweeper/_pruners.py).
    _recursive_: bool = False
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
    # Stop the study (every worker) once more of its trials failed than this fraction of n_trials; trials given back
    # unrun, interrupted by a dead worker or copied from another study are not counted.
    max_failure_rate: float = 0.5
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

    # --- where the search starts, and when it stops (each is checked, and fails naming the key, before any trial)
    # Enqueue the run's own values of the searched parameters (what `python train.py` would train) as the first trial,
    # marked with the user attribute `defaults`; optimization_results.yaml and the report show the gain over it. A
    # parameter the config has no value for, or whose value lies outside its distribution, is left to the sampler
    # (with a warning naming it). Skipped when a trial of the study already carries those values (a resumed sweep).
    enqueue_defaults: bool = True
    # Known-good configurations to run next, each a {param: value} dict (e.g. [{model.learning_rate: 1e-3}]); the
    # parameters left out are sampled. An unknown parameter or a value outside its distribution is an error. Skipped
    # when a trial already carries them.
    enqueue_trials: Optional[list[Any]] = None
    # {storage: URL, study_name: NAME}: copy that study's COMPLETE trials whose params fit this search space into this
    # study once (marked with the user attribute `warm_started_from`), values and intermediate values kept, so the
    # sampler starts from what is known. Copied trials were not run here: they do not count towards n_trials.
    warm_start_from: Any = None
    # Stop launching trials (running ones finish) when any rule fires; checked after each finished trial:
    #   no_improvement: {trials: K, min_delta: X}  the last K finished trials did not beat the best before them by
    #                                              more than X (single objective)
    #   target: V                                  a trial reached V or better, in the study's direction
    #   max_seconds: S                             S seconds since the study's run started (its first worker)
    # Decided on the study's records, for every worker of the study at once: the first worker whose rule fires records
    # the reason in the study (system attribute smart_tuner:stop); every worker then stops at its next trial and
    # logs it, writes it to optimization_results.yaml (stopped_early) and sends it in the summary alert.
    stop_when: Any = None


def directions_of(direction: Any) -> list[str]:
    """``direction`` as a list: one per objective."""
    if isinstance(direction, str):
        return [direction]
    return list(direction) if isinstance(direction, Sequence) else [direction]


def check_options(options: SmartOptunaSweeperConf) -> SmartOptunaSweeperConf:
    """``options`` when each option is valid; else SweepError naming ``hydra.sweeper.<key>``, its value and what is
    allowed, before any trial. A new option gets its check here (with ``tuner_callbacks.options``); the sampler,
    pruner, ``params``, ``warm_start_from`` and ``stop_when`` are checked where they are built."""
    with sweeper_keys():
        directions = directions_of(options.direction)
        check.check("direction", options.direction, bool(directions) and all(d in DIRECTIONS for d in directions),
                    "'minimize', 'maximize' or a list of them")
        check.integer("n_trials", options.n_trials, low=1)
        check.integer("n_jobs", options.n_jobs, low=1)
        check.choice("launch_mode", options.launch_mode, ("auto", "batch", "continuous"))
        check.number("max_failure_rate", options.max_failure_rate, low=0, high=1)
        check.choice("stale_trials", options.stale_trials, ("fail", "requeue"))
        check.number("heartbeat_interval_s", options.heartbeat_interval_s, low=0, low_open=True)
        check.number("stale_after_s", options.stale_after_s, low=0, low_open=True)
        check.boolean("report", options.report)
        check.text("registry_alias", options.registry_alias)
        names = options.metric_names
        check.check("metric_names", names, not names or len(names) == len(directions),
                    f"one name per direction ({len(directions)})")
        check.boolean("enqueue_defaults", options.enqueue_defaults)
        trials = options.enqueue_trials
        check.check("enqueue_trials", trials, trials is None or OmegaConf.is_list(trials) or isinstance(trials, list),
                    "a list of {param: value} dicts")
    return options


_STORE = ConfigStore.instance()
_STORE.store(group="hydra/sweeper", name="smart_optuna", node=SmartOptunaSweeperConf, provider="smart_tuner")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "cmaes": CmaEsSamplerConf,
                     "gp": GPSamplerConf, "nsgaii": NSGAIISamplerConf, "grid": GridSamplerConf}.items():
    _STORE.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="smart_tuner")
_WRAPPABLE = {"median": MedianPrunerConf, "percentile": PercentilePrunerConf,
              "successive_halving": SuccessiveHalvingPrunerConf, "hyperband": HyperbandPrunerConf,
              "wilcoxon": WilcoxonPrunerConf}
for _name, _node in {**_WRAPPABLE, "patient": PatientPrunerConf, "learning_curve": LearningCurvePrunerConf,
                     "nop": NopPrunerConf}.items():
    _STORE.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="smart_tuner")
for _name, _node in _WRAPPABLE.items():  # what hydra/sweeper/pruner=patient wraps
    _STORE.store(group="hydra/sweeper/pruner/wrapped_pruner", name=_name, node=_node, provider="smart_tuner")
