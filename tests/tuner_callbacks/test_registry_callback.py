"""ModelRegistry: versions on improvement and at the end, tags, the alias on the best version across trials."""

from __future__ import annotations

import math
import urllib.parse
from pathlib import Path

import pytest
import torch

from tests.helpers.mlflow_stores import using_tracking_uri
from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tests.helpers.toy_pyfunc import ToyPyfunc, toy_pyfunc
from tuner_callbacks.contract import TAG_STUDY, TAG_TRIAL
from tuner_callbacks.early_stopping import SmartEarlyStopping
from tuner_callbacks.registry import ModelRegistry, Registry
from tuner_callbacks.registry.pyfunc_saving import PyfuncModel, save_pyfunc_model
from tuner_callbacks.registry.tags import git_commit, hparam_tags, metric_tags


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One SQLite store for the toy tests (creating MLflow's tables takes seconds); each test has its own model."""
    return tmp_path_factory.mktemp("registry")


def uri(store: Path) -> str:
    return f"sqlite:///{store}/mlflow.db"


def fit_toy(store, name, values, mode="min", register_on="both", max_steps=None, ckpt_path=None, **kwargs):
    """Fits the toy model logging the scripted ``val/loss`` values, one per step; returns (callback, trainer)."""
    callback = ModelRegistry(name, mode=mode, tracking_uri=uri(store), register_on=register_on,
                             artifact_location=str(store / "artifacts"), **kwargs)
    trainer = toy_trainer(store, [callback], max_steps=max_steps or len(values))
    trainer.fit(ToyRegression(scripted={"val/loss": values}), toy_loader(), toy_loader(), ckpt_path=ckpt_path)
    return callback, trainer


def summary(registry: Registry, name: str) -> list[tuple[int, float, str, int]]:
    """(version, monitored value (float32, rounded), registered_on, step) per version, in version order."""
    versions = sorted(registry.versions(name), key=lambda v: int(v.version))
    return [(int(v.version), round(float(v.tags["monitor_value"]), 5), v.tags["registered_on"],
             int(v.tags["global_step"])) for v in versions]


@pytest.mark.parametrize(
    ("mode", "values", "expected", "champion"),
    [
        # improvements at steps 1, 2, 4; the end (step 5, a worse value) is registered too but not champion
        ("min", [5.0, 3.0, 4.0, 2.0, 6.0], [(1, 5.0, "improvement", 1), (2, 3.0, "improvement", 2),
                                           (3, 2.0, "improvement", 4), (4, 6.0, "end", 5)], 3),
        ("max", [1.0, 2.0, 1.5, 3.0], [(1, 1.0, "improvement", 1), (2, 2.0, "improvement", 2),
                                      (3, 3.0, "improvement", 4)], 3),  # the end is the last improvement
    ],
)
def test_registers_each_improvement_and_the_end_and_aliases_the_best(store, mode, values, expected, champion):
    callback, _ = fit_toy(store, f"toy-{mode}", values, mode=mode)
    registry = Registry(uri(store))
    assert summary(registry, f"toy-{mode}") == expected
    assert registry.aliases(f"toy-{mode}") == {"champion": champion}
    assert callback.registered_versions == [row[0] for row in expected]


@pytest.mark.parametrize(("register_on", "expected"), [("end", [(1, 4.0, "end", 3)]),
                                                        ("improvement", [(1, 5.0, "improvement", 1),
                                                                         (2, 3.0, "improvement", 2)])])
def test_register_on_end_or_improvement_only(store, register_on, expected):
    fit_toy(store, f"toy-{register_on}", [5.0, 3.0, 4.0], register_on=register_on)
    assert summary(Registry(uri(store)), f"toy-{register_on}") == expected


def test_without_an_mlflow_logger_the_callback_logs_to_its_own_finished_run(store, tmp_path):
    fit_toy(store, "toy-own-run", [2.0, 1.0], trial_number=7, study_name="study")
    registry = Registry(uri(store))
    version = registry.resolve("toy-own-run@champion")
    run = registry.client.get_run(version.run_id)
    assert run.info.status == "FINISHED"
    assert registry.client.get_experiment(run.info.experiment_id).name == "toy-own-run"
    assert version.source.startswith(str(store / "artifacts"))
    assert run.data.tags[TAG_TRIAL] == "7" and version.tags[TAG_STUDY] == "study"
    assert not (Path(version.source) / "MLmodel").exists()  # without a pyfunc_model: a plain folder
    checkpoint = registry.download(version, tmp_path / "download")
    content = torch.load(checkpoint, weights_only=True)
    assert "optimizer_states" not in content  # weights only: smaller
    assert content["global_step"] == 2 and int(version.tags["checkpoint_bytes"]) == checkpoint.stat().st_size


def test_resumed_run_keeps_its_best_score(store, tmp_path):
    _, trainer = fit_toy(store, "toy-resumed", [3.0, 2.0])
    trainer.save_checkpoint(tmp_path / "resume.ckpt")
    # The resumed run's validations are all worse than 2.0: no improvement, only its end is registered.
    fit_toy(store, "toy-resumed", [2.5, 2.2], max_steps=4, ckpt_path=tmp_path / "resume.ckpt")
    registry = Registry(uri(store))
    assert [row[1:3] for row in summary(registry, "toy-resumed")] == [(3.0, "improvement"), (2.0, "improvement"),
                                                                       (2.2, "end")]
    assert registry.aliases("toy-resumed") == {"champion": 2}


def test_the_version_registered_at_the_end_says_why_the_run_stopped(store):
    stopper = SmartEarlyStopping("val/loss", patience=1, verbose=False)
    callback = ModelRegistry("toy-stopped", tracking_uri=uri(store), artifact_location=str(store / "artifacts"))
    trainer = toy_trainer(store, [stopper, callback], max_steps=10)
    trainer.fit(ToyRegression(scripted={"val/loss": [1.0, 2.0, 3.0]}), toy_loader(), toy_loader())
    registry = Registry(uri(store))
    assert summary(registry, "toy-stopped") == [(1, 1.0, "improvement", 1), (2, 2.0, "end", 2)]
    end = registry.resolve("toy-stopped/2")
    assert end.tags["stop.source"] == "early_stopping" and end.tags["stop.criterion"] == "patience"
    assert "stop.criterion" not in registry.resolve("toy-stopped/1").tags


def test_a_nan_metric_is_registered_at_the_end_but_never_becomes_champion(store):
    fit_toy(store, "toy-nan", [math.nan, math.nan])
    registry = Registry(uri(store))
    (version,) = registry.versions("toy-nan")
    assert version.tags["registered_on"] == "end" and version.tags["monitor_value"] == "nan"
    assert registry.aliases("toy-nan") == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "avg"}, "`mode` must be 'min' or 'max', got 'avg'"),
        ({"register_on": "always"}, "`register_on` must be one of 'improvement', 'end', 'both', got 'always'"),
        ({"alias": "3"}, "`alias` must be a name"),
        ({"model_name": ""}, "`model_name` must be a non-empty string, got ''"),
        ({"trial_number": "1"}, "`trial_number` must be None or an integer, got '1'"),
        ({"pyfunc_model": 3}, "`pyfunc_model` must be a callable .* got 3"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelRegistry(**{"model_name": "m", **kwargs})


def test_tags_mask_secrets_and_keep_numbers():
    assert metric_tags({"val/loss": torch.tensor(0.5), "bad": torch.ones(2), "text": "x"}) == {
        "metric.val/loss": "0.5"}
    tags = hparam_tags({"learning_rate": 1e-3, "alerts": {"api_key": "abc"}, "model": {"dim": 4}})
    assert tags == {"hparam.learning_rate": "0.001", "hparam.alerts/api_key": "***", "hparam.model/dim": "4"}
    assert git_commit(tmp := Path("/")) == "unknown" and tmp.is_dir()


# Versions as MLflow pyfunc models


def version_files(version) -> dict[str, bytes]:
    """Every file of a version's folder (a local artifact store), by its path in the folder."""
    folder = Path(urllib.parse.urlparse(version.source).path)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_with_a_pyfunc_model_each_version_is_an_mlflow_model_of_its_own_weights(store, tmp_path):
    import mlflow
    import pandas as pd

    secrets = {"password": "hunter2", "url": "postgresql://user:s3cret@db/mlflow"}
    fit_toy(store, "toy-pyfunc", [2.0, 1.0], pyfunc_model=toy_pyfunc, data_config={"size": 3, **secrets})
    registry = Registry(uri(store))
    champion = registry.resolve("toy-pyfunc@champion")
    with using_tracking_uri(uri(store)):
        model = mlflow.pyfunc.load_model("models:/toy-pyfunc@champion")
        info = mlflow.models.get_model_info("models:/toy-pyfunc@champion")
    weights = torch.load(registry.download(champion, tmp_path / "download"), weights_only=True)["state_dict"]
    w, b = float(weights["layer.weight"]), float(weights["layer.bias"])
    assert model.predict(pd.DataFrame({"x": [0.0, 1.0]}))["y"].tolist() == pytest.approx([b, w + b])
    assert info.signature.inputs.input_names() == ["x"] and info.saved_input_example_info is not None
    # The checkpoint and data config are the model's artifacts, where the tags say and where the CLI finds them.
    files = version_files(champion)
    assert champion.tags["checkpoint_file"] == "artifacts/model.ckpt" and "MLmodel" in files
    assert files[champion.tags["checkpoint_file"]] == (tmp_path / "download" / "model.ckpt").read_bytes()
    assert model.unwrap_python_model().data_config == {"size": 3, "password": "***",
                                                       "url": "postgresql://user:***@db/mlflow"}
    assert (tmp_path / "download" / "data.yaml").read_text() == files[champion.tags["data_config_file"]].decode()
    # No secret of the data config, and not the store's URI (which may carry a password), in any file.
    for secret in ("hunter2", "s3cret", uri(store)):
        assert not [name for name, content in files.items() if secret.encode() in content], secret


def test_a_hydra_config_of_the_pyfunc_model_is_instantiated():
    from omegaconf import OmegaConf

    callback = ModelRegistry("m", pyfunc_model=OmegaConf.create({"_target_": "tests.helpers.toy_pyfunc.ToyPyfunc"}))
    assert isinstance(callback.pyfunc_model, ToyPyfunc)


def test_a_pyfunc_model_that_takes_the_registrys_artifact_names_or_returns_something_else_is_named(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"weights")

    def clashing(checkpoint, data_config):
        return PyfuncModel(toy_pyfunc(checkpoint, data_config).python_model, artifacts={"checkpoint": str(checkpoint)})

    with pytest.raises(ValueError, match=r"names artifacts \['checkpoint'\], which the registry reserves"):
        save_pyfunc_model(clashing, tmp_path / "model", checkpoint, None)
    with pytest.raises(TypeError, match="returned a dict, expected a PyfuncModel"):
        save_pyfunc_model(lambda checkpoint, data_config: {}, tmp_path / "model", checkpoint, None)
