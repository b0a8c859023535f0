"""stop_when: each rule on a real study, bad rules named before anything runs, and both sweep loops launching no
new trial once a rule fires (the reason in the log and in optimization_results.yaml)."""

from __future__ import annotations

import logging
import time

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._impl import SweepError
from hydra_plugins.smart_optuna_sweeper._stopping import StopRules
from tests.hydra_plugins.scripted_sweep import load, scripted_sweeper
from tuner_callbacks.contract import ATTR_WARM_STARTED_FROM

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = optuna.distributions.FloatDistribution(0.0, 1.0)


def study_of(outcomes, direction="minimize", copied=()):
    """A study whose trials ended as ``outcomes`` (a value, or "pruned"); trial numbers in ``copied`` are marked
    as copied from another study."""
    study = optuna.create_study(direction=direction)
    for number, outcome in enumerate(outcomes):
        attrs = {ATTR_WARM_STARTED_FROM: {"study": "old", "trial": number}} if number in copied else {}
        if outcome == "pruned":
            study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"x": 0.5},
                                                      distributions={"x": X}, user_attrs=attrs))
        else:
            study.add_trial(optuna.trial.create_trial(value=outcome, params={"x": 0.5}, distributions={"x": X},
                                                      user_attrs=attrs))
    return study


@pytest.mark.parametrize("rules, outcomes, direction, fires", [
    ({"target": 0.5}, [1.0, 0.7], "minimize", None),
    ({"target": 0.5}, [1.0, 0.5], "minimize", "target: trial 1 reached 0.5 (<= 0.5)"),
    ({"target": 2.0}, [1.0, 2.5], "maximize", "target: trial 1 reached 2.5 (>= 2)"),
    ({"no_improvement": {"trials": 3}}, [5.0, 4.0, 3.0, 3.5, 3.2], "minimize", None),  # 3.0 is in the window
    ({"no_improvement": {"trials": 3}}, [5.0, 4.0, 3.0, 3.5, 3.2, 3.1], "minimize", "the last 3 finished trials"),
    ({"no_improvement": {"trials": 3, "min_delta": 0.5}}, [5.0, 4.0, 3.0, 2.8, "pruned", 3.1], "minimize",
     "by more than 0.5"),  # 2.8 beats 3.0 by less than min_delta; a pruned trial counts as not improving
    ({"no_improvement": {"trials": 2, "min_delta": 0.5}}, [1.0, 2.0, 1.8], "maximize", None),
    ({"no_improvement": {"trials": 2}}, ["pruned", "pruned"], "minimize", None),  # no best to improve on yet
])
def test_each_rule_fires_on_the_study_it_describes(rules, outcomes, direction, fires):
    reason = StopRules.from_config(rules, [direction]).reason(study_of(outcomes, direction), seconds=1.0)
    assert (reason is None) == (fires is None) and (fires is None or fires in reason)


def test_copied_trials_set_the_bar_but_are_not_trials_without_improvement():
    rules = StopRules.from_config({"no_improvement": {"trials": 2}}, ["minimize"])
    assert rules.reason(study_of([1.0, 1.0, 2.0], copied=(0, 1, 2)), 1.0) is None  # nothing run here yet
    assert "1" in rules.reason(study_of([1.0, 1.0, 2.0, 3.0, 4.0], copied=(0, 1, 2)), 1.0)


def test_max_seconds_counts_the_sweeps_own_time():
    rules = StopRules.from_config({"max_seconds": 60}, ["minimize"])
    assert rules.reason(study_of([1.0]), seconds=59.0) is None
    assert rules.reason(study_of([1.0]), seconds=61.0).startswith("max_seconds: 61 s since the study's run started")


@pytest.mark.parametrize("rules, directions, named", [
    ({"patience": 3}, ["minimize"], r"stop_when: unknown key\(s\) \['patience'\]; valid keys: \['no_improvement', "),
    ({"no_improvement": {"trials": -1}}, ["minimize"], r"stop_when.no_improvement.trials must be an integer >= 1, "
                                                       "got -1"),
    ({"no_improvement": {"trials": 3, "delta": 0.1}}, ["minimize"],
     r"stop_when.no_improvement: unknown key\(s\) \['delta'\]"),
    ({"no_improvement": {"trials": 3, "min_delta": -0.1}}, ["minimize"], "stop_when.no_improvement.min_delta"),
    ({"no_improvement": 3}, ["minimize"], "stop_when.no_improvement must be"),
    ({"target": "low"}, ["minimize"], "stop_when.target must be None or a finite number, got 'low'"),
    ({"max_seconds": 0}, ["minimize"], "stop_when.max_seconds must be None or a finite number > 0, got 0"),
    ({"target": 0.5}, ["minimize", "minimize"], "stop_when.target needs a single-objective study"),
    ({"no_improvement": {"trials": 3}}, ["minimize", "maximize"], "stop_when.no_improvement needs a single"),
])
def test_a_bad_rule_is_refused_naming_its_key(rules, directions, named):
    with pytest.raises(SweepError, match=named):
        StopRules.from_config(rules, directions)


def test_a_bad_rule_fails_the_sweeper_before_any_trial(tmp_path):
    with pytest.raises(SweepError, match="hydra.sweeper.stop_when.no_improvement.trials"):
        scripted_sweeper(tmp_path, lambda n, _: 1.0, stop_when={"no_improvement": {"trials": 0}})
    assert not (tmp_path / "sweep").exists()


def test_the_batch_loop_launches_nothing_after_a_trial_reaches_the_target(tmp_path, caplog):
    impl = scripted_sweeper(tmp_path, lambda n, _: 0.1 if n == 2 else 1.0, n_trials=10, stop_when={"target": 0.5})
    with caplog.at_level(logging.INFO):
        impl.sweep([])
    assert [t.number for t in load(tmp_path).trials] == [0, 1, 2]
    reason = "target: trial 2 reached 0.1 (<= 0.5)"
    assert OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml").stopped_early == reason
    assert reason in caplog.text


def test_the_continuous_loop_lets_running_trials_finish_and_starts_no_new_one(tmp_path):
    # Trial 1 is slow: trial 2 starts in the free slot and reaches the target; trial 1 ends after that, and no
    # slot starts a trial 3.
    def value_of(number, _):
        if number == 1:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(t.number == 2 and t.state.is_finished()
                                                          for t in load(tmp_path).trials):
                time.sleep(0.05)
        return 0.1 if number == 2 else 1.0

    impl = scripted_sweeper(tmp_path, value_of, n_trials=10, n_jobs=2, launch_mode="continuous",
                            stop_when={"target": 0.5})
    impl.sweep([])
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert study.trials[1].datetime_complete > study.trials[2].datetime_complete  # it was running when the rule fired
    assert OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml").stopped_early.startswith("target: trial 2")


def test_without_stop_when_the_results_say_nothing_of_stopping(tmp_path):
    scripted_sweeper(tmp_path, lambda n, _: 1.0, n_trials=2).sweep([])
    assert "stopped_early" not in OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
