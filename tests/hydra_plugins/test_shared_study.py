"""Several sweepers on one study, without training: n_trials caps the whole study (a trial asked beyond it is given
back unrun), seeded samplers never replay their draws in a resumed sweep or a second worker, and a study of
another search space is refused before anything is written. The multi-process runs on PostgreSQL and journal files
are in test_distributed_sweeps.py."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper import _budget, _seeding
from hydra_plugins.smart_optuna_sweeper._impl import SweepError
from hydra_plugins.smart_optuna_sweeper._trial_seeds import trial_seed
from tests.helpers.threads import run_in_threads
from tests.hydra_plugins.scripted_sweep import load, scripted_sweeper
from tuner_callbacks.contract import ATTR_NOT_RUN, ATTR_REQUEUED_FROM

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = optuna.distributions.FloatDistribution(0.0, 1.0)


def counted(study):
    return [t for t in study.trials if t.state.is_finished() and ATTR_NOT_RUN not in t.user_attrs]


def value_of(number, overrides):
    time.sleep(0.02)  # lets two sweepers in threads interleave
    return float(overrides["model.learning_rate"])


def params(study):
    return [tuple(sorted(t.params.items())) for t in counted(study)]


def run_together(sweepers):
    """Each sweeper's sweep in a thread of its own, all at once; fails with the first error any of them raised."""
    run_in_threads([lambda sweeper=sweeper: sweeper.sweep([]) for sweeper in sweepers])


# --- the cap ------------------------------------------------------------------------------------------------------

def test_of_two_workers_asking_for_the_last_place_the_later_number_is_given_back():
    study = optuna.create_study()
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=1.0, params={"x": 0.5}, distributions={"x": X}))
    assert _budget.has_room(study.trials, 3)
    first, second = study.ask(), study.ask()  # both saw one free place
    assert _budget.refusal(study.trials, first.number, 3) is None
    refused = _budget.refusal(study.trials, second.number, 3)
    assert "beyond n_trials=3" in refused.reason and not refused.requeue
    _budget.give_back(study, study.trials[second.number], refused)
    assert study.trials[second.number].state == TrialState.FAIL
    assert study.trials[second.number].user_attrs[ATTR_NOT_RUN] == refused.reason
    assert not _budget.has_room(study.trials, 3)  # given back, it frees nothing: the first one holds the place


def test_a_waiting_trial_popped_beyond_the_cap_is_queued_again_and_a_double_seeding_is_dropped(monkeypatch):
    study = optuna.create_study()
    # Two workers seeding a new study at once: both find no trial carrying the defaults, both enqueue them.
    monkeypatch.setattr(_seeding, "carried_by", lambda *args: None)
    for _ in range(2):
        _seeding.enqueue(study, {"x": 0.1}, {"defaults": True}, "The run's configured values")
    study.enqueue_trial({"x": 0.2})
    assert _budget.has_room(study.trials, 2)
    study.ask({"x": X})  # trial 0
    duplicate = study.ask({"x": X})  # trial 1: the same enqueued values again
    refused = _budget.refusal(study.trials, duplicate.number, 2)
    assert refused.reason.startswith("The run's configured values enqueued twice") and not refused.requeue
    assert "trial 0 runs the same values" in refused.reason
    _budget.give_back(study, study.trials[1], refused)
    third = study.ask({"x": X})  # trial 2: within the cap once trial 1 was dropped
    assert _budget.refusal(study.trials, third.number, 2) is None
    study.enqueue_trial({"x": 0.3}, user_attrs={"mine": 1})  # trial 3, beyond the cap of 2
    assert not _budget.has_room(study.trials, 2)
    popped = study.ask({"x": X})
    refused = _budget.refusal(study.trials, popped.number, 2)
    assert refused.requeue
    _budget.give_back(study, study.trials[popped.number], refused)
    (again,) = study.get_trials(states=(TrialState.WAITING,))  # for a later run with a larger n_trials
    assert again.system_attrs["fixed_params"] == {"x": 0.3} and again.user_attrs == {"mine": 1}


def test_two_sweepers_on_one_study_run_exactly_n_trials(tmp_path):
    sweepers = [scripted_sweeper(tmp_path, value_of, n_trials=8, enqueue_defaults=True) for _ in range(2)]
    run_together(sweepers)
    study = load(tmp_path)
    assert len(counted(study)) == 8 and all(t.state == TrialState.COMPLETE for t in counted(study))
    assert sum(len(s.launcher.launched) for s in sweepers) == 8  # nothing ran that is not counted
    assert all(len(s.launcher.launched) > 0 for s in sweepers)
    assert sum(1 for t in counted(study) if t.user_attrs.get("defaults")) == 1
    assert len(set(params(study))) == 8


def test_two_workers_on_a_grid_run_each_point_once(tmp_path):
    grid = {"params": {"data.batch_size": "choice(2, 4, 8)", "model.gate_positive_weight": "choice(1.0, 5.0)"}}
    sweepers = [scripted_sweeper(tmp_path, value_of_batch, "hydra/sweeper/sampler=grid", n_trials=10, **grid)
                for _ in range(2)]
    run_together(sweepers)
    study = load(tmp_path)
    assert len(counted(study)) == 6 and len(set(params(study))) == 6  # n_trials is cut to the grid's 6 points


def value_of_batch(number, overrides):
    time.sleep(0.02)
    return float(overrides["data.batch_size"])


# --- seeds --------------------------------------------------------------------------------------------------------

def test_a_resumed_sweep_does_not_replay_the_seeded_samplers_draws(tmp_path):
    # The same command, killed after two trials and run again: the second process has the same seed (search.yaml's
    # 1234). Its trials 2 and 3 used to be trials 0 and 1 again.
    scripted_sweeper(tmp_path, value_of, n_trials=2, enqueue_defaults=False).sweep([])
    scripted_sweeper(tmp_path, value_of, n_trials=4, enqueue_defaults=False).sweep([])
    study = load(tmp_path)
    assert [t.number for t in counted(study)] == [0, 1, 2, 3]
    assert len(set(params(study))) == 4
    # Still reproducible: a new study with the same seed asks the same values, trial for trial.
    fresh = tmp_path / "fresh"
    scripted_sweeper(fresh, value_of, n_trials=4, enqueue_defaults=False).sweep([])
    assert params(load(fresh)) == params(study)
    assert trial_seed(1234, 0) != trial_seed(1234, 1) != trial_seed(1235, 0)


def test_two_workers_with_the_same_seed_on_one_study_ask_different_values(tmp_path):
    sweepers = [scripted_sweeper(tmp_path, value_of, n_trials=8, enqueue_defaults=False) for _ in range(2)]
    run_together(sweepers)
    study = load(tmp_path)
    assert len(counted(study)) == 8
    assert len(set(params(study))) == 8  # with one seed per process, pairs of trials had the same values


def test_values_enqueued_twice_on_purpose_run_twice():
    study = optuna.create_study()
    study.enqueue_trial({"x": 0.4})
    study.ask({"x": X})
    study.enqueue_trial({"x": 0.4}, user_attrs={ATTR_REQUEUED_FROM: 0})  # stale_trials=requeue
    study.enqueue_trial({"x": 0.4})  # by the user
    for _ in range(2):
        assert _budget.refusal(study.trials, study.ask({"x": X}).number, 5) is None


# --- another search space -----------------------------------------------------------------------------------------

def test_a_study_of_another_search_space_is_named_and_left_as_it_was(tmp_path):
    scripted_sweeper(tmp_path, value_of, n_trials=1).sweep([])
    before = load(tmp_path)
    with pytest.raises(SweepError, match=r"study 'search' in sqlite:///.*exists with another search space "
                                         r"\(model.gate_positive_weight: .*choices=\(10.0, 25.0, 50.0, 100.0\).* "
                                         r"in the study, .*choices=\(1.0, 5.0\).* here\)"):
        scripted_sweeper(tmp_path, value_of, n_trials=2).sweep(["model.gate_positive_weight=choice(1.0, 5.0)"])
    after = load(tmp_path)
    assert len(after.trials) == len(before.trials) == 1
    assert after._storage.get_study_system_attrs(after._study_id) == before._storage.get_study_system_attrs(
        before._study_id)
