"""The sweeper's own naming options: the study's metric names, and which MLflow store its trials recorded."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hydra_plugins.smart_optuna_sweeper._impl import SweepError
from tests.hydra_plugins.scripted_sweep import load, scripted_sweeper
from tuner_callbacks import contract


def test_metric_names_name_the_studys_values(tmp_path):
    scripted_sweeper(tmp_path, lambda n, _: 1.0, n_trials=1, metric_names=["objective"]).sweep([])
    assert load(tmp_path).metric_names == ["objective"]


def test_metric_names_that_do_not_fit_the_directions_fail_before_any_trial(tmp_path):
    with pytest.raises(SweepError, match=r"hydra.sweeper.metric_names must be one name per direction \(1\), "
                                        r"got \['a', 'b'\]"):
        scripted_sweeper(tmp_path, lambda n, _: 1.0, metric_names=["a", "b"])
    assert not (tmp_path / "sweep").exists()


def test_the_recorded_tracking_uri_is_the_newest_trials_that_has_one():
    trial = lambda attrs: SimpleNamespace(user_attrs=attrs)  # noqa: E731
    trials = [trial({contract.ATTR_MLFLOW_TRACKING_URI: "sqlite:///old.db"}),
              trial({contract.ATTR_MLFLOW_TRACKING_URI: "sqlite:///new.db"}), trial({})]
    assert contract.recorded_tracking_uri(trials) == "sqlite:///new.db"
    assert contract.recorded_tracking_uri([trial({})]) is None
