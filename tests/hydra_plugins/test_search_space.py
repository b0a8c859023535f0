"""hydra-optuna-sweeper's override syntax -> Optuna distributions, and sampled values -> overrides Hydra reads."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.smart_optuna_sweeper._search_space import SearchSpace, SearchSpaceError, encode_value


@pytest.mark.parametrize("override, expected", [
    ("x=choice(a, b, 3)", CategoricalDistribution(["a", "b", 3])),
    ("x=a,b", CategoricalDistribution(["a", "b"])),
    ("x=choice(true, false)", CategoricalDistribution([True, False])),
    ("x=range(1, 5)", IntDistribution(1, 5)),  # upper bound inclusive, as hydra-optuna-sweeper
    ("x=range(0, 10, 5)", IntDistribution(0, 10, step=5)),
    ("x=range(0.1, 0.5, 0.1)", FloatDistribution(0.1, 0.5, step=0.1)),
    ("x=shuffle(range(1, 4))", CategoricalDistribution([1, 2, 3])),
    ("x=interval(0.1, 1)", FloatDistribution(0.1, 1.0)),
    ("x=interval(1, 10)", FloatDistribution(1.0, 10.0)),  # Hydra reads interval bounds as floats
    ("x=int(interval(1.0, 10.0))", IntDistribution(1, 10)),
    ("x=tag(log, interval(1e-4, 1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
    ("x=tag(log, int(interval(1, 100)))", IntDistribution(1, 100, log=True)),
    ("model=choice(small, nvidia)", CategoricalDistribution(["small", "nvidia"])),
])
def test_each_sweep_form_becomes_its_distribution(override, expected):
    space = SearchSpace.from_overrides([override])
    (distribution,) = space.distributions.values()
    if "shuffle" in override:  # the choices come in a random order
        distribution = CategoricalDistribution(sorted(distribution.choices))
    assert {**space.distributions, override.split("=")[0]: distribution} == {override.split("=")[0]: expected}
    assert space.fixed == {}


def test_fixed_values_pass_through_and_later_overrides_win():
    space = SearchSpace.from_overrides(["a=1", "b=interval(0, 1)", "+c=x", "b=choice(2, 3)", "a=interval(0.0, 2.0)"])
    assert space.distributions == {"b": CategoricalDistribution([2, 3]), "a": FloatDistribution(0.0, 2.0)}
    assert space.fixed == {"c": "x"}
    assert space.overrides({"b": 3, "a": 0.5}) == ["b=3", "a=0.5", "+c=x"]


@pytest.mark.parametrize("value", [1e-3, 3, True, None, "small", "a b", "it's", "x=y", "path/to/file.txt",
                                   "sqlite:////tmp/o.db", "-1"])
def test_encoded_values_read_back_as_the_same_value(value):
    (override,) = OverridesParser.create().parse_overrides([f"key={encode_value(value)}"])
    read = override.value()
    assert read == value and type(read) is type(value) or (value == "-1" and read == -1)


@pytest.mark.parametrize("override, named", [
    ("x=interval(2, 1)", "start < end"),
    ("x=tag(log, interval(0, 1))", "start > 0"),
    ("x=choice(a", "cannot parse"),
    ("x=range(1, 5, 0)", "positive step"),
])
def test_bad_sweep_overrides_are_named(override, named):
    with pytest.raises(SearchSpaceError, match=named) as error:
        SearchSpace.from_overrides([override])
    assert override in str(error.value)
