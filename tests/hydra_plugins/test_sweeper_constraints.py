"""Jobs that return an ObjectiveResult: the sweeper records its constraints on the trial (Optuna's list and the
names), the best trial is the best feasible one in the results file, the registry, the stop rules and the summary
alert, a study with no feasible trial ends cleanly saying why, and optuna-dashboard sees the constraints. Real
SQLite studies; the jobs are scripted (tests/hydra_plugins/scripted_sweep), no training."""

from __future__ import annotations

import logging
import math

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._impl import _send_summary_alert
from hydra_plugins.smart_optuna_sweeper._stopping import StopRules
from tests.helpers.mlflow_stores import fresh_mlflow_store
from tests.hydra_plugins.scripted_sweep import load, scripted_sweeper
from tuner_callbacks.contract import ATTR_CONSTRAINTS, ATTR_ERROR, TAG_STUDY, TAG_TRIAL
from tuner_callbacks.objective_result import ObjectiveResult

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = optuna.distributions.FloatDistribution(0.0, 1.0)

# Trial number -> (value, gate_stop_rate constraint, duration_ratio constraint): trial 1 has the best value but its
# model never stops on its gate; trial 2 is the best that meets both conditions.
PLAN = {0: (2.0, -0.03, -0.10), 1: (0.5, 0.30, -0.05), 2: (1.0, -0.01, 0.0)}
NONE_FEASIBLE = {0: (2.0, 0.10, -0.1), 1: (0.5, 0.30, 0.2), 2: (1.0, 0.05, -0.1)}


def result_of(plan):
    def value_of(number, _):
        value, gate, duration = plan[number]
        return ObjectiveResult(values=(value,), constraints={"gate_stop_rate": gate, "duration_ratio": duration})
    return value_of


class Recorded(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.text = ""

    def emit(self, record):
        self.text += record.getMessage() + "\n"


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """The sweep of PLAN, once for the module: its folder and what the sweeper logged."""
    folder = tmp_path_factory.mktemp("planned")
    recorded, sweeper_log = Recorded(), logging.getLogger("hydra_plugins.smart_optuna_sweeper")
    level, sweeper_log.level = sweeper_log.level, logging.INFO
    sweeper_log.addHandler(recorded)
    try:
        scripted_sweeper(folder, result_of(PLAN), n_trials=3).sweep([])
    finally:
        sweeper_log.removeHandler(recorded)
        sweeper_log.setLevel(level)
    return folder, recorded.text


def test_constraints_are_recorded_as_optunas_list_and_by_name(planned):
    study = load(planned[0])
    for trial in study.trials:
        _, gate, duration = PLAN[trial.number]
        assert trial.state == TrialState.COMPLETE
        assert trial.system_attrs["constraints"] == [gate, duration]  # the order the job returned them in
        assert trial.constraints == {"0": gate, "1": duration}  # once each: not also set with set_constraint
        assert trial.user_attrs[ATTR_CONSTRAINTS] == {"gate_stop_rate": gate, "duration_ratio": duration}


def test_the_best_trial_is_the_best_feasible_one_everywhere(planned):
    folder, logged = planned
    study = load(folder)
    assert min(t.value for t in study.trials) == 0.5  # trial 1's, infeasible
    assert study.best_trial.number == 2
    results = OmegaConf.load(folder / "sweep" / "optimization_results.yaml")
    assert results.best_value == 1.0 and results.best_trial.number == 2
    assert results.best_trial.constraints == {"gate_stop_rate": -0.01, "duration_ratio": 0.0}
    assert results.best_trial.feasible is True
    assert results.infeasible == 1 and list(results.infeasible_trials) == [1]
    assert "no_best" not in results
    # Trial 0 ran the configured values: the gain is the best feasible trial's over it.
    assert results.defaults_trial == {"number": 0, "state": "COMPLETE", "value": 2.0, "feasible": True,
                                      "constraints": {"gate_stop_rate": -0.03, "duration_ratio": -0.1}}
    assert results.gain_over_defaults == {"absolute": -1.0, "relative": -0.5}
    assert "Trial 1: COMPLETE [0.5] (infeasible: violates gate_stop_rate)" in logged
    assert "(1 COMPLETE but infeasible: they violate a constraint)" in logged


def test_the_gain_says_when_the_configured_values_are_infeasible(tmp_path):
    plan = {0: (0.2, 0.4, 0.0), 1: (0.5, -0.1, -0.1), 2: (1.0, -0.1, -0.1)}
    scripted_sweeper(tmp_path, result_of(plan), n_trials=3).sweep([])
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_trial.number == 1 and results.defaults_trial.feasible is False
    assert results.gain_over_defaults == {"absolute": 0.3, "relative": pytest.approx(1.5),
                                          "defaults_violated": ["gate_stop_rate"]}


def test_with_no_feasible_trial_the_results_and_the_alert_say_why(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with caplog.at_level(logging.INFO):
        scripted_sweeper(tmp_path, result_of(NONE_FEASIBLE), n_trials=3, alerts={}).sweep([])
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    with pytest.raises(ValueError, match="No feasible trials"):
        study.best_trial  # noqa: B018 (Optuna's behaviour the sweeper works around)
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_params is None and results.best_value is None and "best_trial" not in results
    assert results.no_best.startswith("none of the 3 completed trials is feasible")
    assert "gate_stop_rate in 3, duration_ratio in 1" in results.no_best
    assert "gain_over_defaults" not in results and results.infeasible == 3
    assert "No best trial: none of the 3 completed trials is feasible" in caplog.text
    assert "infeasible: 3 completed trials violate a constraint" in caplog.text  # the summary alert, in the log
    assert "no best trial: none of the 3 completed trials is feasible" in caplog.text


def test_the_summary_alert_names_the_best_feasible_trial(planned, caplog, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with caplog.at_level(logging.INFO):
        _send_summary_alert({}, load(planned[0]), {"COMPLETE": 3}, 10.0)
    assert "best objective: 1 (trial 2)" in caplog.text and "infeasible: 1 completed trial violates" in caplog.text


def register_trial_versions(tmp_path_factory, tmp_path, numbers):
    """A fresh MLflow store with a registered model ``tts`` holding one version per trial number (tagged as the
    sweep's jobs tag theirs), ``champion`` on the first."""
    from mlflow import MlflowClient

    (tmp_path / "mlflow").mkdir()
    uri = fresh_mlflow_store(tmp_path_factory, tmp_path / "mlflow")
    client = MlflowClient(uri)
    client.create_registered_model("tts")
    versions = {number: client.create_model_version("tts", source=str(tmp_path / f"model{number}"),
                                                    tags={TAG_STUDY: "search", TAG_TRIAL: str(number)}).version
                for number in numbers}
    client.set_registered_model_alias("tts", "champion", versions[numbers[0]])
    return uri, client, versions


@pytest.mark.parametrize("plan, champion", [(PLAN, 2), (NONE_FEASIBLE, 0)])
def test_the_champion_goes_to_the_best_feasible_trial_and_stays_put_when_none_is(plan, champion, tmp_path,
                                                                                 tmp_path_factory, caplog):
    uri, client, versions = register_trial_versions(tmp_path_factory, tmp_path, [0, 1, 2])
    with caplog.at_level(logging.INFO):
        scripted_sweeper(tmp_path, result_of(plan), n_trials=3, registry_model="tts", registry_alias="champion",
                         tracking_uri=uri).sweep([])
    assert client.get_model_version_by_alias("tts", "champion").version == versions[champion]
    if plan is PLAN:
        assert f"Registry: tts@champion -> version {versions[2]} (trial 2)" in caplog.text
    else:
        assert "Registry: tts@champion not moved: none of the 3 completed trials is feasible" in caplog.text


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_a_non_finite_constraint_fails_the_trial_naming_it(value, tmp_path):
    def value_of(number, _):
        return ObjectiveResult(values=(1.0,), constraints={"gate_stop_rate": -0.1, "duration_ratio": value})

    scripted_sweeper(tmp_path, value_of, n_trials=1, max_failure_rate=1.0).sweep([])
    (trial,) = load(tmp_path).trials
    assert trial.state == TrialState.FAIL
    assert f"duration_ratio={value}" in trial.user_attrs[ATTR_ERROR]
    assert "gate_stop_rate" not in trial.user_attrs[ATTR_ERROR]
    assert trial.constraints == {} and ATTR_CONSTRAINTS not in trial.user_attrs


def test_a_plain_float_still_makes_an_unconstrained_trial(tmp_path):
    scripted_sweeper(tmp_path, lambda number, _: 1.0 + number, n_trials=2).sweep([])
    study = load(tmp_path)
    assert [(t.state, t.value) for t in study.trials] == [(TrialState.COMPLETE, 1.0), (TrialState.COMPLETE, 2.0)]
    assert all(t.constraints == {} and ATTR_CONSTRAINTS not in t.user_attrs for t in study.trials)
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_trial.number == 0 and "constraints" not in results.best_trial
    assert "infeasible" not in results and "no_best" not in results


@pytest.mark.parametrize("result, expected", [
    (ObjectiveResult(values=(0.5,), constraints={"a": 0.2, "b": -1.0}), (TrialState.COMPLETE, [0.5], None,
                                                                         {"a": 0.2, "b": -1.0})),
    (ObjectiveResult(values=(0.5,)), (TrialState.COMPLETE, [0.5], None, None)),  # no constraints: a plain value
    (ObjectiveResult(values=(0.5, 1.0), constraints={"a": 0.0}), (TrialState.FAIL, None, "2 values for 1", None)),
    (ObjectiveResult(values=(math.nan,), constraints={"a": 0.0}), (TrialState.FAIL, None, "not finite", None)),
    (ObjectiveResult(values=(0.5,), constraints={"a": math.inf}), (TrialState.FAIL, None, "a=inf", None)),
])
def test_an_objective_result_becomes_an_outcome(result, expected):
    from tests.hydra_plugins.test_sweeper_parts import make_impl

    state, values, error, constraints = make_impl()._outcome(JobReturn(status=JobStatus.COMPLETED,
                                                                        _return_value=result))
    assert (state, values, constraints) == (expected[0], expected[1], expected[3])
    assert (error is None) == (expected[2] is None) and (expected[2] is None or expected[2] in error)


@pytest.mark.parametrize("sampler, warned", [("random", True), ("cmaes", True), ("tpe", False), ("nsgaii", False)])
@pytest.mark.filterwarnings("ignore:Constraints have been set, but CmaEsSampler")
def test_a_sampler_that_ignores_constraints_is_warned_of_once(sampler, warned, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        scripted_sweeper(tmp_path, result_of(PLAN), f"hydra/sweeper/sampler={sampler}", n_trials=3).sweep([])
    messages = [r.getMessage() for r in caplog.records if "ignores them" in r.getMessage()]
    assert len(messages) == (1 if warned else 0)
    if warned:
        assert "objective.infeasible_penalty" in messages[0] and "gate_stop_rate, duration_ratio" in messages[0]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_pareto_front_holds_feasible_trials_only(tmp_path):
    plan = {0: ((2.0, 2.0), 0.0), 1: ((0.1, 0.1), 0.5), 2: ((1.0, 3.0), -0.1), 3: ((3.0, 1.0), -0.1)}

    def value_of(number, _):
        values, gate = plan[number]
        return ObjectiveResult(values=values, constraints={"gate_stop_rate": gate})

    scripted_sweeper(tmp_path, value_of, n_trials=4, direction=["minimize", "minimize"],
                     metric_names=None).sweep([])
    study = load(tmp_path)
    assert sorted(t.number for t in study.best_trials) == [0, 2, 3]  # trial 1 dominates all, but is infeasible
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert [s.number for s in results.solutions] == [0, 2, 3]
    assert all(s.feasible for s in results.solutions) and list(results.infeasible_trials) == [1]


def test_a_warm_start_keeps_the_copied_trials_constraints(planned, tmp_path):
    source = {"storage": f"sqlite:///{planned[0] / 'sweep' / 'optuna.db'}", "study_name": "search"}
    scripted_sweeper(tmp_path, lambda number, _: 5.0, n_trials=1, warm_start_from=source).sweep([])
    study = load(tmp_path)
    copied = {t.user_attrs["warm_started_from"]["trial"]: t for t in study.trials
              if "warm_started_from" in t.user_attrs}
    assert copied[1].value == 0.5 and copied[1].constraints == {"0": 0.30, "1": -0.05}
    assert (study.best_trial.number, study.best_trial.value) == (copied[2].number, 1.0)  # not copied trial 1


def constrained_study(outcomes):
    """A study of ``(value, constraint)`` trials, in order."""
    study = optuna.create_study()
    for value, constraint in outcomes:
        study.add_trial(optuna.trial.create_trial(value=value, params={"x": 0.5}, distributions={"x": X},
                                                  system_attrs={"constraints": [constraint]}))
    return study


def test_stop_rules_judge_feasible_trials_only():
    target = StopRules.from_config({"target": 0.5}, ["minimize"])
    assert target.reason(constrained_study([(1.0, 0.0), (0.1, 0.3)]), 1.0) is None  # reached, but infeasible
    assert "trial 2 reached 0.4" in target.reason(constrained_study([(1.0, 0.0), (0.1, 0.3), (0.4, -0.2)]), 1.0)
    stalled = StopRules.from_config({"no_improvement": {"trials": 2}}, ["minimize"])
    # The last two trials beat 1.0 by far, but only one of them is feasible, and that one by 0.5: no stop.
    assert stalled.reason(constrained_study([(1.0, 0.0), (0.1, 0.3), (0.5, -0.1)]), 1.0) is None
    # Only the infeasible one "improved": the window did not improve on the best feasible value.
    assert "did not improve on the best value 1" in stalled.reason(
        constrained_study([(1.0, 0.0), (0.1, 0.3), (1.5, -0.1)]), 1.0)


def test_optuna_dashboard_sees_the_constraints_list(planned):
    serializer = pytest.importorskip("optuna_dashboard._serializer")  # the `dashboard` extra (and `dev`)
    study = load(planned[0])
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    shown = [serializer.serialize_frozen_trial(study._study_id, t, system_attrs) for t in study.trials]
    assert [s["constraints"] for s in shown] == [list(PLAN[n][1:]) for n in range(3)]
