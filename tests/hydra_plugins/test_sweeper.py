"""The smart_optuna sweeper end to end: `python train.py -m hparams=search ...` in a real process, a real Optuna
study in SQLite, real (tiny) Tacotron2 trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._search_space import SearchSpace
from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
from tests.helpers.train_configs import CONF, ROOT, TINY
from tests.hydra_plugins.scripted_sweep import search_config
from tuner_callbacks.contract import TAG_TRIAL

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Two validations per trial: two pruning decisions.
SWEEP = [*TINY, "trainer.max_steps=4", "trainer.val_check_interval=2", "callbacks.validation_media=null",
         "callbacks.metric_history.export_formats=[]"]
# A 4-step model never stops on its gate: constraints it can meet, for the tests that rank feasible trials
# (tests/hydra_plugins/test_sweeper_constraints.py holds the constraints themselves to account).
MEETABLE = ["objective.min_gate_stop_rate=0", "objective.duration_range=[0.01,100]"]
# The values of search.yaml's parameters that `python train.py` with the tiny overrides trains: trial 0's.
CONFIGURED = {"model.learning_rate": 3e-3, "model.gate_positive_weight": 50.0, "model.guided_attention_weight": 5.0,
              "model.guided_attention_sigma": 0.2, "model.align_loss_weight": 1.0, "data.batch_size": 4}


# What a test of the sweep's loop does not look at, and costs seconds a sweep: a registered model version per trial
# (an MLflow store, a pyfunc model) and the report at the end. A test's own overrides come later and win.
UNLOOKED_AT = ["callbacks.model_registry=null", "hydra.sweeper.registry_model=null", "hydra.sweeper.report=false"]


def sweep(tmp_path, cache, *overrides, check=True, wait=True, env=None, everything=False):
    """``python train.py -m hparams=search`` in ``tmp_path`` with tiny trials; ``everything``: with the registry and
    the report, as a user's sweep runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SMART_TUNER_CACHE": str(cache),
           **(env or {})}
    # No paths.log_dir: outputs/ under the working directory, as `python train.py -m ...` run there writes it.
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams=search", *SWEEP,
               *([] if everything else UNLOOKED_AT), *overrides]
    if not wait:
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stderr[-4000:]
    return done


def load(tmp_path, name="search"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/outputs/sweeps/{name}/optuna.db")


def states(study):
    return [t.state for t in study.trials]


def test_the_plugin_is_found_under_its_own_name_with_its_samplers_and_pruners():
    assert "SmartOptunaSweeper" in [plugin.__name__ for plugin in Plugins.instance().discover(Sweeper)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=["hparams=search", "hydra/sweeper/sampler=random",
                                              "hydra/sweeper/pruner=hyperband"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("SmartOptunaSweeper")
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    assert sweeper.pruner._target_ == "optuna.pruners.HyperbandPruner"
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "smart_optuna"  # not "optuna": Hydra's plugin keeps it


@pytest.mark.slow
def test_a_sweep_runs_records_each_trial_and_resumes_to_the_total_n_trials(tmp_path, shared_cache):
    # A command-line sweep argument adds to (or overrides) the config's params.
    with FakeBotApi() as telegram:
        sweep(tmp_path, shared_cache, "hydra.sweeper.n_trials=3", "data.batch_size=choice(2, 4)", *MEETABLE,
              f"+hydra.sweeper.alerts.base_url='{telegram.base_url}'",
              env={"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": str(CHAT_ID)}, everything=True)
        (summary,) = telegram.calls("sendMessage")
    study = load(tmp_path)
    assert "search" in summary.text and f"{study.best_value:.4g}"[:4] in summary.text
    assert states(study) == [TrialState.COMPLETE] * 3
    assert {t.params["data.batch_size"] for t in study.trials} <= {2, 4}
    # Trial 0 trains what `python train.py` (with the tiny test overrides) would: the baseline of the search.
    assert study.trials[0].params == CONFIGURED
    assert study.trials[0].user_attrs["defaults"] is True
    sweep_dir = tmp_path / "outputs" / "sweeps" / "search"
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert results.best_value == pytest.approx(study.best_value)
    assert results.best_params == study.best_params
    assert Path(results.best_trial.checkpoint).is_file()
    # The gain of the search over that baseline.
    assert {key: results.defaults_trial[key] for key in ("number", "state", "value", "feasible")} == {
        "number": 0, "state": "COMPLETE", "value": study.trials[0].value, "feasible": True}
    assert results.gain_over_defaults.absolute == pytest.approx(study.best_value - study.trials[0].value)
    assert results.gain_over_defaults.relative == pytest.approx(results.gain_over_defaults.absolute
                                                                / abs(study.trials[0].value))
    report = (sweep_dir / "report.html").read_text()
    assert "<h2>Trials" in report  # the sweep report, written at the end
    assert "Gain over the configured values: best" in report
    assert results.best_trial.checkpoint.startswith(str(sweep_dir / f"trial_{study.best_trial.number}"))
    # One join key in both directions: trial -> MLflow run, MLflow run -> study and trial.
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["optuna.study"] == "search" and run.data.tags["optuna.trial"] == str(trial.number)
        assert float(run.data.params["model/learning_rate"]) == pytest.approx(trial.params["model.learning_rate"])
        assert trial.user_attrs["global_step"] == 4 and trial.user_attrs["max_steps"] == 4
        assert sorted(trial.intermediate_values) == [2, 4]  # reported by global step
        # ...and the store it went to, which the report and the registry alias use by default.
        assert trial.user_attrs["mlflow_tracking_uri"] == f"sqlite:///{tmp_path}/outputs/mlflow.db"
    # Each trial registered its final model; the champion alias ended on the study's best trial (by the
    # composite objective, not the val/loss each ModelRegistry compares).
    champion = client.get_model_version_by_alias("tacotron2-search", "champion")
    assert int(champion.tags[TAG_TRIAL]) == study.best_trial.number
    # Optuna's own tools read the study (optuna-dashboard takes the same storage URL).
    listed = subprocess.run([str(Path(sys.executable).parent / "optuna"), "trials", "--study-name", "search",
                             "--storage", f"sqlite:///{sweep_dir}/optuna.db", "-f", "json"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert sorted(row["number"] for row in json.loads(listed.stdout)) == [0, 1, 2]
    # The same command again, with a larger budget: the three trials are kept, one more runs.
    sweep(tmp_path, shared_cache, "hydra.sweeper.n_trials=4", "data.batch_size=choice(2, 4)", *MEETABLE)
    study = load(tmp_path)
    *kept, new = states(study)
    assert kept == [TrialState.COMPLETE] * 3 and new in (TrialState.COMPLETE, TrialState.PRUNED)  # 3 trials: a median
    assert "defaults" not in study.trials[3].user_attrs  # the configured values ran once, in trial 0


@pytest.mark.slow
def test_a_warm_started_sweep_copies_an_earlier_study_and_stops_once_a_trial_reaches_the_target(tmp_path,
                                                                                                 shared_cache):
    # An earlier study over the same space: its COMPLETE trials that fit are copied, not run; one outside is skipped.
    space = SearchSpace.from_overrides([f"{k}={v}" for k, v in search_config().hydra.sweeper.params.items()]
                                       + ["data.batch_size=choice(2, 4)"]).distributions
    wide = {**space, "model.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    earlier = optuna.create_study(study_name="earlier", storage=f"sqlite:///{tmp_path / 'earlier.db'}")
    for learning_rate, value in ((2e-3, 1e4), (5e-3, 2e4), (5e-2, 3e4)):  # 5e-2 lies outside (1e-3, 1e-2)
        earlier.add_trial(optuna.trial.create_trial(params={**CONFIGURED, "model.learning_rate": learning_rate},
                                                    distributions=wide, value=value,
                                                    intermediate_values={2: value, 4: value}))
    done = sweep(tmp_path, shared_cache, "hydra.sweeper.n_trials=3", "logger=none", "data.batch_size=choice(2, 4)",
                 *MEETABLE,
                 f"hydra.sweeper.warm_start_from={{storage: 'sqlite:///{tmp_path / 'earlier.db'}', "
                 "study_name: earlier}", "hydra.sweeper.stop_when={target: 1000}", "hydra.sweeper.report=false")
    study = load(tmp_path)
    copied = [t for t in study.trials if "warm_started_from" in t.user_attrs]
    assert sorted(t.value for t in copied) == [1e4, 2e4] and all(t.intermediate_values for t in copied)
    (ran,) = [t for t in study.trials if t not in copied]  # stopped after its first trial, of n_trials=3
    assert ran.number == 0 and ran.user_attrs["defaults"] is True and ran.value <= 1000
    assert "2 COMPLETE trials copied" in done.stdout + done.stderr and "1 skipped" in done.stdout + done.stderr
    results = OmegaConf.load(tmp_path / "outputs" / "sweeps" / "search" / "optimization_results.yaml")
    assert results.stopped_early.startswith("target: trial 0 reached")


@pytest.mark.slow
def test_too_many_failures_stop_the_sweep_with_an_error_naming_the_rate(tmp_path, shared_cache):
    # An unknown model key fails every trial at config validation: no training, quick.
    done = sweep(tmp_path, shared_cache, "hydra.sweeper.n_trials=4", "hydra.sweeper.max_failure_rate=0.25",
                 "logger=none", "+model.model_config.no_such_key=1", "hydra.sweeper.report=false", check=False)
    assert done.returncode != 0
    assert "max_failure_rate=0.25" in done.stderr
    study = load(tmp_path)
    assert states(study) == [TrialState.FAIL] * 2  # 2 > 0.25 * 4: stopped before trials 3 and 4
    assert "no_such_key" in study.trials[0].user_attrs["error"]
    assert (tmp_path / "outputs" / "sweeps" / "search" / "optimization_results.yaml").is_file()
    assert not (tmp_path / "outputs" / "sweeps" / "search" / "report.html").exists()  # report=false
