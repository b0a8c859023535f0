"""The names that cross packages: what a training job, the sweeper, the registry, ``watch`` and the report agree on.

Each literal is written here once. The writer and every reader import it from here, so a rename cannot leave one
side behind.

- **Trial identity in a job's config**: the sweeper sets ``trial.study_name``, ``trial.storage``,
  ``trial.number`` and ``trial.artifact_dir`` on every job it launches; callbacks take them through their configs'
  interpolations, and the job uploads its media to the artifact store there.
- **Trial user attributes**: the job records its run in its Optuna trial; the sweeper's results file and the
  sweep report read them back.
- **Tags naming a trial**: the job's MLflow run and every model version it registers carry the same two tags, so
  one filter finds a trial's run or models.
"""

from __future__ import annotations

# --- the job config node the sweeper fills in (``++trial.number=3``)
TRIAL_CONFIG_NODE = "trial"
TRIAL_CONFIG_STUDY_NAME = "study_name"
TRIAL_CONFIG_STORAGE = "storage"
TRIAL_CONFIG_NUMBER = "number"
TRIAL_CONFIG_ARTIFACT_DIR = "artifact_dir"  # the folder of the study's optuna.artifacts store (optuna-dashboard's)

# --- Optuna trial user attributes
ATTR_MLFLOW_RUN_ID = "mlflow_run_id"  # the trial's MLflow run: the join key from Optuna to MLflow
ATTR_MLFLOW_TRACKING_URI = "mlflow_tracking_uri"  # the store of that run (left out when the URI holds a password)
ATTR_OUTPUT_DIR = "output_dir"  # the trial's run folder (checkpoints, media)
ATTR_BEST_CHECKPOINT = "best_checkpoint"
ATTR_LAST_CHECKPOINT = "last_checkpoint"
ATTR_GLOBAL_STEP = "global_step"  # steps trained: what pruning saved is max_steps minus this
ATTR_MAX_STEPS = "max_steps"
ATTR_METRICS = "metrics"  # {name: value}: every metric the job logged, as it ended (the report shows them)
ATTR_ERROR = "error"  # why a trial failed
ATTR_INTERRUPTED = "interrupted"  # a trial a killed sweep left RUNNING, failed on resume; not counted in n_trials
ATTR_REQUEUED_FROM = "requeued_from"  # the trial whose parameters a requeued trial runs again
ATTR_NOT_RUN = "not_run"  # why a trial was given back unrun (asked past n_trials by a racing worker); not counted
ATTR_DEFAULTS = "defaults"  # True on the trial that runs the run's own configured values: the baseline of a sweep
ATTR_WARM_STARTED_FROM = "warm_started_from"  # {study, trial}: a trial copied from an earlier study, not run here
# {name: value}: the constraints the job returned (feasible when every value is <= 0), by name. Optuna keeps only
# their values, as a list in trial system attr "constraints" (what best_trial, samplers and optuna-dashboard read).
ATTR_CONSTRAINTS = "constraints"

# --- tags on MLflow runs and on registered model versions
TAG_STUDY = "optuna.study"
TAG_TRIAL = "optuna.trial"
TAG_BEST_TRIAL = "optuna.best_trial"  # on a sweep's report run

# --- tags on an MLflow run that a callback stopped (tuner_callbacks.stop_reason writes them, watch reads them)
TAG_STOP_SOURCE = "stop.source"  # early_stopping, pruning, ...
TAG_STOP_CRITERION = "stop.criterion"
TAG_STOP_MESSAGE = "stop.message"
TAG_STOP_STEP = "stop.step"
# Set by AlignmentGuard on each recovery; watch shows the count.
TAG_RECOVERIES = "alignment_guard.recoveries"
TAG_LAST_RECOVERY = "alignment_guard.last"


def recorded_tracking_uri(trials: object) -> str | None:
    """The MLflow store the trials recorded (the most recent trial's that did), or None: what a sweep's report and
    registry use when not told another."""
    for trial in reversed(list(trials)):  # type: ignore[call-overload]
        uri = trial.user_attrs.get(ATTR_MLFLOW_TRACKING_URI)
        if uri:
            return str(uri)
    return None


def trial_tags(study_name: object, trial_number: object) -> dict[str, str]:
    """The tags that name a trial, for its MLflow run and its registered versions; empty outside a sweep."""
    if study_name is None or trial_number is None:
        return {}
    return {TAG_STUDY: str(study_name), TAG_TRIAL: str(trial_number)}
