"""Trials given back unrun (asked past n_trials by racing workers, or as the study stopped) and trials whose worker
died are FAIL in Optuna, but not failures: the results file, the report and the sweeper's summary tell them apart, and
max_failure_rate does not count them."""

from __future__ import annotations

import logging

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper import _budget
from hydra_plugins.smart_optuna_sweeper._results import write_results
from tests.hydra_plugins.scripted_sweep import scripted_sweeper
from tuner_callbacks.contract import ATTR_ERROR, ATTR_INTERRUPTED
from tuner_callbacks.report import build_report
from tuner_callbacks.report.data import GIVEN_BACK, INTERRUPTED, trial_rows

optuna.logging.set_verbosity(optuna.logging.WARNING)
X = optuna.distributions.FloatDistribution(0.0, 1.0)


def mixed_study(storage):
    """Trials 0-1 complete, 2 failed, 3-4 given back unrun, 5 interrupted (its worker died)."""
    study = optuna.create_study(study_name="mixed", storage=storage)
    for value in (0.2, 0.1):
        study.add_trial(optuna.trial.create_trial(value=value, params={"x": value}, distributions={"x": X}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 0.9}, distributions={"x": X},
                                              user_attrs={ATTR_ERROR: "ValueError: boom"}))
    for _ in range(2):
        trial = study.ask()
        _budget.give_back(study, study.trials[trial.number], _budget.Refusal("asked beyond n_trials=3", False))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"x": 0.4}, distributions={"x": X},
                                              user_attrs={ATTR_INTERRUPTED: True, ATTR_ERROR: "interrupted"}))
    return study


def test_the_results_file_counts_them_apart(tmp_path):
    study = mixed_study(f"sqlite:///{tmp_path}/s.db")
    results = OmegaConf.load(write_results(study, tmp_path, "sqlite:///s.db"))
    assert results.trials == {"complete": 2, "fail": 1}
    assert results.not_run == 2 and list(results.not_run_trials) == [3, 4] and results.interrupted == 1


def test_the_report_shows_them_as_given_back_and_interrupted_not_failed(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    study = mixed_study(storage)
    rows = trial_rows(study.trials)
    assert [r.state for r in rows] == ["COMPLETE", "COMPLETE", "FAIL", GIVEN_BACK, GIVEN_BACK, INTERRUPTED]
    assert rows[3].note == "given back unrun, not counted: asked beyond n_trials=3"
    html = build_report(storage, "mixed", out_path=tmp_path / "report.html", log_to_mlflow=False).read_text()
    assert "6 trials: 2 complete, 1 fail, 2 given back, 1 interrupted." in html
    assert html.count('<tr class="GIVEN_BACK">') == 2


def test_given_back_and_interrupted_trials_are_not_failures_for_max_failure_rate(tmp_path, caplog):
    impl = scripted_sweeper(tmp_path, lambda n, _: 1.0, n_trials=3, max_failure_rate=0.0)
    (tmp_path / "sweep").mkdir()
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{tmp_path}/sweep/optuna.db")
    for _ in range(3):
        trial = study.ask()
        _budget.give_back(study, study.trials[trial.number], _budget.Refusal("asked beyond n_trials=3", False))
    with caplog.at_level(logging.INFO):
        impl.sweep([])  # max_failure_rate=0: a single failure would stop it with an error
    counted = [t for t in optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path}/sweep/optuna.db"
                                            ).trials if t.state == TrialState.COMPLETE]
    assert len(counted) == 3
    assert "'GIVEN_BACK': 3" in caplog.text and "'FAIL'" not in caplog.text
