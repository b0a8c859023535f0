"""A password typed in a sweep's override reaches no file: the sweeper's own options are masked in Hydra's record of
the command line before any job is composed from it; an override a job would need in clear is refused, saying how to
pass it. Checked on real sweeps (the simulated app on a PostgreSQL study) by reading every file they leave."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from hydra_plugins.smart_optuna_sweeper._errors import SweepError
from hydra_plugins.smart_optuna_sweeper._secrets import guard_secrets, holds_secret
from tests.helpers.postgres_server import PASSWORD
from tests.helpers.processes import DEADLINE_S, tails
from tests.hydra_plugins.simulated_sweeps import load, start_worker


@pytest.mark.parametrize("key, value, secret", [
    ("hydra.sweeper.storage", "postgresql+psycopg://smart:pw@db/optuna", True),
    ("hydra.sweeper.storage", "'postgresql://smart:pw@db:5432/optuna'", True),
    ("hydra.sweeper.storage", "postgresql+psycopg://smart@db/optuna", False),  # PGPASSWORD or ~/.pgpass
    ("hydra.sweeper.storage", "'${oc.env:SMART_TUNER_OPTUNA_STORAGE}'", False),
    ("db", "'postgresql://smart:${oc.env:PW}@db/optuna'", False),
    ("logger.mlflow.tracking_uri", "https://TOKEN@mlflow.example", True),
    ("callbacks.telegram_alerts.token", "123456:ABC-def", True),
    ("callbacks.telegram_alerts.token", "null", False),
    ("callbacks.telegram_alerts.token", "${oc.env:TELEGRAM_BOT_TOKEN}", False),
    ("hydra.sweeper.alerts", "{token: 123456:ABC, min_level: info}", True),
    ("hydra.sweeper.alerts", "{token: null}", False),
    ("model.learning_rate", "1e-3", False),
])
def test_what_counts_as_a_secret(key, value, secret):
    assert holds_secret(key, value) is secret


def _config(hydra_overrides, task_overrides=()):
    return OmegaConf.create({"hydra": {"overrides": {"hydra": list(hydra_overrides), "task": list(task_overrides)},
                                       "sweeper": {"storage": None, "tracking_uri": None}}})


def test_the_sweepers_own_secrets_are_masked_in_hydras_record_and_the_rest_is_kept():
    config = _config(["hydra.sweeper.storage=postgresql+psycopg://smart:pw@db/optuna", "hydra.sweeper.n_trials=3",
                      "+hydra.sweeper.tracking_uri='postgresql://u:pw@db/mlflow'"], ["model.learning_rate=1e-3"])
    assert guard_secrets(config) == ["hydra.sweeper.storage", "hydra.sweeper.tracking_uri"]
    assert list(config.hydra.overrides.hydra) == ["hydra.sweeper.storage='postgresql+psycopg://smart:***@db/optuna'",
                                                  "hydra.sweeper.n_trials=3",
                                                  "+hydra.sweeper.tracking_uri='postgresql://u:***@db/mlflow'"]
    assert config.hydra.sweeper.storage == "postgresql+psycopg://smart:***@db/optuna"
    assert "pw@" not in OmegaConf.to_yaml(config)


@pytest.mark.parametrize("hydra_overrides, task_overrides, named", [
    ([], ["logger.mlflow.tracking_uri=postgresql://u:pw@db/mlflow"], "logger.mlflow.tracking_uri"),
    ([], ["+callbacks.telegram_alerts.token=123456:ABC"], "callbacks.telegram_alerts.token"),
    (["hydra.launcher.ray.init.address=ray://u:pw@head:10001"], [], "hydra.launcher.ray.init.address"),
    (["hydra.sweeper.alerts={token: 123456:ABC}"], [], "hydra.sweeper.alerts"),
])
def test_a_secret_a_job_or_launcher_needs_is_refused_saying_how_to_pass_it(hydra_overrides, task_overrides, named):
    with pytest.raises(SweepError, match=rf"{named}=\.\.\. holds a secret .* PGPASSWORD .*oc\.env:NAME") as error:
        guard_secrets(_config(hydra_overrides, task_overrides))
    assert "pw" not in str(error.value) and "ABC" not in str(error.value)


def _files(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file()]


def _assert_nowhere(tmp_path, secret):
    found = [str(p) for p in _files(tmp_path) if secret.encode() in p.read_bytes()]
    assert not found, f"the secret is in {found}"


@pytest.mark.slow
def test_a_password_in_the_storage_url_override_reaches_no_file(tmp_path, postgres_url):
    assert PASSWORD in postgres_url
    tracking = postgres_url.rsplit("/", 1)[0] + "/mlflow"  # masked in the record; never opened (no report here)
    process, log = start_worker(tmp_path, "worker", f"hydra.sweeper.storage={postgres_url}",
                                f"hydra.sweeper.tracking_uri={tracking}", "hydra.sweeper.n_trials=2",
                                "duration_s=0.2", "reports=2")
    assert process.wait(timeout=DEADLINE_S) == 0, tails([log])
    study = load(postgres_url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # the jobs reached the study
    written = _files(tmp_path)
    hydra_yaml = tmp_path / "outputs" / "trial_1" / ".hydra" / "hydra.yaml"
    assert hydra_yaml in written and (tmp_path / "outputs" / "optimization_results.yaml") in written
    assert "smart:***@127.0.0.1" in hydra_yaml.read_text()
    _assert_nowhere(tmp_path, PASSWORD)


@pytest.mark.slow
@pytest.mark.parametrize("override", ["+db_url=postgresql://smart:{pw}@127.0.0.1/db", "+alerts.token={pw}"])
def test_a_password_in_a_jobs_override_is_refused_before_anything_is_written(tmp_path, postgres_url, override):
    process, log = start_worker(tmp_path, "worker", f"hydra.sweeper.storage={postgres_url}",
                                "hydra.sweeper.n_trials=1", override.format(pw=PASSWORD))
    assert process.wait(timeout=DEADLINE_S) != 0
    output = log.read_text()
    assert "holds a secret" in output and "PGPASSWORD" in output and "${oc.env:NAME}" in output, output
    assert not (tmp_path / "outputs").exists()
    _assert_nowhere(tmp_path, PASSWORD)
