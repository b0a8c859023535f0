"""The shared option checks: each returns the value it accepts and names the key, the value and what is allowed."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from tuner_callbacks import options
from tuner_callbacks.options import REQUIRED, OptionError


@pytest.mark.parametrize("call, value", [
    (lambda: options.choice("mode", "max", ("min", "max")), "max"),
    (lambda: options.choice("level", None, ("a", "b", "c"), optional=True), None),
    (lambda: options.integer("patience", 0, low=0), 0),
    (lambda: options.integer("window", None, low=2, optional=True), None),
    (lambda: options.number("factor", 0.5, low=0, high=1, low_open=True, high_open=True), 0.5),
    (lambda: options.number("delta", 3, low=0), 3),
    (lambda: options.boolean("verbose", False), False),
    (lambda: options.text("monitor", "val/loss"), "val/loss"),
    (lambda: options.check("alerts", [], True, "a list"), []),
])
def test_a_valid_value_is_returned(call, value):
    assert call() == value


@pytest.mark.parametrize("call, message", [
    (lambda: options.choice("mode", "avg", ("min", "max")), "`mode` must be 'min' or 'max', got 'avg'"),
    (lambda: options.choice("level", "x", ("a", "b", "c")), "`level` must be one of 'a', 'b', 'c', got 'x'"),
    (lambda: options.choice("mode", ["min"], ("min", "max")), "`mode` must be 'min' or 'max', got ['min']"),
    (lambda: options.integer("patience", -1, low=0), "`patience` must be an integer >= 0, got -1"),
    (lambda: options.integer("patience", True, low=0), "`patience` must be an integer >= 0, got True"),
    (lambda: options.integer("patience", 2.0), "`patience` must be an integer, got 2.0"),
    (lambda: options.integer("n", 5, low=1, high=4), "`n` must be an integer in [1, 4], got 5"),
    (lambda: options.integer("n", "3", low=1, optional=True), "`n` must be None or an integer >= 1, got '3'"),
    (lambda: options.number("factor", 1.0, low=0, high=1, low_open=True, high_open=True),
     "`factor` must be a finite number in (0, 1), got 1.0"),
    (lambda: options.number("min_value", math.nan), "`min_value` must be a finite number, got nan"),
    (lambda: options.number("delta", -0.1, low=0), "`delta` must be a finite number >= 0, got -0.1"),
    (lambda: options.number("ratio", 1, low=1, low_open=True), "`ratio` must be a finite number > 1, got 1"),
    (lambda: options.boolean("verbose", "yes"), "`verbose` must be True or False, got 'yes'"),
    (lambda: options.text("monitor", ""), "`monitor` must be a non-empty string, got ''"),
    (lambda: options.text("monitor", 3, allowed="a metric name"), "`monitor` must be a metric name, got 3"),
])
def test_a_bad_value_is_named_with_what_is_allowed(call, message):
    with pytest.raises(OptionError) as error:
        call()
    assert str(error.value) == message


def test_a_mapping_is_merged_over_its_defaults_and_its_keys_are_checked():
    defaults = {"monitor": REQUIRED, "min_value": REQUIRED, "patience": 1}
    assert options.mapping("floor", None, defaults) is None
    given = OmegaConf.create({"monitor": "val/x", "min_value": 0.3})  # Hydra's DictConfig as well as a dict
    assert options.mapping("floor", given, defaults) == {"monitor": "val/x", "min_value": 0.3, "patience": 1}
    with pytest.raises(OptionError, match=r"`floor`: unknown key\(s\) \['min_score'\]; valid keys: \['monitor', "):
        options.mapping("floor", {"monitor": "m", "min_value": 1, "min_score": 1}, defaults)
    with pytest.raises(OptionError, match=r"`floor` needs `floor.monitor`, `floor.min_value` \(no default\)"):
        options.mapping("floor", {}, defaults)
    with pytest.raises(OptionError, match=r"`floor` must be a mapping with keys \['monitor', .*got 5"):
        options.mapping("floor", 5, defaults)
    with pytest.raises(OptionError, match="`floor` must be a mapping"):
        options.mapping("floor", None, defaults, optional=False)


def test_the_error_is_a_value_and_a_type_error_and_renders_under_another_name():
    with pytest.raises(ValueError):
        options.integer("n", -1, low=0)
    with pytest.raises(TypeError):
        options.mapping("rule", 3, {})
    error = OptionError("n_trials", 0, "an integer >= 1")
    assert (error.key, error.value, error.allowed) == ("n_trials", 0, "an integer >= 1")
    assert error.message(prefix="hydra.sweeper.", quote="") == "hydra.sweeper.n_trials must be an integer >= 1, got 0"
    with pytest.raises(OptionError) as unknown:
        options.mapping("stop_when", {"patience": 3}, {"target": None})
    assert unknown.value.message(prefix="hydra.sweeper.", quote="") == (
        "hydra.sweeper.stop_when: unknown key(s) ['patience']; valid keys: ['target']")
