"""The sweeper's parts without a sweep: every sampler and pruner option builds on current Optuna, a job's return
becomes the right trial state, a custom search space adds overrides, and storages open from their URLs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._impl import SmartOptunaSweeperImpl, SweepError
from hydra_plugins.smart_optuna_sweeper._pruners import WarmupPruner
from hydra_plugins.smart_optuna_sweeper._search_space import SearchSpace
from hydra_plugins.smart_optuna_sweeper.config import SmartOptunaSweeperConf
from tests.helpers.train_configs import CONF
from tuner_callbacks.optuna_storage import STORAGE_ENV, _unmasked, load_study_with_pruner, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = SearchSpace.from_overrides(["lr=tag(log, interval(1e-4, 1e-1))", "layers=range(1, 3)", "act=choice(a, b)"])


def sweeper_config(*overrides):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("train", overrides=["hparams=search", *overrides], return_hydra_config=True).hydra.sweeper
    finally:
        GlobalHydra.instance().clear()


def make_impl(directions="minimize", **kwargs):
    settings = dict(sampler=optuna.samplers.RandomSampler(seed=0), pruner=optuna.pruners.NopPruner(),
                    direction=directions, n_trials=3, report=False)
    return SmartOptunaSweeperImpl(SmartOptunaSweeperConf(**{**settings, **kwargs}))


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "gp", "nsgaii", "grid"])
def test_every_sampler_option_samples_the_search_space(sampler):
    node = sweeper_config(f"hydra/sweeper/sampler={sampler}").sampler
    built = instantiate(node)
    if sampler == "grid":  # partial: the grid comes from the search space, as the sweeper builds it
        built = built(search_space={"layers": [1, 2, 3], "act": ["a", "b"]})
    study = optuna.create_study(sampler=built)
    space = SearchSpace.from_overrides(["layers=range(1, 3)", "act=choice(a, b)"]) if sampler == "grid" else SPACE
    for _ in range(4):
        trial = study.ask()
        for name, distribution in space.distributions.items():
            trial._suggest(name, distribution)
        study.tell(trial, float(trial.params["layers"]))
    assert all(space.distributions[k]._contains(space.distributions[k].to_internal_repr(v))
               for t in study.trials for k, v in t.params.items())


@pytest.mark.parametrize("pruner, built, inner", [
    ("median", optuna.pruners.MedianPruner, None), ("percentile", optuna.pruners.PercentilePruner, None),
    ("successive_halving", WarmupPruner, optuna.pruners.SuccessiveHalvingPruner),
    ("hyperband", optuna.pruners.HyperbandPruner, None), ("nop", optuna.pruners.NopPruner, None),
    ("wilcoxon", WarmupPruner, optuna.pruners.WilcoxonPruner),
    ("patient", WarmupPruner, optuna.pruners.PatientPruner),
])
def test_every_pruner_option_is_recorded_and_rebuilt_for_the_jobs(pruner, built, inner, tmp_path):
    # search.yaml sets a warm-up (the guided-attention hold, 300 steps): every pruner takes it, in its own way.
    node = sweeper_config(f"hydra/sweeper/pruner={pruner}").pruner
    assert node.n_warmup_steps == 300
    impl = make_impl(pruner=node, study_name="s")
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    impl.config = OmegaConf.create({})
    study = impl._create_study(SPACE, storage)  # what the sweeper records for its jobs
    rebuilt = load_study_with_pruner(study.study_name, storage).pruner
    assert type(rebuilt) is type(impl.pruner) is built
    if inner is not None:
        assert type(rebuilt.wrapped_pruner) is inner and rebuilt.n_warmup_steps == 300
    if pruner == "hyperband":
        assert rebuilt._min_resource == 300
    if pruner == "patient":  # the wrapped pruner inside the wrapper round-trips too, with its own settings
        patient = rebuilt.wrapped_pruner
        assert type(patient._wrapped_pruner) is optuna.pruners.MedianPruner and patient._patience == 3


@pytest.mark.parametrize("value, directions, expected", [
    (0.5, "minimize", (TrialState.COMPLETE, [0.5], None)),
    ((0.5, 2.0), ["minimize", "maximize"], (TrialState.COMPLETE, [0.5, 2.0], None)),
    (float("nan"), "minimize", (TrialState.FAIL, None, "not finite")),
    ((1.0, math.inf), ["minimize", "minimize"], (TrialState.FAIL, None, "not finite")),
    ((1.0, 2.0), "minimize", (TrialState.FAIL, None, "2 values for 1 directions")),
    ("abc", "minimize", (TrialState.FAIL, None, "not a number")),
    (optuna.TrialPruned("at step 4"), "minimize", (TrialState.PRUNED, None, None)),
    (MemoryError("CUDA out of memory"), "minimize", (TrialState.FAIL, None, "MemoryError: CUDA out of memory")),
])
def test_a_job_return_becomes_a_trial_state(value, directions, expected):
    failed = isinstance(value, BaseException)
    job_return = JobReturn(status=JobStatus.FAILED if failed else JobStatus.COMPLETED, _return_value=value)
    state, values, error, constraints = make_impl(directions)._outcome(job_return)
    assert (state, values, constraints) == (*expected[:2], None)
    assert (error is None) == (expected[2] is None) and (expected[2] is None or expected[2] in error)


def add_dropout(cfg, trial):
    trial.suggest_float("model.model_config.p_decoder_dropout", 0.0, 0.3)


def test_trial_overrides_carry_params_custom_space_and_the_trial_identity(tmp_path, monkeypatch):
    monkeypatch.setenv(STORAGE_ENV, "")  # restored (removed) after the test
    impl = make_impl(custom_search_space="tests.hydra_plugins.test_sweeper_parts.add_dropout")
    impl.config, impl.sweep_dir = OmegaConf.create({}), tmp_path
    study = optuna.create_study(study_name="tts")
    trial = study.ask()
    space = SearchSpace.from_overrides(["model.learning_rate=interval(1e-4, 1e-3)", "+x=1"])
    overrides = impl._trial_overrides(trial, space, "postgresql://u:p@db/o")
    assert overrides[0] == f"model.learning_rate={trial.params['model.learning_rate']!r}"
    assert overrides[1].startswith("model.model_config.p_decoder_dropout=")
    # Hydra logs and saves every job's overrides: the password reaches jobs through the environment instead.
    assert overrides[2:] == ["+x=1", "++trial.study_name=tts", "++trial.storage='postgresql://u:***@db/o'",
                             f"++trial.number={trial.number}", f"++trial.artifact_dir={tmp_path / 'artifacts'}"]
    assert os.environ[STORAGE_ENV] == "postgresql://u:p@db/o"
    assert _unmasked("postgresql://u:***@db/o") == "postgresql://u:p@db/o"
    with pytest.raises(ValueError, match=r"u:\*\*\*@other/o.*has its password masked") as error:
        open_storage("postgresql://u:***@other/o")
    assert ":p@" not in str(error.value)


@pytest.mark.parametrize("storage, folder", [
    ("sqlite:///{tmp}/db/o.db", "{tmp}/db/artifacts"),  # beside the study's file
    ("journal:{tmp}/j/o.log", "{tmp}/j/artifacts"),
    ("postgresql://u:p@db/o", "{tmp}/sweep/artifacts"),  # a server: the sweep folder
    ("sqlite:///:memory:", "{tmp}/sweep/artifacts"),
])
def test_the_artifact_folder_lies_beside_the_study_file_or_in_the_sweep_folder(storage, folder, tmp_path):
    impl = make_impl()
    impl.sweep_dir = tmp_path / "sweep"
    assert impl._artifact_dir(storage.format(tmp=tmp_path)) == Path(folder.format(tmp=tmp_path))


@pytest.mark.parametrize("kwargs, named", [
    ({"directions": "down"}, "direction must be 'minimize', 'maximize' or a list of them, got 'down'"),
    ({"directions": []}, r"direction must be .* got \[\]"),
    ({"n_trials": 0}, "n_trials must be an integer >= 1, got 0"), ({"n_jobs": 1.5}, "n_jobs must be an integer"),
    ({"max_failure_rate": 2.0}, r"max_failure_rate must be a finite number in \[0, 1\], got 2.0"),
    ({"stale_trials": "retry"}, "stale_trials must be 'fail' or 'requeue', got 'retry'"),
    ({"launch_mode": "eager"}, "launch_mode must be one of 'auto', 'batch', 'continuous', got 'eager'"),
    ({"heartbeat_interval_s": 0}, "heartbeat_interval_s must be a finite number > 0, got 0"),
    ({"stale_after_s": -1.0}, "stale_after_s must be a finite number > 0"),
    ({"report": "yes"}, "report must be True or False, got 'yes'"),
    ({"enqueue_defaults": 1}, "enqueue_defaults must be True or False, got 1"),
    ({"enqueue_trials": {"lr": 1}}, "enqueue_trials must be a list of"),
    ({"registry_alias": ""}, "registry_alias must be a non-empty string"),
])
def test_bad_sweeper_settings_are_named(kwargs, named):
    with pytest.raises(SweepError, match=f"hydra.sweeper.{named}"):
        make_impl(**kwargs)


def test_the_plugin_hands_hydras_settings_to_the_implementation_as_its_config_dataclass():
    node = sweeper_config("hydra.sweeper.n_trials=7", "hydra.sweeper.stale_trials=requeue")
    sweeper = instantiate(node)  # as Hydra builds it: the fields as keywords, _recursive_ false
    # (Hydra's plugin scan may have imported the plugin's modules a second time: compare by name)
    assert type(sweeper._impl.options).__name__ == SmartOptunaSweeperConf.__name__
    assert (sweeper._impl.options.n_trials, sweeper._impl.options.stale_trials) == (7, "requeue")
    assert sweeper._impl.n_trials == 7 and isinstance(sweeper._impl.pruner, optuna.pruners.BasePruner)


def test_storages_open_from_sqlite_and_journal_urls_and_bad_ones_are_named(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'a.db'}", f"journal:{tmp_path / 'a.log'}"):
        study = optuna.create_study(study_name="s", storage=open_storage(url))
        study.tell(study.ask(), 1.0)
        assert optuna.load_study(study_name="s", storage=open_storage(url)).best_value == 1.0
    with pytest.raises(ValueError, match="not-a-url"):
        open_storage("not-a-url")
    with pytest.raises(ValueError, match="no study 'nope'"):
        load_study_with_pruner("nope", f"sqlite:///{tmp_path / 'a.db'}")


def test_resuming_a_study_of_other_directions_is_refused_naming_both_and_leaves_it_as_it_was(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="tts", storage=storage, direction="minimize")
    study.tell(study.ask(), 1.0)
    impl = make_impl("maximize", study_name="tts")
    impl.config = OmegaConf.create({"hydra": {"sweeper": {"pruner": {"_target_": "optuna.pruners.NopPruner"}}}})
    with pytest.raises(SweepError, match=r"exists with directions \['minimize'\], not \['maximize'\]"):
        impl._create_study(SPACE, storage)
    reloaded = optuna.load_study(study_name="tts", storage=storage)
    assert reloaded.best_value == 1.0 and reloaded.metric_names is None
    assert not reloaded._storage.get_study_system_attrs(reloaded._study_id)  # no pruner recorded into it
