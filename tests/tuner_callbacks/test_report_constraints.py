"""The sweep report of a study whose trials carry constraints (as the sweeper records an ObjectiveResult's): the
trials table shows them and marks infeasible trials, the summary counts those and names the best feasible trial,
the gain over the defaults says when the defaults are infeasible, a study with no feasible trial still builds and
says why, and the summary alert says the same."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers.mlflow_stores import fresh_mlflow_store
from tests.helpers.report_studies import SPACE, Sections
from tuner_callbacks.alerts import sweep_summary_alert
from tuner_callbacks.report import build_report, log_report
from tuner_callbacks.report.data import best_trials, gain_over_defaults, pruning_savings, trial_rows
from tuner_callbacks.report.feasibility import no_best_reason, trial_constraints, violated

optuna.logging.set_verbosity(optuna.logging.WARNING)
NAMES = ("gate_stop_rate", "duration_ratio")


def constrained(number, value, constraints, **user_attrs):
    """A COMPLETE trial as the sweeper leaves one whose job returned ``constraints`` ({name: value})."""
    return optuna.trial.create_trial(
        value=value, params={"lr": 1e-3 * (number + 1), "batch_size": 8 + 8 * number}, distributions=SPACE,
        system_attrs={"constraints": list(constraints.values())},
        user_attrs={"constraints": dict(constraints), **user_attrs})


def study_of(tmp_path, trials, name="constrained"):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=storage)
    for trial in trials:
        study.add_trial(trial)
    return study, storage


def report_of(tmp_path, storage, name="constrained"):
    return Sections(build_report(storage, name, tmp_path / "report.html", log_to_mlflow=False).read_text("utf-8"))


@pytest.fixture
def mixed(tmp_path):
    """Trial 0 runs the defaults (feasible), trial 1 has the best value but never stops on its gate, trial 2 is the
    best feasible one, trial 3 was pruned."""
    study, storage = study_of(tmp_path, [
        constrained(0, 2.0, {"gate_stop_rate": -0.03, "duration_ratio": -0.1}, defaults=True),
        constrained(1, 0.5, {"gate_stop_rate": 0.3, "duration_ratio": -0.05}),
        constrained(2, 1.0, {"gate_stop_rate": -0.01, "duration_ratio": 0.0}),
        optuna.trial.create_trial(state=TrialState.PRUNED, params={"lr": 1e-3, "batch_size": 8},
                                  distributions=SPACE, intermediate_values={100: 3.0}),
    ])
    return study, storage


def test_the_trials_table_shows_each_trials_constraints_and_marks_the_infeasible_one(mixed, tmp_path):
    found = report_of(tmp_path, mixed[1]).found
    rows = {cells[0]: (css, cells) for css, cells in found["trials"]["rows"]}
    css, cells = rows["1"]
    assert css == "COMPLETE infeasible" and cells[1] == "COMPLETE (infeasible)"
    assert cells[3] == "gate_stop_rate=0.3 (violated), duration_ratio=-0.05"
    assert cells[-1] == "infeasible: violates gate_stop_rate"
    css, cells = rows["2"]
    assert css == "COMPLETE" and cells[1] == "COMPLETE" and cells[3] == "gate_stop_rate=-0.01, duration_ratio=0"
    assert rows["3"][1][1] == "PRUNED" and rows["3"][1][3] == "-"
    assert "constraints (feasible when <= 0)" in found["trials"]["text"]


def test_the_summary_counts_infeasible_trials_and_names_the_best_feasible_one(mixed, tmp_path):
    found = report_of(tmp_path, mixed[1]).found
    summary = found["summary"]
    (_, best_row), = summary["rows"]
    assert best_row[:2] == ["2", "1"]  # trial 2, value 1: not trial 1's 0.5
    assert "1 of the 3 completed trials is infeasible (they violate a constraint: trials [1])" in summary["text"]
    assert ("Gain over the configured values: best 1 (trial 2) vs 2 for the configured values (trial 0): -1 "
            "(-50.0%).") in summary["text"]
    assert "Trial 2" in found["media"]["text"]  # the best trial's media are the feasible one's


def test_the_gain_says_when_the_configured_values_are_infeasible(tmp_path):
    study, storage = study_of(tmp_path, [
        constrained(0, 0.2, {"gate_stop_rate": 0.4, "duration_ratio": 0.1}, defaults=True),
        constrained(1, 0.5, {"gate_stop_rate": -0.1, "duration_ratio": -0.1}),
    ])
    gain = gain_over_defaults(study)
    assert (gain.best_trial, gain.absolute, gain.defaults_violated) == (1, 0.3, ("gate_stop_rate", "duration_ratio"))
    assert gain.describe().endswith("; the configured values are infeasible (they violate gate_stop_rate, "
                                    "duration_ratio)")
    assert gain.describe() in report_of(tmp_path, storage).found["summary"]["text"]


@pytest.fixture
def none_feasible(tmp_path):
    return study_of(tmp_path, [
        constrained(0, 2.0, {"gate_stop_rate": 0.1, "duration_ratio": -0.1}, defaults=True),
        constrained(1, 0.5, {"gate_stop_rate": 0.3, "duration_ratio": 0.2}),
    ])


def test_with_no_feasible_trial_the_report_builds_and_says_why(none_feasible, tmp_path):
    study, storage = none_feasible
    assert best_trials(study) == [] and gain_over_defaults(study) is None
    reason = no_best_reason(study)
    assert reason.startswith("none of the 2 completed trials is feasible: each violates a constraint "
                             "(gate_stop_rate in 2, duration_ratio in 1)")
    parsed = report_of(tmp_path, storage)
    assert parsed.order[0] == "summary" and "media" in parsed.order
    summary = parsed.found["summary"]
    assert not summary["rows"] and f"No best trial: {reason}." in summary["text"]
    assert "2 of the 2 completed trials are infeasible" in summary["text"]
    assert f"No best trial to show: {reason}." in parsed.found["media"]["text"]
    assert [cells[1] for _, cells in parsed.found["trials"]["rows"]] == ["COMPLETE (infeasible)"] * 2


def test_with_no_feasible_trial_the_mlflow_run_gets_no_best_value(tmp_path, tmp_path_factory):
    from mlflow import MlflowClient

    uri = fresh_mlflow_store(tmp_path_factory, tmp_path)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("train", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment_id).info.run_id  # the trials' runs' experiment is the report's
    study, _ = study_of(tmp_path, [constrained(0, 2.0, {"gate_stop_rate": 0.1}, mlflow_run_id=run_id),
                                   constrained(1, 0.5, {"gate_stop_rate": 0.3})])
    path = tmp_path / "report.html"
    path.write_text("<html></html>")
    report_run = log_report(client, path, study, pruning_savings(study.trials))
    metrics = client.get_run(report_run).data.metrics
    assert metrics["sweep/complete"] == 2 and metrics["sweep/infeasible"] == 2 and "sweep/best_value" not in metrics
    assert "optuna.best_trial" not in client.get_run(report_run).data.tags


def test_names_come_from_the_user_attribute_and_optunas_keys_without_it():
    named = constrained(0, 1.0, {"gate_stop_rate": 0.2, "duration_ratio": -0.1})
    assert trial_constraints(named) == {"gate_stop_rate": 0.2, "duration_ratio": -0.1}
    assert violated(named) == ["gate_stop_rate"]
    # A study of Optuna's own constraints_func (the list alone) or set_constraint (a key per name).
    listed = optuna.trial.create_trial(value=1.0, system_attrs={"constraints": [0.5, -1.0]})
    assert trial_constraints(listed) == {"0": 0.5, "1": -1.0} and violated(listed) == ["0"]
    keyed = optuna.trial.create_trial(value=1.0, constraints={"memory_gb": 2.0})
    assert trial_constraints(keyed) == {"memory_gb": 2.0} and violated(keyed) == ["memory_gb"]


def test_an_unconstrained_study_has_no_constraints_column(tmp_path):
    study, storage = study_of(tmp_path, [optuna.trial.create_trial(value=1.0, params={"lr": 1e-3, "batch_size": 8},
                                                                   distributions=SPACE)])
    rows = trial_rows(study.trials)
    assert (rows[0].constraints, rows[0].feasible) == ({}, None)
    found = report_of(tmp_path, storage).found
    assert "constraints" not in found["trials"]["text"] and "infeasible" not in found["summary"]["text"]


def test_the_summary_alert_counts_infeasible_trials_and_says_why_there_is_no_best():
    alert = sweep_summary_alert("tts", {"COMPLETE": 2}, infeasible=2, no_best="none of the 2 completed trials is "
                                "feasible")
    assert alert.lines == ("trials: 2 (2 complete)", "infeasible: 2 completed trials violate a constraint",
                           "no best trial: none of the 2 completed trials is feasible")
    one = sweep_summary_alert("tts", {"COMPLETE": 3}, 0.4, metric="val/loss", best_trial=2, infeasible=1)
    assert one.lines == ("trials: 3 (3 complete)", "infeasible: 1 completed trial violates a constraint",
                         "best val/loss: 0.4 (trial 2)")
