"""The sweep loop: ask Optuna for trials, launch them through Hydra's launcher, tell Optuna how each ended."""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper import _budget, _seeding
from hydra_plugins.smart_optuna_sweeper._ask_lock import ask_lock_path, asking_alone, sqlite_database
from hydra_plugins.smart_optuna_sweeper._errors import SweepError
from hydra_plugins.smart_optuna_sweeper._liveness import Heartbeat, claim, is_own, recover_stale_trials
from hydra_plugins.smart_optuna_sweeper._pruners import build_pruner, pruner_record
from hydra_plugins.smart_optuna_sweeper._results import promote_best_trial_model, write_results
from hydra_plugins.smart_optuna_sweeper._search_space import SearchSpace, SearchSpaceError, encode_value
from hydra_plugins.smart_optuna_sweeper._secrets import guard_secrets
from hydra_plugins.smart_optuna_sweeper._stopping import StopRules
from hydra_plugins.smart_optuna_sweeper._study_run import RULE_FAILURES, StudyRun
from hydra_plugins.smart_optuna_sweeper._trial_seeds import PerTrialSeed
from hydra_plugins.smart_optuna_sweeper.config import SmartOptunaSweeperConf, check_options, directions_of
from tuner_callbacks import contract
from tuner_callbacks.mlflow_utils import redact_url
from tuner_callbacks.objective_result import ObjectiveResult
from tuner_callbacks.optuna_storage import JOURNAL_PREFIX, masked_for_jobs, open_storage, record_pruner
from tuner_callbacks.report.data import best_trials, shown_state
from tuner_callbacks.report.feasibility import infeasible_trials, no_best_reason

log = logging.getLogger(__name__)

ARTIFACT_FOLDER = "artifacts"  # trials' media for optuna-dashboard, beside the study's file
SEARCH_SPACE_ATTR = "smart_tuner:search_space"  # study system attr: the distributions the study was created for
# Samplers whose values for a trial are random draws: a seed per trial keeps workers and resumed runs from replaying
# one sequence (_trial_seeds).
_DRAWING_SAMPLERS = {f"optuna.samplers.{name}" for name in ("TPESampler", "RandomSampler", "CmaEsSampler",
                                                             "GPSampler", "NSGAIISampler", "NSGAIIISampler")}
_WAIT = object()  # _next_trial: no room now, but other workers' trials are running (one may free a place)
# Optuna's trial system attr for constraints as a list (optuna.study._constrained_optimization._CONSTRAINTS_KEY).
OPTUNA_CONSTRAINTS_ATTR = "constraints"
# Samplers that read trials' constraints (Optuna 5.1: they rank infeasible trials below feasible ones); the others
# (random, grid, CMA-ES, QMC, brute force) search as if there were none.
_CONSTRAINED_SAMPLERS = (optuna.samplers.TPESampler, optuna.samplers.NSGAIISampler, optuna.samplers.NSGAIIISampler,
                         optuna.samplers.GPSampler)

__all__ = ["SmartOptunaSweeperImpl", "SweepError"]


class Outcome(NamedTuple):
    """How a job ended, as the study is told: its state, values, error, and the constraints it returned."""

    state: TrialState
    values: list[float] | None = None
    error: str | None = None
    constraints: dict[str, float] | None = None  # {name: value}, feasible when <= 0; None when it returned none


class SmartOptunaSweeperImpl(Sweeper):
    """The sweep of :class:`~hydra_plugins.smart_optuna_sweeper.config.SmartOptunaSweeperConf` ``options``: its
    fields are read from ``self.options``; what is built from them (sampler, pruner, stop rules) is built here."""

    def __init__(self, options: SmartOptunaSweeperConf) -> None:
        self.options = check_options(options)
        self.directions = directions_of(options.direction)
        # Built here, not by Hydra (_recursive_: false): the grid sampler partially (its grid comes from the search
        # space), the pruner with its warm-up mapped, and recorded for the jobs as built.
        sampler, pruner = options.sampler, options.pruner
        self.sampler_cfg = _instantiated(sampler)
        self.sampler_node = _plain(sampler) if OmegaConf.is_config(sampler) or isinstance(sampler, dict) else None
        self.pruner_record = None if isinstance(pruner, optuna.pruners.BasePruner) else pruner_record(pruner)
        self.pruner = pruner if self.pruner_record is None else build_pruner(self.pruner_record)
        # Plain copies: setup() masks the secrets of Hydra's config, which must not reach the values used here.
        self.enqueue_trials = _plain(options.enqueue_trials)
        self.warm_start_from = _seeding.check_warm_start(_plain(options.warm_start_from))
        self.stop_rules = StopRules.from_config(_plain(options.stop_when), self.directions)
        self.params = options.params or {}
        self.alerts = _plain(options.alerts)
        self.custom_search_space = get_method(options.custom_search_space) if options.custom_search_space else None
        self.n_trials = options.n_trials  # lowered to the grid's size for a grid sampler
        self.job_idx = 0
        self._started, self._stop_reason = time.monotonic(), None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        # Before the launcher is built or any job composed: jobs are composed from Hydra's record of the command
        # line, and each saves it in its .hydra/ folder.
        masked = guard_secrets(config)
        if masked:
            log.info("Masked in the sweep's saved config (the sweeper keeps them): %s", ", ".join(masked))
        # Hydra sets its HydraConfig per job, not before the sweep starts; the sweep folder (and the MLflow URI
        # read at the end) may use ${hydra:runtime.cwd}, as conf/paths/default.yaml does, and so may the launcher's
        # config (submitit's folder is under hydra.sweep.dir).
        HydraConfig.instance().set_config(config)
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(config.hydra.sweep.dir).absolute()

    # -- building blocks -------------------------------------------------------------------------------------

    def _storage_url(self) -> str:
        if self.options.storage:
            if self.options.storage.startswith(JOURNAL_PREFIX):  # jobs may run elsewhere: an absolute path
                path = Path(self.options.storage[len(JOURNAL_PREFIX):]).absolute()
                path.parent.mkdir(parents=True, exist_ok=True)
                return f"{JOURNAL_PREFIX}{path}"
            return self.options.storage
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.sweep_dir / 'optuna.db'}"

    def _artifact_dir(self, storage_url: str) -> Path:
        """Where jobs upload their trials' media (``optuna.artifacts``): beside the study's file, or in the sweep
        folder for a database server; ``optuna-dashboard <storage> --artifact-dir <this>`` shows them."""
        database = sqlite_database(storage_url)
        if database is not None:
            return database.parent / ARTIFACT_FOLDER
        journal = storage_url[len(JOURNAL_PREFIX):] if storage_url.startswith(JOURNAL_PREFIX) else ""
        if journal:
            return Path(journal).absolute().parent / ARTIFACT_FOLDER
        return self.sweep_dir / ARTIFACT_FOLDER

    def _sampler(self, space: SearchSpace) -> optuna.samplers.BaseSampler:
        """The configured sampler; a seeded one draws each trial's values from a seed of its own (_trial_seeds)."""
        grid = None
        if isinstance(self.sampler_cfg, functools.partial):  # a sampler built from the space: GridSampler
            grid = {name: _grid_values(name, d) for name, d in space.distributions.items()}
            size = math.prod(len(values) for values in grid.values())
            if self.n_trials > size:
                log.info("GridSampler: %d points, so n_trials %d -> %d", size, self.n_trials, size)
                self.n_trials = size
        seed = (self.sampler_node or {}).get("seed")
        if seed is None or self.sampler_node.get("_target_") not in _DRAWING_SAMPLERS:
            # Unseeded, or a sampler that walks a sequence of its own (a grid: its seed orders the points, and a
            # trial's point is stored as an index into that order), never replayed by a second process.
            return self.sampler_cfg if grid is None else self.sampler_cfg(search_space=grid)

        return PerTrialSeed(lambda trial_seed: _instantiated({**self.sampler_node, "seed": trial_seed}), seed)

    def _create_study(self, space: SearchSpace, storage_url: str) -> optuna.Study:
        study_name = self.options.study_name or self.sweep_dir.name
        shown = redact_url(storage_url)
        try:
            storage = open_storage(storage_url, shared=True)  # jobs run in this process reuse its pool
        except Exception as error:  # an unreachable server, a bad URL: at once, with the password masked
            raise SweepError(f"hydra.sweeper.storage={shown!r} cannot be opened: "
                             f"{redact_url(str(error))}") from None
        try:
            study = optuna.create_study(study_name=study_name, storage=storage, sampler=self._sampler(space),
                                        pruner=self.pruner, directions=self.directions, load_if_exists=True)
        except ValueError as error:  # e.g. an existing study with other directions
            raise SweepError(f"study {study_name!r} in {shown}: {redact_url(str(error))}") from error
        # Refuse an existing study of other directions or another search space before writing anything into it.
        if [d.name.lower() for d in study.directions] != self.directions:
            raise SweepError(f"study {study_name!r} in {shown} exists with directions "
                             f"{[d.name.lower() for d in study.directions]}, not {self.directions}: choose "
                             "another hydra.sweeper.study_name")
        recorded = _check_search_space(study, space, shown)
        if recorded is None:
            study._storage.set_study_system_attr(study._study_id, SEARCH_SPACE_ATTR, _space_record(space))
        if self.pruner_record is not None:  # jobs rebuild the pruner from it (TrialPruning)
            record_pruner(study, self.pruner_record)
        names = list(self.options.metric_names or [])
        if names and study.metric_names is None:
            with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna
                warnings.simplefilter("ignore")
                study.set_metric_names(names)
        return study

    def _trial_overrides(self, trial: optuna.Trial, space: SearchSpace, storage_url: str) -> list[str]:
        for name, distribution in space.distributions.items():
            trial._suggest(name, distribution)
        if self.custom_search_space is not None:
            self.custom_search_space(self.config, trial)
        return [*space.overrides(trial.params),
                f"++trial.study_name={encode_value(trial.study.study_name)}",
                f"++trial.storage={encode_value(masked_for_jobs(storage_url))}", f"++trial.number={trial.number}",
                f"++{contract.TRIAL_CONFIG_NODE}.{contract.TRIAL_CONFIG_ARTIFACT_DIR}={encode_value(str(self._artifact_dir(storage_url)))}"]

    # -- the loop --------------------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> list[Any]:
        params = [f"{key}={value}" for key, value in self.params.items()]
        try:
            space = SearchSpace.from_overrides([*params, *arguments])
        except SearchSpaceError as error:
            raise SweepError(f"hydra.sweeper.params: {error}") from error
        # Everything that can be refused is checked before the study is opened or written to.
        enqueued = _seeding.checked_trials(self.enqueue_trials, space.distributions)
        storage_url = self._storage_url()
        source = None
        if self.warm_start_from is not None:
            source = _seeding.load_source(*self.warm_start_from, self.directions,
                                          self.options.study_name or self.sweep_dir.name, storage_url)
        study = self._create_study(space, storage_url)
        self._ask_lock_path = ask_lock_path(storage_url)
        self._recover(study)
        self._seed(study, space, enqueued, source)
        done = _counted(study)
        sampler = study.sampler.sampler if isinstance(study.sampler, PerTrialSeed) else study.sampler
        log.info("Study %r in %s: %d of %d trials done; sampler %s%s, pruner %s, directions %s", study.study_name,
                 redact_url(storage_url), done, self.n_trials, type(sampler).__name__,
                 " (seeded per trial)" if sampler is not study.sampler else "", type(study.pruner).__name__,
                 self.directions)
        self._started = time.monotonic()
        self._returns, self._stop, self._stop_reason = [], None, None
        self._waiting_logged = self._constraints_warned = False
        # Stops are the study's, not this process's: every worker of the run stops at the same point.
        self._run = StudyRun.join(study, self.options.stale_after_s)
        if self._continuous():
            self._run_continuous(study, space, storage_url)
        else:
            self._run_batches(study, space, storage_url)
        self._finish(study, storage_url, time.monotonic() - self._started)
        if self._stop is not None and self._stop.get("rule") == RULE_FAILURES:
            raise SweepError(f"{self._stop['reason']}; the errors are in each trial's user attribute 'error' (study "
                             f"{study.study_name!r} in {redact_url(storage_url)})")
        return self._returns

    def _seed(self, study: optuna.Study, space: SearchSpace, enqueued: list[dict[str, Any]],
              source: optuna.Study | None) -> None:
        """The run's defaults, then ``enqueue_trials``, as the next trials to run (while n_trials leaves room for
        them), then the trials of ``warm_start_from``."""
        if _counted(study) < self.n_trials:
            if self.options.enqueue_defaults and space.distributions:
                defaults = _seeding.configured_values(self.config, space.distributions)
                if defaults:
                    _seeding.enqueue(study, defaults, {contract.ATTR_DEFAULTS: True}, "The run's configured values")
            for index, params in enumerate(enqueued):
                _seeding.enqueue(study, params, {}, f"hydra.sweeper.enqueue_trials[{index}]")
        if source is not None:
            _seeding.warm_start(study, source, space.distributions, extra_params=self.custom_search_space is not None)

    def _continuous(self) -> bool:
        """Whether each parallel slot may start its next trial on its own, as soon as its trial ends.

        Needs a launcher that runs jobs outside this process (joblib, submitit, ...): the basic launcher runs
        them here, one at a time, where concurrent jobs would share Hydra's global state.
        """
        if self.options.launch_mode == "auto":
            return self.options.n_jobs > 1 and type(self.launcher).__name__ != "BasicLauncher"
        return self.options.launch_mode == "continuous"

    def _decision(self, study: optuna.Study) -> tuple[str, str] | None:
        """``(rule, reason)`` when the study's records say its run should stop, else None."""
        failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if _budget.in_budget(t)]
        if len(failed) > self.options.max_failure_rate * self.n_trials:
            return RULE_FAILURES, (f"{len(failed)} of the study's trials failed, more than max_failure_rate="
                                   f"{self.options.max_failure_rate} of n_trials={self.n_trials}")
        reason = self.stop_rules.reason(study, self._run.seconds()) if self.stop_rules else None
        return (reason.split(":", 1)[0], reason) if reason else None

    def _adopt(self, stop: dict[str, Any]) -> None:
        self._stop, self._stop_reason = stop, str(stop.get("reason"))
        by = stop.get("by")
        log.info("Study-wide stop (%s%s): %s; no new trial starts (running ones finish)", stop.get("rule"),
                 f", decided by worker {by}" if by else "", self._stop_reason)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
        state, values, error, constraints = outcome
        if error:
            study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_ERROR, error)
            log.warning("Trial %d failed: %s", trial.number, error)
        if constraints:  # before tell: no reader (another worker's sampler, best_trial) sees it COMPLETE without them
            self._record_constraints(study, trial, constraints)
        try:
            study.tell(trial, state=state, values=values, skip_if_finished=True)
        except RuntimeError as stop:  # GridSampler calls study.stop() once every point ran, outside study.optimize
            if "Study.stop" not in str(stop):
                raise
        infeasible = [name for name, value in (constraints or {}).items() if value > 0]
        log.info("Trial %d: %s%s%s", trial.number, state.name, f" {values}" if values else "",
                 f" (infeasible: violates {', '.join(infeasible)})" if infeasible else "")
        self._returns.append(outcome)
        if self._stop is None:
            decision = self._decision(study)
            if decision is not None:
                self._adopt(self._run.record_stop(*decision))

    def _record_constraints(self, study: optuna.Study, trial: optuna.Trial, constraints: dict[str, float]) -> None:
        """Records the constraints on the trial: as Optuna's list (system attr ``constraints``: what
        ``FrozenTrial.constraints``, ``Study.best_trial``, the constrained samplers and optuna-dashboard read) and by
        name (user attr ``constraints``, for the report and people reading the study)."""
        try:
            # The list format of Optuna's own constraints_func path, not trial.set_constraint: optuna-dashboard 0.21
            # reads only the list, and Optuna reads both formats together, so setting both would count each
            # constraint twice (in the samplers' penalties too).
            study._storage.set_trial_system_attr(trial._trial_id, OPTUNA_CONSTRAINTS_ATTR, list(constraints.values()))
            study._storage.set_trial_user_attr(trial._trial_id, contract.ATTR_CONSTRAINTS, dict(constraints))
        except optuna.exceptions.UpdateFinishedTrialError:  # ended by another worker (stale): tell skips it too
            return
        sampler = study.sampler.sampler if isinstance(study.sampler, PerTrialSeed) else study.sampler
        if not self._constraints_warned and not isinstance(sampler, _CONSTRAINED_SAMPLERS):
            self._constraints_warned = True
            log.warning("Trials return constraints (%s) but sampler %s ignores them: it searches as if every trial "
                        "were feasible (TPE, NSGA-II, NSGA-III and GP samplers use them; the best trial is still the "
                        "best feasible one). Set objective.infeasible_penalty so that infeasible trials' values are "
                        "penalised for this sampler", ", ".join(constraints), type(sampler).__name__)

    def _stopping(self) -> bool:
        """Whether the study's run has stopped (recorded by any worker); checked before each trial is asked."""
        if self._stop is None:
            recorded = self._run.stop()
            if recorded is not None:
                self._adopt(recorded)
            elif self.stop_rules.max_seconds is not None and self._run.seconds() >= self.stop_rules.max_seconds:
                self._adopt(self._run.record_stop(*self._decision(self._run.study)))
        return self._stop is not None

    def _recover(self, study: optuna.Study) -> list[int]:
        """Fails (or re-queues) the trials dead workers left RUNNING."""
        return recover_stale_trials(study, self.options.stale_after_s,
                                    requeue=self.options.stale_trials == "requeue")

    def _poll_s(self) -> float:
        return max(0.1, min(self.options.heartbeat_interval_s, 10.0))

    def _next_trial(self, study: optuna.Study) -> Any:
        """The next trial to run, within n_trials across every worker of the study (_budget); ``_WAIT`` when
        there is no room but other workers' trials are running (one may fail or be re-queued); None when the study
        is done."""
        self._recover(study)
        while True:
            trials = study.get_trials(deepcopy=False)
            if not _budget.has_room(trials, self.n_trials):
                others = [t.number for t in trials if t.state == TrialState.RUNNING and not is_own(t)]
                if others and not self._waiting_logged:
                    log.info("n_trials=%d taken; waiting for trials %s of other workers to end (a dead worker's "
                             "trial is recovered)", self.n_trials, others)
                    self._waiting_logged = True
                return _WAIT if others else None
            with asking_alone(self._ask_lock_path):  # SQLite: two workers could pop one enqueued trial (_ask_lock)
                trial = study.ask()
            claim(study, [trial._trial_id])  # others see its owner at once, not only once it is launched
            trials = study.get_trials(deepcopy=False)
            refused = _budget.refusal(trials, trial.number, self.n_trials)
            stop = self._run.stop() if refused is None else None
            if stop is not None:  # another worker stopped the study between our check and this ask
                self._adopt(stop)
                refused = _budget.stopped(trials, trial.number, stop["reason"])
            if refused is None:
                return trial
            log.info("Trial %d given back unrun: %s", trial.number, refused.reason)
            _budget.give_back(study, next(t for t in trials if t.number == trial.number), refused)
            if self._stop is not None:
                return None

    def _run_batches(self, study: optuna.Study, space: SearchSpace, storage_url: str) -> None:
        """n_jobs trials at a time; the next batch starts when the whole batch has ended."""
        while not self._stopping():
            trials, next_one = [], None
            while len(trials) < self.options.n_jobs:
                next_one = self._next_trial(study)
                if next_one is None or next_one is _WAIT:
                    break
                trials.append(next_one)
            if not trials:
                if next_one is None:
                    return
                time.sleep(self._poll_s())
                continue
            overrides = [self._trial_overrides(trial, space, storage_url) for trial in trials]
            for trial, outcome in zip(trials, self._launch(study, trials, overrides), strict=True):
                self._tell(study, trial, outcome)

    def _run_continuous(self, study: optuna.Study, space: SearchSpace, storage_url: str) -> None:
        """n_jobs slots, each launching one trial at a time: a slot that frees starts the next trial at once."""
        lock = threading.Lock()  # guards the study's ask/tell bookkeeping and the counters

        def slot() -> None:
            while True:
                with lock:
                    if self._stopping():
                        return
                    trial = self._next_trial(study)
                    if trial is None or self._stop is not None:
                        return
                    if trial is not _WAIT:
                        overrides = self._trial_overrides(trial, space, storage_url)
                if trial is _WAIT:
                    time.sleep(self._poll_s())
                    continue
                (outcome,) = self._launch(study, [trial], [overrides])
                with lock:
                    self._tell(study, trial, outcome)

        with ThreadPoolExecutor(self.options.n_jobs, thread_name_prefix="smart-optuna-slot") as pool:
            for future in [pool.submit(slot) for _ in range(self.options.n_jobs)]:
                future.result()

    def _launch(self, study: optuna.Study, trials: Sequence[optuna.Trial], overrides: list[list[str]]
                ) -> list[Outcome]:
        job_idx, self.job_idx = self.job_idx, self.job_idx + len(trials)
        with Heartbeat(study, [t._trial_id for t in trials], self.options.heartbeat_interval_s,
                       on_beat=lambda: (self._recover(study), self._run.seen())):
            try:
                returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            except Exception as error:  # e.g. a joblib worker killed by the OOM killer takes the batch with it
                return [Outcome(TrialState.FAIL, error=f"launcher: {type(error).__name__}: {error}")] * len(trials)
        return [self._outcome(ret) for ret in returns]

    def _outcome(self, job_return: Any) -> Outcome:
        """The job's return: a number, a list of numbers (one per direction), or an ObjectiveResult (its values and
        named constraints); an exception it raised."""
        try:
            value = job_return.return_value
        except optuna.TrialPruned:
            return Outcome(TrialState.PRUNED)
        except Exception as error:
            return Outcome(TrialState.FAIL, error=f"{type(error).__name__}: {error}")
        constraints = None
        if isinstance(value, ObjectiveResult):
            value, constraints = value.values, dict(value.constraints) or None
        try:
            values = [float(v) for v in (value if isinstance(value, Sequence) and not isinstance(value, str)
                                         else [value])]
        except (TypeError, ValueError):
            return Outcome(TrialState.FAIL, error=f"the job returned {value!r}, not a number or a list of numbers")
        if len(values) != len(self.directions):
            return Outcome(TrialState.FAIL, error=f"the job returned {len(values)} values for "
                                                  f"{len(self.directions)} directions")
        if not all(math.isfinite(v) for v in values):
            return Outcome(TrialState.FAIL, error=f"the objective is not finite: {values}")
        bad = ", ".join(f"{name}={v}" for name, v in (constraints or {}).items() if not math.isfinite(v))
        if bad:
            return Outcome(TrialState.FAIL, error=f"a constraint is not finite: {bad} (constraints must be finite "
                                                  "numbers, feasible when <= 0)")
        return Outcome(TrialState.COMPLETE, values, None, constraints)

    def _finish(self, study: optuna.Study, storage_url: str, seconds: float) -> None:
        self._run.end_if_done()
        path = write_results(study, self.sweep_dir, redact_url(storage_url), stopped_early=self._stop_reason)
        # Given-back and interrupted trials apart from the failures (tuner_callbacks.report.data.shown_state)
        counts = Counter(shown_state(t) for t in study.get_trials(deepcopy=False))
        infeasible = len(infeasible_trials(study.get_trials(deepcopy=False)))
        log.info("Sweep of %s done in %.0f s: %s%s%s; results in %s", study.study_name, seconds, dict(counts),
                 f" ({infeasible} COMPLETE but infeasible: they violate a constraint)" if infeasible else "",
                 f"; stopped early ({self._stop_reason})" if self._stop_reason else "", path)
        reason = no_best_reason(study)
        if reason and counts.get("COMPLETE"):
            log.warning("No best trial: %s", reason)
        if counts.get("WAITING"):
            log.info("%d enqueued trials were not run (n_trials reached or the sweep stopped): a later run with a "
                     "larger n_trials runs them", counts["WAITING"])
        HydraConfig.instance().set_config(self.config)  # the jobs left theirs behind
        tracking_uri = self.options.tracking_uri or contract.recorded_tracking_uri(study.get_trials(deepcopy=False))
        if self.options.registry_model:
            try:
                model, alias = self.options.registry_model, self.options.registry_alias
                version = promote_best_trial_model(study, model, alias, tracking_uri)
                if version is not None:
                    log.info("Registry: %s@%s -> version %d (trial %d)", model, alias, version,
                             best_trials(study)[0].number)
            except Exception as error:  # the study is safe; the alias can be moved by hand
                log.warning("Could not move the registry alias to the best trial's model: %s", error)
        running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        if self.options.report and running:
            # Each worker tells its trials before it looks: the last one to end finds none running, and writes it.
            log.info("Trials %s of other workers are running: the last worker to end writes the report", running)
        elif self.options.report:
            try:
                from tuner_callbacks.report import build_report

                build_report(storage_url, study.study_name, out_path=self.sweep_dir / "report.html",
                             tracking_uri=tracking_uri)
            except Exception as error:  # the study is safe in its storage; the report can be rebuilt
                log.warning("Could not write the sweep report: %s (rebuild it with python -m "
                            "tuner_callbacks.report --storage %s --study %s)", redact_url(str(error)),
                            redact_url(storage_url), study.study_name)
        if self.alerts is not None:
            _send_summary_alert(self.alerts, study, counts, seconds, self._stop_reason)


def _counted(study: optuna.Study) -> int:
    """Trials that count towards n_trials: every finished one except those a killed sweep left behind, those
    copied from another study (warm_start_from), which were not run here, and those given back unrun."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state.is_finished() and _budget.in_budget(t))


def _space_record(space: SearchSpace) -> dict[str, str]:
    return {name: optuna.distributions.distribution_to_json(d) for name, d in space.distributions.items()}


def _check_search_space(study: optuna.Study, space: SearchSpace, shown_storage: str) -> dict[str, str] | None:
    """The search space recorded in ``study`` (None for a new study); SweepError naming the study and the first
    parameter that differs when it, or a trial's distribution (a study of an older sweeper), is not ``space``."""
    recorded = study._storage.get_study_system_attrs(study._study_id).get(SEARCH_SPACE_ATTR)
    differences = []
    if recorded is not None:
        theirs = {name: optuna.distributions.json_to_distribution(d) for name, d in recorded.items()}
        for name in sorted(set(theirs) | set(space.distributions)):
            if theirs.get(name) != space.distributions.get(name):
                differences.append(f"{name}: {theirs.get(name, 'absent')} in the study, "
                                   f"{space.distributions.get(name, 'absent')} here")
    else:
        for trial in study.get_trials(deepcopy=False):
            if trial.user_attrs.get(contract.ATTR_WARM_STARTED_FROM):
                continue
            for name, distribution in trial.distributions.items():
                if name in space.distributions and distribution != space.distributions[name]:
                    differences.append(f"{name}: {distribution} in trial {trial.number}, "
                                       f"{space.distributions[name]} here")
            if differences:
                break
    if differences:
        raise SweepError(f"study {study.study_name!r} in {shown_storage} exists with another search space "
                         f"({'; '.join(differences[:3])}): nothing was written into it. Choose another "
                         "hydra.sweeper.study_name (hydra.sweeper.warm_start_from carries its trials over)")
    return recorded


def _plain(value: Any) -> Any:
    """A DictConfig/ListConfig option as plain dicts and lists (Hydra passes them unconverted)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _instantiated(sampler: Any) -> Any:
    """The sampler of a ``_target_`` config (a partial for the grid sampler), or the sampler given."""
    if OmegaConf.is_config(sampler) or isinstance(sampler, dict):
        try:
            return instantiate(sampler)
        except Exception as error:
            raise SweepError(f"hydra.sweeper.sampler: cannot build {sampler.get('_target_')!r}: {error}") from error
    return sampler


def _grid_values(name: str, distribution: optuna.distributions.BaseDistribution) -> list[Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution) and not distribution.log:
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution) and distribution.step is not None:
        count = int(round((distribution.high - distribution.low) / distribution.step)) + 1
        return [distribution.low + i * distribution.step for i in range(count)]
    raise SweepError(f"GridSampler needs discrete parameters (choice or range); {name} is {distribution}")


def _send_summary_alert(settings: dict[str, Any], study: optuna.Study, counts: Counter, seconds: float,
                        stopped_early: str | None = None) -> None:
    """The sweep summary through tuner_callbacks.alerts (Telegram with TELEGRAM_BOT_TOKEN set, else the log)."""
    try:
        from tuner_callbacks.alerts import build_dispatcher, sweep_summary_alert

        best = None
        if len(study.directions) == 1:
            best = next(iter(best_trials(study)), None)  # the best feasible trial
        dispatcher = build_dispatcher(**_plain(settings))
        dispatcher.send(sweep_summary_alert(
            study.study_name, dict(counts), best_value=best.value if best else None,
            best_params=best.params if best else None, metric=(study.metric_names or [None])[0],
            best_trial=best.number if best else None, duration_s=seconds, stopped_early=stopped_early,
            infeasible=len(infeasible_trials(study.get_trials(deepcopy=False))),
            no_best=no_best_reason(study) if counts.get("COMPLETE") else None))
        dispatcher.close(timeout_s=10.0)
    except Exception as error:  # an alert channel never fails a sweep
        log.warning("Could not send the sweep summary alert: %s", error)
