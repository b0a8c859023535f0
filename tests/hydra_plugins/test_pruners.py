"""Pruner configs -> Optuna pruners with a warm-up, and the record jobs rebuild them from (wrapped pruners too); the
learning-curve pruner as a config-group option, through a sweep."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._impl import SweepError
from hydra_plugins.smart_optuna_sweeper._pruners import build_pruner, pruner_record
from tests.hydra_plugins.scripted_sweep import load, scripted_sweeper, search_config
from tuner_callbacks import LearningCurvePruner, WarmupPruner
from tuner_callbacks.optuna_storage import load_study_with_pruner, load_trial, record_pruner

optuna.logging.set_verbosity(optuna.logging.WARNING)
MEDIAN = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}


def finished_trials(study, curves):
    for curve in curves:
        trial = study.ask()
        for step, value in curve.items():
            trial.report(value, step)
        study.tell(trial, list(curve.values())[-1])


def decisions(pruner, curve):
    """Whether ``pruner`` prunes a trial at each step of ``curve``, after two good finished trials."""
    study = optuna.create_study(pruner=pruner)
    finished_trials(study, [{100: 1.0, 200: 0.5, 300: 0.2}] * 2)
    trial = study.ask()
    answers = []
    for step, value in curve.items():
        trial.report(value, step)
        answers.append(trial.should_prune())
    return answers


def test_the_warmup_pruner_asks_its_pruner_only_from_its_step_on():
    bad = {100: 9.0, 200: 9.0, 300: 9.0}
    assert decisions(build_pruner(MEDIAN), bad) == [True, True, True]
    assert decisions(WarmupPruner(build_pruner(MEDIAN), n_warmup_steps=200), bad) == [False, True, True]
    assert decisions(WarmupPruner(build_pruner(MEDIAN), n_warmup_steps=200), {100: 9.0, 200: 0.4}) == [False, False]


def test_patient_pruner_wrapping_median_with_a_warmup_round_trips_through_the_study(tmp_path):
    config = {"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": MEDIAN, "patience": 0, "min_delta": 0.0,
              "n_warmup_steps": 200}
    record = pruner_record(config)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage, pruner=build_pruner(record))
    record_pruner(study, record)
    finished_trials(study, [{100: 1.0, 200: 0.5, 300: 0.2}] * 2)
    number = study.ask().number
    job_trial = load_trial("s", storage, number)  # what TrialPruning in a job uses
    pruner = job_trial.study.pruner
    assert type(pruner) is WarmupPruner and pruner.n_warmup_steps == 200
    assert type(pruner.wrapped_pruner) is optuna.pruners.PatientPruner
    assert type(pruner.wrapped_pruner._wrapped_pruner) is optuna.pruners.MedianPruner
    answers = []
    for step, value in ((100, 9.0), (200, 9.5), (300, 9.9)):  # worse than the median, and getting worse
        job_trial.report(value, step)
        answers.append(job_trial.should_prune())
    assert answers == [False, True, True]


@pytest.mark.parametrize("config, expected", [
    ({**MEDIAN, "n_warmup_steps": 50}, {**MEDIAN, "n_warmup_steps": 50}),  # Optuna's own argument
    ({"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 1, "n_warmup_steps": 50},
     {"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 50}),
    ({"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 80, "n_warmup_steps": 50},
     {"_target_": "optuna.pruners.HyperbandPruner", "min_resource": 80}),
    ({"_target_": "optuna.pruners.NopPruner", "n_warmup_steps": 50}, {"_target_": "optuna.pruners.NopPruner"}),
    ({"_target_": "optuna.pruners.WilcoxonPruner", "n_warmup_steps": 0}, {"_target_": "optuna.pruners.WilcoxonPruner"}),
    ({"_target_": "optuna.pruners.WilcoxonPruner", "p_threshold": 0.2, "n_warmup_steps": 50},
     {"_target_": "tuner_callbacks.warmup_pruner.WarmupPruner", "n_warmup_steps": 50,
      "wrapped_pruner": {"_target_": "optuna.pruners.WilcoxonPruner", "p_threshold": 0.2}}),
    ({"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": None, "patience": 2},
     {"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": None, "patience": 2}),
])
def test_the_warmup_is_applied_the_way_each_pruner_takes_it(config, expected):
    assert pruner_record(config) == expected
    assert isinstance(build_pruner(expected), optuna.pruners.BasePruner)


@pytest.mark.parametrize("config, named", [
    ({"n_warmup_steps": 3}, "hydra.sweeper.pruner needs a _target_"),
    ({"_target_": "optuna.pruners.NoSuchPruner"}, "hydra.sweeper.pruner._target_='optuna.pruners.NoSuchPruner'"),
    ({"_target_": "optuna.pruners.WilcoxonPruner", "n_warmup_steps": -1},
     r"hydra.sweeper.pruner.n_warmup_steps must be an integer >= 0, got -1"),
    ({"_target_": "optuna.pruners.PatientPruner", "patience": 1,
      "wrapped_pruner": {"_target_": "optuna.pruners.SuccessiveHalvingPruner", "n_warmup_steps": "soon"}},
     "hydra.sweeper.pruner.wrapped_pruner.n_warmup_steps must be an integer"),
])
def test_a_bad_pruner_config_is_refused_naming_its_key(config, named):
    with pytest.raises(SweepError, match=named):
        pruner_record(config)


def test_optuna_refusing_an_argument_is_named_too():
    with pytest.raises(SweepError, match="hydra.sweeper.pruner: cannot build the pruner 'optuna.pruners.Patient"):
        build_pruner(pruner_record({"_target_": "optuna.pruners.PatientPruner", "wrapped_pruner": None,
                                    "patience": -1}))


def test_the_warmup_pruner_keeps_its_old_name_for_code_that_imports_it():
    from hydra_plugins.smart_optuna_sweeper import _pruners

    assert _pruners.WarmupPruner is WarmupPruner


def curve_settings(pruner):
    return (pruner.max_resource, pruner.prune_probability, pruner.n_startup_trials, pruner.n_warmup_steps,
            pruner.min_points, pruner.models)


def test_learning_curve_is_a_pruner_option_that_jobs_rebuild_with_its_settings(tmp_path):
    node = search_config("hydra/sweeper/pruner=learning_curve", "hydra.sweeper.pruner.max_resource=600",
                         "hydra.sweeper.pruner.prune_probability=0.01", "hydra.sweeper.pruner.models=[power_law]",
                         ).hydra.sweeper.pruner
    record = pruner_record(node)
    # search.yaml's warm-up (the guided-attention hold) is the pruner's own argument: it is not wrapped.
    assert record["_target_"] == "tuner_callbacks.learning_curve_pruner.LearningCurvePruner"
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage, pruner=build_pruner(record))
    record_pruner(study, record)
    rebuilt = load_study_with_pruner("s", storage).pruner  # what a job's TrialPruning gets
    assert type(rebuilt) is type(study.pruner) is LearningCurvePruner
    assert curve_settings(rebuilt) == curve_settings(study.pruner) == (600, 0.01, 5, 300, 5, ("power_law",))


def test_a_sweep_with_the_learning_curve_pruner_keeps_a_late_bloomer_and_prunes_a_laggard(tmp_path):
    def curve(a, b, c):  # levels off at a, ends at a + b at step 600; reported every 50 steps
        return {step: a + b * (step / 600) ** -c for step in range(50, 601, 50)}

    ordinary = [curve(1.0 + 0.1 * n, 0.3, 0.5) for n in range(5)]  # trials 0-4 finish at 1.3..1.7
    curves = [*ordinary, curve(0.3, 0.6, 1.0), curve(2.0, 0.3, 0.5)]  # a late bloomer ends at 0.9, a laggard 2.3

    def job(number, overrides):  # what TrialPruning does in a job, without the training
        trial = load_trial(overrides["trial.study_name"], overrides["trial.storage"].strip("'"), number)
        for step, value in curves[number].items():
            trial.report(value, step)
            if trial.should_prune():
                return optuna.TrialPruned(f"at step {step}")
        return value

    scripted_sweeper(tmp_path, job, "hydra/sweeper/pruner=learning_curve", n_trials=7).sweep([])
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6 + [TrialState.PRUNED]
    assert study.best_trial.number == 5
    assert max(study.trials[6].intermediate_values) == 300  # search.yaml's warm-up: no decision before step 300
