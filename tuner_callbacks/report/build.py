"""The sweep report: one self-contained HTML file about an Optuna study, written at the end of every sweep and on
demand with ``python -m tuner_callbacks.report --storage URL --study NAME``.

Sections: summary (with how many completed trials violate a constraint), optimization history, parameter
importances, parallel coordinates, slice plots, Pareto front (multi-objective studies), a table of trials (each
trial's constraints; infeasible ones marked), the metrics each trial logged (whatever they are), the training saved
by pruning (with learning curves), and the best (feasible) trial's alignment plot, mel plot and audio sample. Images
and audio are embedded as data URIs. The file is also logged to MLflow as ``report/<file name>`` of a run named
``sweep-<study>`` (tags ``optuna.study`` and ``smart_tuner.report``) in the experiment of the study's trial runs;
building the report again logs to the same run.

Example:
    >>> build_report("sqlite:///outputs/optuna.db", "tacotron2-search", Path("outputs/sweep/report.html"))
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_callbacks import contract
from tuner_callbacks.atomic_file import write_text_atomically
from tuner_callbacks.mlflow_utils import redact_url, resolve_tracking_uri
from tuner_callbacks.report import plots
from tuner_callbacks.report.data import (
    GIVEN_BACK,
    INTERRUPTED,
    RUN_ID,
    PruningSavings,
    best_trials,
    format_duration,
    gain_over_defaults,
    metrics_table,
    objective_names,
    pruning_savings,
    recorded_metrics,
    shown_state,
    trial_rows,
)
from tuner_callbacks.report.feasibility import infeasible_trials, no_best_reason
from tuner_callbacks.report.html import Section, audio, image, note, page, paragraph, table
from tuner_callbacks.report.media import find_media
from tuner_callbacks.watch.store import (
    HTTP_FAIL_FAST_ENV,
    StoreUnavailableError,
    connect,
    local_store_path,
)

if TYPE_CHECKING:
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

REPORT_TAG = "smart_tuner.report"  # marks the run holding a study's report, so a rebuild reuses it
_MEDIA_CAPTIONS = {"alignment": "alignment (teacher-forced)", "inference_alignment": "alignment (free-running)",
                   "mel": "mel spectrogram, target vs predicted"}


def load_study(storage: str, study_name: str) -> optuna.Study:
    """The study, without creating a storage file or a study that is not there (Optuna would create both).

    ``storage`` is any URL :func:`~tuner_callbacks.optuna_storage.open_storage` takes: SQLAlchemy URLs and
    ``journal:<file>``.
    """
    import optuna

    from tuner_callbacks.optuna_storage import JOURNAL_PREFIX, open_storage

    if storage.startswith(JOURNAL_PREFIX):
        path = Path(storage.removeprefix(JOURNAL_PREFIX))
    else:
        path = local_store_path(storage) if storage.startswith("sqlite:") else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"No Optuna storage at {path} (storage {redact_url(storage)!r}): the file does "
                                "not exist")
    opened = open_storage(storage)
    names = optuna.study.get_all_study_names(storage=opened)
    if study_name not in names:
        raise LookupError(f"No study {study_name!r} in {redact_url(storage)}; studies there: {names or 'none'}")
    return optuna.load_study(study_name=study_name, storage=opened)


def _values(values: tuple[float, ...] | None, count: int) -> list[str]:
    return [f"{v:.6g}" for v in values] if values else ["-"] * count


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _summary(study: optuna.Study, storage: str, best: list[FrozenTrial]) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = Counter(shown_state(trial) for trial in trials)
    names = objective_names(study)
    directions = ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True))
    lines = [paragraph(f"Storage {redact_url(storage)}; objective(s): {directions}; {len(trials)} trials: "
                       + (", ".join(f"{n} {s.lower().replace('_', ' ')}" for s, n in sorted(counts.items()))
                          or "none") + ".")]
    infeasible = infeasible_trials(trials)
    if infeasible:
        complete = counts.get("COMPLETE", 0)
        verb = "is" if len(infeasible) == 1 else "are"
        lines.append(paragraph(f"{len(infeasible)} of the {complete} completed trials {verb} infeasible (they violate "
                               f"a constraint: trials {[t.number for t in infeasible]}); the best trial is chosen "
                               "among the feasible ones."))
    if best:
        label = "Best trial" if len(names) == 1 else "Pareto-optimal trials"
        rows = [[t.number, *_values(tuple(t.values), len(names)), _params(t.params), t.user_attrs.get(RUN_ID, "-")]
                for t in best]
        lines.append(f"<h3>{label}</h3>" + table(["trial", *names, "parameters", "MLflow run"], rows))
        gain = gain_over_defaults(study)
        if gain is not None:
            lines.append(paragraph(f"Gain over the configured values: {gain.describe()}."))
    else:
        lines.append(note(f"No best trial: {no_best_reason(study) or 'no trial has completed'}."))
    return "".join(lines)


def _trials(study: optuna.Study) -> str:
    names = objective_names(study)
    rows = trial_rows(study.get_trials(deepcopy=False))
    constrained = any(r.constraints for r in rows)  # the column only for studies whose jobs returned constraints
    cells = [[r.number, r.state + (" (infeasible)" if r.feasible is False else ""), *_values(r.values, len(names)),
              *([_constraints(r.constraints)] if constrained else []), _params(r.params),
              format_duration(r.duration_s),
              "-" if r.steps is None else (f"{r.steps} / {r.max_steps}" if r.max_steps else str(r.steps)),
              r.run_id or "-", r.note] for r in rows]
    headers = ["trial", "state", *names, *(["constraints (feasible when <= 0)"] if constrained else []),
               "parameters", "duration", "steps / max_steps", "MLflow run", "note"]
    return table(headers, cells,
                 numeric=[True, False] + [True] * len(names) + [False] * constrained + [False, True, True],
                 row_classes=[r.state + (" infeasible" if r.feasible is False else "") for r in rows],
                 cell_classes=["", "state"])


def _constraints(constraints: dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.4g}" + (" (violated)" if value > 0 else "")
                     for name, value in constraints.items()) or "-"


def _trial_metrics(trials: Sequence[FrozenTrial], client: MlflowClient | None) -> dict[int, dict[str, float]]:
    """Each finished trial's final metrics: those its job recorded in the trial, else its MLflow run's latest."""
    metrics = {}
    for trial in trials:
        if not trial.state.is_finished():
            continue
        values = recorded_metrics(trial)
        run_id = trial.user_attrs.get(RUN_ID)
        if not values and client is not None and run_id:
            try:
                values = dict(client.get_run(run_id).data.metrics)
            except Exception as error:  # a deleted run or a store hiccup costs this trial's column only
                log.warning("Metrics of trial %s not read from MLflow run %s: %s", trial.number, run_id, error)
        metrics[trial.number] = values
    return metrics


def _metrics(trials: Sequence[FrozenTrial], client: MlflowClient | None) -> str:
    numbers, rows = metrics_table(_trial_metrics(trials, client))
    if not numbers:
        return note("No trial recorded metrics (the job's user attribute 'metrics', or an MLflow run).")
    body = table(["metric", *(f"trial {number}" for number in numbers)], rows,
                 numeric=[False] + [True] * len(numbers))
    return (paragraph("The last value of every metric each finished trial logged, one column per trial.")
            + f'<div class="wide">{body}</div>')


def _pruning(study: optuna.Study, savings: PruningSavings) -> str:
    if not savings.pruned:
        body = paragraph("No trial was pruned: pruning saved no training.")
    else:
        fraction = "-" if savings.fraction is None else f"{savings.fraction:.1%}"
        body = table(["pruned trials", "counted", "steps saved", "steps trained (all trials)",
                      "fraction of steps saved", "training time saved (estimate)"],
                     [[savings.pruned, len(savings.counted), savings.steps_saved, savings.steps_trained, fraction,
                       format_duration(savings.seconds_saved)]], numeric=[True] * 6)
        if savings.uncounted:
            body += note(f"Trials {savings.uncounted} were pruned but lack global_step or max_steps, so they are "
                         f"not counted.")
    body += note("How it is counted: steps saved = the sum over pruned trials of (max_steps - steps trained), "
                 "assuming each would otherwise have trained its whole budget (an upper bound: early stopping might "
                 "have ended some sooner). The fraction is of the steps all trials would have trained without "
                 "pruning (steps trained + steps saved). Time saved converts each pruned trial's saved steps at "
                 "its own speed (duration / steps trained).")
    return body + plots.learning_curves(study)


def _media(study: optuna.Study, best: list[FrozenTrial], client: MlflowClient | None) -> str:
    if not best:
        return note(f"No best trial to show: {no_best_reason(study) or 'no trial has completed'}.")
    trial = best[0]
    intro = f"Trial {trial.number}" + (" (the first Pareto-optimal trial)" if len(best) > 1 else "")
    media = find_media(trial, client)
    if not media.files:
        return note(f"{intro}: no validation media found: {'; '.join(media.missing)}.")
    parts = [paragraph(f"{intro}, validation at step {media.step}, from {media.source}.")]
    for key, caption in _MEDIA_CAPTIONS.items():
        if key in media.files:
            parts.append(image(media.files[key], f"{caption}, step {media.step}"))
    if "audio" in media.files:
        parts.append(audio(media.files["audio"], f"Griffin-Lim sample, step {media.step}"))
    else:
        parts.append(note("No audio sample at this step (ValidationMedia griffin_lim_iters=0?)."))
    return "".join(parts)


def _mlflow_client(tracking_uri: str | None) -> MlflowClient | None:
    try:
        return connect(resolve_tracking_uri(tracking_uri))
    except StoreUnavailableError as error:
        log.warning("Sweep report: MLflow not used: %s", error)
        return None


def log_report(client: MlflowClient, path: Path, study: optuna.Study, savings: PruningSavings) -> str | None:
    """Logs the report to the ``sweep-<study>`` run (created on first use) in the experiment of the study's trial
    runs; returns the run id, or None when no trial names an MLflow run to find the experiment by."""
    experiment_id = None
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(RUN_ID):
            try:
                experiment_id = client.get_run(trial.user_attrs[RUN_ID]).info.experiment_id
                break
            except Exception as error:  # a deleted run: try the next trial's
                log.debug("Trial %d's run is unreadable: %s", trial.number, error)
    if experiment_id is None:
        log.warning("Sweep report not logged to MLflow: no trial of %r has a readable %r", study.study_name, RUN_ID)
        return None
    name = study.study_name
    existing = [] if "'" in name else client.search_runs(
        [experiment_id], filter_string=f"tags.`{REPORT_TAG}` = 'true' and tags.`{contract.TAG_STUDY}` = '{name}'",
        max_results=1)
    run_id = existing[0].info.run_id if existing else client.create_run(
        experiment_id, run_name=f"sweep-{name}", tags={REPORT_TAG: "true", contract.TAG_STUDY: name}).info.run_id
    client.log_artifact(run_id, str(path), artifact_path="report")
    trials = study.get_trials(deepcopy=False)
    states = [shown_state(t) for t in trials]
    metrics = {"sweep/trials": len(states), "sweep/complete": states.count("COMPLETE"),
               "sweep/infeasible": len(infeasible_trials(trials)),
               "sweep/pruned": states.count("PRUNED"), "sweep/failed": states.count("FAIL"),
               "sweep/given_back": states.count(GIVEN_BACK), "sweep/interrupted": states.count(INTERRUPTED),
               "sweep/steps_saved_by_pruning": savings.steps_saved}
    best = best_trials(study) if len(study.directions) == 1 else []
    if best:  # the best feasible trial; none when every completed trial violates a constraint
        metrics["sweep/best_value"] = best[0].value
        client.set_tag(run_id, contract.TAG_BEST_TRIAL, str(best[0].number))
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    client.set_terminated(run_id)
    return run_id


def build_report(storage: str, study_name: str, out_path: Path | None = None, tracking_uri: str | None = None,
                 log_to_mlflow: bool = True) -> Path:
    """Writes the HTML report of a study and returns its path.

    Args:
        storage: the Optuna storage URL, e.g. ``sqlite:///outputs/sweep/optuna.db`` or ``journal:<file>``.
        study_name: the study in it.
        out_path: where to write; default ``./report-<study>.html``. The sweeper passes ``<sweep_dir>/report.html``.
        tracking_uri: the MLflow store for media of trials whose run folder is gone and for logging the report;
            default the store the trials recorded (``mlflow_tracking_uri``), else ``MLFLOW_TRACKING_URI``, else
            ``sqlite:///outputs/mlflow.db``. A store that is missing only costs those two (with a warning).
        log_to_mlflow: log the file to the study's ``sweep-<study>`` run (see :func:`log_report`).

    Raises:
        FileNotFoundError: a SQLite or journal storage file that does not exist (none is created).
        LookupError: no study of that name in the storage.
        ValueError: ``storage`` is not a storage URL.
    """
    study = load_study(storage, study_name)
    out_path = Path(out_path) if out_path else Path(f"report-{re.sub(r'[^A-Za-z0-9._-]+', '_', study_name)}.html")
    trials = study.get_trials(deepcopy=False)
    needs_mlflow = log_to_mlflow or any(t.user_attrs.get(RUN_ID) for t in trials)
    client = _mlflow_client(tracking_uri or contract.recorded_tracking_uri(trials)) if needs_mlflow else None
    best = best_trials(study)
    savings = pruning_savings(trials)
    names = objective_names(study)
    pareto_rows = [[t.number, *_values(tuple(t.values), len(names)), _params(t.params)] for t in best]
    sections = [
        Section("summary", "Summary", _summary(study, storage, best)),
        Section("history", "Optimization history", plots.history(study)),
        Section("importances", "Parameter importances", plots.importances(study)),
        Section("parallel", "Parallel coordinates", plots.parallel_coordinates(study)),
        Section("slices", "Slice plots", plots.slices(study)),
        Section("pareto", "Pareto front", plots.pareto_front(study, pareto_rows if len(names) > 1 else [])),
        Section("trials", "Trials", _trials(study)),
        Section("metrics", "Metrics", _metrics(trials, client)),
        Section("pruning", "Compute saved by pruning", _pruning(study, savings)),
        Section("media", "Best trial: alignment, mel and audio", _media(study, best, client)),
    ]
    subtitle = f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by tuner_callbacks.report."
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(out_path, page(f"Sweep report: {study_name}", subtitle, sections))
    log.info("Sweep report written to %s", out_path)
    if log_to_mlflow and client is not None:
        try:
            run_id = log_report(client, out_path, study, savings)
            if run_id:
                log.info("Sweep report logged to MLflow run %s", run_id)
        except Exception as error:  # the file is written; a store hiccup must not lose the sweep's ending
            log.warning("Sweep report not logged to MLflow: %s", error)
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: prints the report's path; exit code 2 when the storage or the study is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m tuner_callbacks.report",
        description="Write the HTML report of an Optuna study (plots, trials, pruning savings, best trial's media) "
                    "and log it to MLflow.")
    parser.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///outputs/optuna.db")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--out", type=Path, default=None, help="HTML file to write (default: ./report-<study>.html)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///outputs/mlflow.db)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report to MLflow")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for key, value in HTTP_FAIL_FAST_ENV.items():
        os.environ.setdefault(key, value)
    # The CLI owns its process: draw off-screen whatever backend the user's matplotlibrc names.
    import matplotlib

    matplotlib.use("Agg")
    try:
        path = build_report(args.storage, args.study, args.out, args.tracking_uri, log_to_mlflow=not args.no_mlflow)
    except (FileNotFoundError, LookupError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    print(path)
    return 0
