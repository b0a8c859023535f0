"""Where a study starts: the run's configured values as trial 0, known-good configurations, and the trials of an
earlier study; each once per study. Real SQLite studies; the jobs are scripted (tests/hydra_plugins/scripted_sweep)."""

from __future__ import annotations

import logging

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper import _seeding
from hydra_plugins.smart_optuna_sweeper._impl import SweepError, _counted
from tests.hydra_plugins.scripted_sweep import load, scripted_sweeper, search_config
from tuner_callbacks.contract import ATTR_DEFAULTS, ATTR_WARM_STARTED_FROM

optuna.logging.set_verbosity(optuna.logging.WARNING)

# What `python train.py` trains (conf/model/small.yaml, conf/data/builtin.yaml), for the parameters search.yaml
# searches.
CONFIGURED = {"model.learning_rate": 3e-3, "model.gate_positive_weight": 50.0, "model.guided_attention_weight": 5.0,
              "model.guided_attention_sigma": 0.2, "model.align_loss_weight": 1.0}
DISTRIBUTIONS = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "layers": IntDistribution(1, 3),
                 "act": CategoricalDistribution(["relu", "tanh"]), "w": CategoricalDistribution([1.0, 5.0])}


def by_number(number, _):
    return 1.0 + 0.1 * number


def test_trial_0_runs_the_configured_values_and_a_resumed_sweep_does_not_run_them_again(tmp_path):
    scripted_sweeper(tmp_path, by_number, n_trials=2).sweep([])
    scripted_sweeper(tmp_path, by_number, n_trials=3).sweep([])  # the same command again, a larger budget
    study = load(tmp_path)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert study.trials[0].params == CONFIGURED and study.trials[0].user_attrs == {ATTR_DEFAULTS: True}
    assert [t.user_attrs.get(ATTR_DEFAULTS) for t in study.trials[1:]] == [None, None]
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.defaults_trial == {"number": 0, "state": "COMPLETE", "value": 1.0}
    assert results.gain_over_defaults == {"absolute": 0.0, "relative": 0.0}  # trial 0 is the best here


def test_the_gain_over_the_defaults_is_best_minus_defaults_and_relative_to_it(tmp_path):
    scripted_sweeper(tmp_path, lambda n, _: 2.0 if n == 0 else 1.5, n_trials=2).sweep([])
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_value == 1.5 and results.defaults_trial.value == 2.0
    assert results.gain_over_defaults == {"absolute": -0.5, "relative": -0.25}


def test_a_configured_value_outside_the_search_space_is_left_to_the_sampler_with_a_warning(tmp_path, caplog):
    impl = scripted_sweeper(tmp_path, by_number, "model.learning_rate=0.5", "model.gate_positive_weight=12.0",
                            n_trials=1)
    with caplog.at_level(logging.WARNING):
        impl.sweep([])
    (trial,) = load(tmp_path).trials
    assert trial.system_attrs["fixed_params"] == {k: v for k, v in CONFIGURED.items()
                                                  if k not in ("model.learning_rate", "model.gate_positive_weight")}
    assert 1e-3 <= trial.params["model.learning_rate"] <= 1e-2
    assert trial.params["model.gate_positive_weight"] in (10.0, 25.0, 50.0, 100.0)
    assert "model.learning_rate=0.5" in caplog.text and "model.gate_positive_weight=12.0" in caplog.text


def test_enqueue_defaults_false_samples_trial_0(tmp_path):
    scripted_sweeper(tmp_path, by_number, n_trials=1, enqueue_defaults=False).sweep([])
    (trial,) = load(tmp_path).trials
    assert "fixed_params" not in trial.system_attrs and ATTR_DEFAULTS not in trial.user_attrs


def test_configured_values_read_the_config_and_a_group_choice():
    config = OmegaConf.create({"a": {"lr": 0.001, "act": "tanh", "layers": 9}, "hydra": {"runtime": {"choices": {
        "model": "small"}}}})
    distributions = {"a.lr": DISTRIBUTIONS["lr"], "a.act": DISTRIBUTIONS["act"], "a.layers": DISTRIBUTIONS["layers"],
                     "a.missing": DISTRIBUTIONS["layers"], "model": CategoricalDistribution(["small", "nvidia"])}
    assert _seeding.configured_values(config, distributions) == {"a.lr": 0.001, "a.act": "tanh", "model": "small"}


@pytest.mark.parametrize("value, distribution, expected", [
    (5, DISTRIBUTIONS["w"], 5.0), ("relu", DISTRIBUTIONS["act"], "relu"), (2.0, DISTRIBUTIONS["layers"], 2),
    (0.02, DISTRIBUTIONS["lr"], None), (2.5, DISTRIBUTIONS["layers"], None), ("x", DISTRIBUTIONS["lr"], None),
    (True, DISTRIBUTIONS["layers"], None), (None, DISTRIBUTIONS["lr"], None),
])
def test_a_value_fits_a_distribution_as_the_distribution_writes_it(value, distribution, expected):
    fitted = _seeding.fit_value(distribution, value)
    assert (None if fitted is _seeding._MISSING else fitted) == expected
    assert expected is None or type(fitted) is type(expected)


def test_enqueue_trials_run_after_the_defaults_once_and_only_their_own_params_are_fixed(tmp_path):
    known = [{"model.learning_rate": 3e-3, "model.gate_positive_weight": 25.0}, {"model.guided_attention_weight": 0.0}]
    scripted_sweeper(tmp_path, by_number, n_trials=3, enqueue_trials=known).sweep([])
    scripted_sweeper(tmp_path, by_number, n_trials=4, enqueue_trials=known).sweep([])
    study = load(tmp_path)
    assert [t.system_attrs.get("fixed_params") for t in study.trials] == [CONFIGURED, *known, None]
    assert study.trials[1].params["model.learning_rate"] == 3e-3
    assert study.trials[1].params["model.gate_positive_weight"] == 25.0


@pytest.mark.parametrize("entries, named", [
    ([{"model.dropout": 0.1}], r"enqueue_trials\[0\]: 'model.dropout' is not a searched parameter"),
    ([{"model.learning_rate": 2e-3}, {"model.learning_rate": 0.5}],
     r"enqueue_trials\[1\].model.learning_rate=0.5 lies outside"),
    ([{"model.gate_positive_weight": 12.0}], r"enqueue_trials\[0\].model.gate_positive_weight=12.0 lies outside"),
    ([{}], r"enqueue_trials\[0\] must be a non-empty"), (["lr=1"], r"enqueue_trials\[0\] must be"),
])
def test_a_bad_enqueued_trial_is_refused_naming_it_before_the_study_is_touched(tmp_path, entries, named):
    impl = scripted_sweeper(tmp_path, by_number, n_trials=2, enqueue_trials=entries)
    with pytest.raises(SweepError, match=named):
        impl.sweep([])
    assert not (tmp_path / "sweep" / "optuna.db").exists() and impl.launcher.launched == []


def earlier_study(tmp_path, name="earlier", direction="minimize"):
    """A finished study over search.yaml's space: two trials that fit it, one outside it, one pruned."""
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'earlier.db'}", direction=direction)
    distributions = {k: v for k, v in search_config().hydra.sweeper.params.items()}
    from hydra_plugins.smart_optuna_sweeper._search_space import SearchSpace

    space = SearchSpace.from_overrides([f"{k}={v}" for k, v in distributions.items()]).distributions
    fitting = [{**CONFIGURED, "model.learning_rate": lr} for lr in (2e-3, 5e-3)]
    outside = {**CONFIGURED, "model.learning_rate": 5e-2}
    wide = {**space, "model.learning_rate": FloatDistribution(1e-4, 1e-1, log=True)}
    for params, value in ((fitting[0], 3.0), (fitting[1], 2.0), (outside, 1.0)):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=wide, value=value,
                                                  intermediate_values={50: value + 1, 100: value},
                                                  user_attrs={"mlflow_run_id": "r", ATTR_DEFAULTS: True}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params=fitting[0], distributions=wide,
                                              intermediate_values={50: 9.0}))
    return study


def test_a_warm_start_copies_the_fitting_complete_trials_once_and_they_do_not_count_towards_n_trials(tmp_path):
    earlier_study(tmp_path)
    source = {"storage": f"sqlite:///{tmp_path / 'earlier.db'}", "study_name": "earlier"}
    scripted_sweeper(tmp_path, by_number, n_trials=1, warm_start_from=source).sweep([])
    scripted_sweeper(tmp_path, by_number, n_trials=2, warm_start_from=source).sweep([])
    study = load(tmp_path)
    copied = [t for t in study.trials if ATTR_WARM_STARTED_FROM in t.user_attrs]
    assert [t.user_attrs[ATTR_WARM_STARTED_FROM] for t in copied] == [{"study": "earlier", "trial": 0},
                                                                      {"study": "earlier", "trial": 1}]
    assert [(t.value, t.intermediate_values) for t in copied] == [(3.0, {50: 4.0, 100: 3.0}),
                                                                  (2.0, {50: 3.0, 100: 2.0})]
    assert all(ATTR_DEFAULTS not in t.user_attrs and t.user_attrs["mlflow_run_id"] == "r" for t in copied)
    run_here = [t for t in study.trials if t not in copied]
    assert len(run_here) == 2 == _counted(study)  # n_trials counts the trials run here
    assert run_here[0].number == 0 and run_here[0].user_attrs[ATTR_DEFAULTS] is True  # enqueued before the copies


def test_a_warm_start_from_a_study_of_other_directions_or_nowhere_is_refused_naming_it(tmp_path):
    earlier_study(tmp_path, name="up", direction="maximize")
    storage = f"sqlite:///{tmp_path / 'earlier.db'}"
    for source, named in (({"storage": storage, "study_name": "up"}, r"study_name='up' has directions \['maximize'\]"),
                          ({"storage": storage, "study_name": "nope"}, "study_name='nope': no such study"),
                          ({"storage": f"sqlite:///{tmp_path / 'none.db'}", "study_name": "up"}, "no such file"),
                          ({"storage": storage}, "warm_start_from.study_name must be"),
                          ({"storage": storage, "study_name": "up", "trials": 3},
                           r"warm_start_from: unknown key\(s\) \['trials'\]")):
        with pytest.raises(SweepError, match=named):
            scripted_sweeper(tmp_path, by_number, n_trials=1, warm_start_from=source).sweep([])
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "sweep" / "optuna.db").exists()


def test_a_warm_start_from_the_study_itself_is_refused(tmp_path):
    scripted_sweeper(tmp_path, by_number, n_trials=1).sweep([])
    source = {"storage": f"sqlite:///{tmp_path}/sweep/../sweep/optuna.db", "study_name": "search"}
    with pytest.raises(SweepError, match="this sweep's own study"):
        scripted_sweeper(tmp_path, by_number, n_trials=2, warm_start_from=source).sweep([])
    assert len(load(tmp_path).trials) == 1
