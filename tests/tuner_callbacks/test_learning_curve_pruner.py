"""LearningCurvePruner on synthetic curves of known shape in real in-memory Optuna studies: what it prunes, what it
keeps (late bloomers the median pruner cuts), its guard rails, and its arguments refused by name."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from tuner_callbacks import LearningCurvePruner

optuna.logging.set_verbosity(optuna.logging.WARNING)
STEPS = range(50, 601, 50)  # a trial reports every 50 of its 600 steps, as hparams=search validates


def curve(a, b, c, noise=0.0, seed=0):
    """``a + b * (step / 600) ** -c`` at each of STEPS (levelling off at ``a``, ending at ``a + b``), plus Gaussian
    noise of standard deviation ``noise``."""
    rng = np.random.default_rng(seed)
    return {s: a + b * (s / 600) ** -c + noise * float(rng.standard_normal()) for s in STEPS}


# Five finished trials ending at 1.3, 1.4, ..., 1.7.
FINISHED = [curve(1.0 + 0.1 * i, 0.3, 0.5, noise=0.01, seed=i) for i in range(5)]
WORSE = curve(2.0, 0.3, 0.5, noise=0.01, seed=10)  # ends at 2.3, a full unit behind the best
BETTER = curve(0.8, 0.3, 0.5, noise=0.01, seed=11)  # ends at 1.1
FIRST_FIT = [False] * 4  # steps 50..200: fewer than min_points (5) reports
PRUNED = [*FIRST_FIT, *[True] * 7, False]  # from the fifth report on; never at the budget's end (nothing to save)


def study_with(finished, direction="minimize", pruner=None, values=None, constraints=None):
    """A study whose COMPLETE trials reported the curves ``finished`` and ended with ``values`` (their last
    reports by default) under ``constraints`` (one dict or None per trial)."""
    study = optuna.create_study(direction=direction, pruner=pruner or LearningCurvePruner())
    for i, intermediate in enumerate(finished):
        value = intermediate[max(intermediate)] if values is None else values[i]
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values=intermediate,
                                                  constraints=None if constraints is None else constraints[i]))
    return study


def decisions(study, running):
    """Whether the study's pruner prunes a new trial after each of its reports ``running``."""
    trial = study.ask()
    answers = []
    for step, value in running.items():
        trial.report(value, step)
        answers.append(bool(trial.should_prune()))
    return answers


@pytest.mark.parametrize("running, expected", [(WORSE, PRUNED), (BETTER, [False] * 12)])
def test_a_curve_heading_far_behind_the_best_is_pruned_and_one_heading_ahead_is_not(running, expected):
    assert decisions(study_with(FINISHED), running) == expected


def test_a_noisy_curve_with_few_points_is_not_pruned_where_a_clean_one_is():
    def first_fit(running):  # the decision on the first min_points (5) reports
        return decisions(study_with(FINISHED), {step: running[step] for step in list(STEPS)[:5]})[-1]

    assert first_fit(curve(1.6, 0.3, 0.5)) is True  # heading for 1.9; the best finished at 1.3
    # The same curve in noise of half the gap, ten draws: five points cannot tell where it is heading.
    assert [first_fit(curve(1.6, 0.3, 0.5, noise=0.3, seed=seed)) for seed in range(10)] == [False] * 10


@pytest.mark.parametrize("settings, expected", [
    ({"n_startup_trials": 6}, [False] * 12),  # five COMPLETE trials are not six
    ({"n_warmup_steps": 400}, [False] * 7 + [True] * 4 + [False]),
    ({"min_points": 8}, [False] * 7 + [True] * 4 + [False]),
    ({"max_resource": 500}, [*FIRST_FIT, *[True] * 5, False, False, False]),  # 500 is the end: nothing from then
])
def test_nothing_is_pruned_before_its_guard_rails_allow(settings, expected):
    assert decisions(study_with(FINISHED, pruner=LearningCurvePruner(**settings)), WORSE) == expected


def test_a_maximized_study_prunes_the_curve_heading_lowest():
    def flipped(values):
        return {step: -value for step, value in values.items()}

    finished = [flipped(c) for c in FINISHED]
    assert decisions(study_with(finished, "maximize"), flipped(WORSE)) == PRUNED
    assert decisions(study_with(finished, "maximize"), flipped(BETTER)) == [False] * 12


def test_infeasible_trials_do_not_set_the_best_but_still_calibrate():
    running = curve(1.15, 0.3, 0.5, noise=0.01, seed=12)  # ends at 1.45: behind 1.3 and 1.4, ahead of 1.5
    assert any(decisions(study_with(FINISHED), running))
    two_infeasible = [{"gate": 0.5}, {"gate": 0.1, "length": -1.0}, {"gate": 0.0}, None, {"gate": -0.2}]
    assert decisions(study_with(FINISHED, constraints=two_infeasible), running) == [False] * 12
    assert decisions(study_with(FINISHED, constraints=[{"gate": 1.0}] * 5), WORSE) == [False] * 12  # no best at all


def test_the_finished_trials_track_record_corrects_a_curve_that_ends_off_its_final_value():
    # Every finished trial's value came out 1.0 below where its curve ended (a final evaluation that differs from
    # the reported one, say): values 0.3..0.7. A curve heading to 1.2 will then finish near 0.2: the best.
    running = curve(0.9, 0.3, 0.5, noise=0.01, seed=13)
    offset = study_with(FINISHED, values=[c[600] - 1.0 for c in FINISHED])
    assert decisions(offset, running) == [False] * 12
    # The same values reached by curves that ended there: nothing corrects the curve heading to 1.2, it is pruned.
    lowered = [{step: value - 1.0 for step, value in c.items()} for c in FINISHED]
    assert decisions(study_with(lowered), running) == PRUNED


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_nan_or_infinite_report_prunes_once_the_warmup_is_over(bad):
    running = {50: 9.0, 100: 5.0, 150: bad}  # too few points for a fit: the value alone decides
    assert decisions(study_with(FINISHED), running) == [False, False, True]
    warm = LearningCurvePruner(n_warmup_steps=200)
    assert decisions(study_with(FINISHED, pruner=warm), running) == [False, False, False]
    assert decisions(study_with(FINISHED[:2]), running) == [False, False, False]  # nor before n_startup_trials


@pytest.mark.parametrize("fake_fit", [
    pytest.param(lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("Optimal parameters not found")),
                 id="raises"),
    pytest.param(lambda f, x, y, p0, **kwargs: (np.array(p0), np.full((3, 3), np.inf)), id="infinite-covariance"),
    pytest.param(lambda f, x, y, p0, **kwargs: (np.array([np.nan, 1.0, 1.0]), np.eye(3)), id="nan-parameters"),
])
def test_a_failed_or_degenerate_fit_does_not_prune(monkeypatch, fake_fit):
    monkeypatch.setattr("tuner_callbacks._learning_curves.curve_fit", fake_fit)
    assert decisions(study_with(FINISHED), WORSE) == [False] * 12


def test_without_finished_curves_to_calibrate_on_nothing_is_pruned():
    values_only = optuna.create_study(pruner=LearningCurvePruner(max_resource=600))
    for c in FINISHED:
        values_only.add_trial(optuna.trial.create_trial(value=c[600]))
    assert decisions(values_only, WORSE) == [False] * 12
    auto = optuna.create_study(pruner=LearningCurvePruner(n_startup_trials=0))  # and no budget to extrapolate to
    assert decisions(auto, WORSE) == [False] * 12


@pytest.mark.parametrize("settings, named", [
    ({"max_resource": 0}, "`max_resource` must be 'auto' or an integer >= 1, got 0"),
    ({"max_resource": "end"}, "`max_resource` must be 'auto' or an integer >= 1, got 'end'"),
    ({"max_resource": 600.0}, "`max_resource` must be 'auto' or an integer >= 1, got 600.0"),
    ({"prune_probability": 0}, r"`prune_probability` must be a finite number in \(0, 1\), got 0"),
    ({"prune_probability": 1.5}, r"`prune_probability` must be a finite number in \(0, 1\), got 1.5"),
    ({"prune_probability": "5%"}, r"`prune_probability` must be a finite number in \(0, 1\), got '5%'"),
    ({"n_startup_trials": -1}, "`n_startup_trials` must be an integer >= 0, got -1"),
    ({"n_warmup_steps": 2.5}, "`n_warmup_steps` must be an integer >= 0, got 2.5"),
    ({"min_points": 3}, "`min_points` must be an integer >= 4, got 3"),
    ({"min_points": True}, "`min_points` must be an integer >= 4, got True"),
    ({"models": "power_law"}, r"`models` must be a non-empty list of \['exponential', 'power_law'\], got 'power_law'"),
    ({"models": []}, r"`models` must be a non-empty list of .*, got \[\]"),
    ({"models": ["power_law", "logistic"]}, r"`models` must be a non-empty list of .*, got \['power_law', 'logi"),
])
def test_a_bad_argument_is_refused_naming_it_and_its_value(settings, named):
    with pytest.raises(ValueError, match=named):
        LearningCurvePruner(**settings)


def test_late_bloomers_survive_where_the_median_pruner_cuts_them():
    """A synthetic benchmark: six ordinary trials have finished (ending 1.3..1.8); then, each in a study of its own,
    trials that start slowly and end best (late bloomers) and trials that stay far behind. At the same step a late
    bloomer is worse than the median, so the median pruner cuts it; its own curve says where it is going."""
    finished = [curve(1.0 + 0.1 * i, 0.3, 0.5, noise=0.01, seed=i) for i in range(6)]
    late_bloomers = [curve(0.3, 0.6, 1.0, noise=0.01, seed=20), curve(0.5, 0.5, 0.9, noise=0.01, seed=21),
                     curve(0.2, 1.0, 0.8, noise=0.02, seed=22)]
    laggards = [curve(2.0, 0.3, 0.5, noise=0.01, seed=30), curve(2.5, 0.5, 0.4, noise=0.02, seed=31)]
    best = min(c[600] for c in finished)
    assert all(c[600] < best for c in late_bloomers) and all(c[50] > finished[-1][50] for c in late_bloomers)

    def pruned(pruner, running):
        return any(decisions(study_with(finished, pruner=pruner), running))

    median = optuna.pruners.MedianPruner(n_startup_trials=5)
    assert [pruned(median, c) for c in late_bloomers] == [True] * 3
    assert [pruned(LearningCurvePruner(), c) for c in late_bloomers] == [False] * 3
    assert [pruned(median, c) for c in laggards] == [pruned(LearningCurvePruner(), c) for c in laggards] == [True] * 2
