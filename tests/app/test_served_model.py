"""Registered Tacotron2 versions are MLflow pyfunc models: ``mlflow.pyfunc.load_model`` and ``mlflow models serve``
synthesise text into audio."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.core.global_hydra import GlobalHydra

from tacotron2_lightning.app.pyfunc_factory import CORE_REQUIREMENTS, Tacotron2Pyfunc, pinned_requirements
from tacotron2_lightning.app.served_model import OUTPUT_COLUMNS, SynthesisRequestError
from tacotron2_lightning.app.training import train
from tests.helpers.mlflow_stores import using_tracking_uri
from tests.helpers.train_configs import ONLY_THE_REGISTRY, compose_train_config

ROOT = Path(__file__).resolve().parents[2]
CHAMPION = "models:/tacotron2-train@champion"
HOP, SAMPLING_RATE = 256, 22050  # conf/data/builtin.yaml
FRAMES_PER_STEP = 2  # conf/model/small.yaml
FAST = {"max_decoder_steps": 12, "griffin_lim_iters": 2, "seed": 0}  # an untrained gate may never fire


@pytest.fixture(scope="module")
def registered(tmp_path_factory, shared_cache) -> str:
    """The tracking URI of a tiny 2-step training run with the registry: one version, the champion."""
    root = tmp_path_factory.mktemp("pyfunc")
    cfg = compose_train_config(root, shared_cache, [*ONLY_THE_REGISTRY, "trainer.max_steps=2"])
    GlobalHydra.instance().clear()
    train(cfg)
    return cfg.paths.mlflow_tracking_uri


@pytest.fixture(scope="module")
def model(registered):
    import mlflow

    with using_tracking_uri(registered):
        return mlflow.pyfunc.load_model(CHAMPION)


def test_the_registered_version_synthesises_float32_audio_at_the_models_rate(model):
    result = model.predict(pd.DataFrame({"text": ["Hello world.", "Hi."]}), params=FAST)
    assert list(result.columns) == list(OUTPUT_COLUMNS) and len(result) == 2
    for row in result.itertuples():
        assert row.audio.dtype == np.float32 and row.audio.ndim == 1 and np.abs(row.audio).max() <= 1.0
        assert row.sampling_rate == SAMPLING_RATE and row.num_samples == row.audio.size
        assert row.num_samples == HOP * (max(row.num_frames, 4) - 1)  # 4: Griffin-Lim's minimum, padded with silence
        assert isinstance(row.stopped, bool | np.bool_)
        assert row.stopped or row.num_frames == FAST["max_decoder_steps"] * FRAMES_PER_STEP
    again = model.predict(pd.DataFrame({"text": ["Hello world."]}), params=FAST)
    np.testing.assert_array_equal(again.audio[0], result.audio[0])  # the seed makes it repeatable


def test_the_version_carries_signature_input_example_artifacts_and_pinned_requirements(registered, tmp_path):
    import mlflow

    with using_tracking_uri(registered):
        info = mlflow.models.get_model_info(CHAMPION)
        folder = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path)))
    assert info.signature.inputs.input_names() == ["text"]
    assert info.signature.outputs.input_names() == list(OUTPUT_COLUMNS)
    assert {p.name: p.default for p in info.signature.params.params} == {
        "max_decoder_steps": None, "griffin_lim_iters": 60, "seed": None}  # conf/callbacks/model_registry.yaml
    assert json.loads((folder / "input_example.json").read_text())["columns"] == ["text"]
    assert (folder / "artifacts" / "model.ckpt").is_file()
    assert "sampling_rate: 22050" in (folder / "artifacts" / "data.yaml").read_text()
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert {r.partition("==")[0] for r in requirements} >= {"mlflow", "torch", "pytorch-lightning"}
    assert all("==" in r for r in requirements)
    assert not [p for p in folder.rglob("*") if p.is_file() and registered.encode() in p.read_bytes()]


# The models-from-code file that versions registered before app/pyfunc_model.py became app/served_model.py carry.
CODE_OF_OLDER_VERSIONS = """import mlflow.models

from tacotron2_lightning.app.pyfunc_model import Tacotron2PythonModel

mlflow.models.set_model(Tacotron2PythonModel())
"""


def test_a_version_registered_before_the_served_model_was_renamed_still_loads(registered, tmp_path):
    import mlflow
    from mlflow.models import Model

    with using_tracking_uri(registered):
        folder = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path)))
    code_file = Model.load(str(folder / "MLmodel")).flavors["python_function"]["model_code_path"]
    (folder / Path(code_file).name).write_text(CODE_OF_OLDER_VERSIONS)  # MLflow runs the version's own copy
    result = mlflow.pyfunc.load_model(str(folder)).predict(pd.DataFrame({"text": ["Hi."]}), params=FAST)
    assert list(result.columns) == list(OUTPUT_COLUMNS) and len(result) == 1


@pytest.mark.parametrize(("frame", "params", "message"), [
    (pd.DataFrame({"words": ["Hi."]}), FAST, r"missing inputs \['text'\]"),  # MLflow's check of the signature
    (pd.DataFrame({"text": ["Hi.", "   "]}), FAST, r"Row 1 of column 'text': text '   ' has nothing to synthesise"),
    (pd.DataFrame({"text": [""]}), FAST, "Row 0 of column 'text': text '' has nothing to synthesise"),
    (pd.DataFrame({"text": [None]}, dtype=object), FAST, "Row 0 of column 'text' must be a string, got None"),
    (pd.DataFrame({"text": ["Hi."]}), {"griffin_lim_iters": -1}, "Param 'griffin_lim_iters' must be >= 0, got -1"),
    (pd.DataFrame({"text": ["Hi."]}), {"max_decoder_steps": 0}, "Param 'max_decoder_steps' must be >= 1, got 0"),
])
def test_bad_input_is_refused_naming_the_culprit(model, frame, params, message):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match=message):
        model.predict(frame, params=params)


def test_the_python_model_checks_its_input_when_called_without_mlflows_schema(model):
    python_model = model.unwrap_python_model()
    with pytest.raises(SynthesisRequestError, match=r"no 'text' column to synthesise; its columns: \['words'\]"):
        python_model.predict(None, pd.DataFrame({"words": ["Hi."]}))
    with pytest.raises(SynthesisRequestError, match="expects a pandas DataFrame with a 'text' column, got a list"):
        python_model.predict(None, ["Hi."])
    with pytest.raises(SynthesisRequestError, match=r"Unknown params \['speed'\]"):
        python_model.predict(None, pd.DataFrame({"text": ["Hi."]}), params={"speed": 2})
    assert python_model.predict(None, pd.DataFrame({"text": []}, dtype=str)).empty


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"griffin_lim_iters": -1}, "`griffin_lim_iters` must be an integer >= 0, got -1"),
    ({"max_decoder_steps": 0}, "`max_decoder_steps` must be an integer >= 1 or None, got 0"),
    ({"example_text": " "}, "`example_text` must be a non-empty string, got ' '"),
])
def test_bad_factory_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tacotron2Pyfunc(**kwargs)


def test_requirements_are_the_projects_own_pinned_or_the_core_without_it():
    import mlflow

    assert f"mlflow=={mlflow.__version__}" in pinned_requirements() and "pytest" not in str(pinned_requirements())
    assert [r.partition("==")[0] for r in pinned_requirements("no-such-project")] == list(CORE_REQUIREMENTS)


# A real server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations_with_audio(registered, tmp_path):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           # MLflow starts `uvicorn` from PATH: this interpreter's.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", CHAMPION, "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    log = tmp_path / "server.log"
    with open(log, "w") as output:  # a file, not a pipe, that nobody reads until the end
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # imports torch, Lightning and MLflow twice on a slow machine
        while True:
            assert server.poll() is None, f"the server exited with {server.returncode}:\n{log.read_text()}"
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no answer on {base}/ping in 180 s:\n{log.read_text()}"
            time.sleep(1)
        status, body = post(f"{base}/invocations", {"dataframe_split": {"columns": ["text"], "data": [["Hello."]]},
                                                     "params": FAST})
        assert status == 200, body
        (prediction,) = body["predictions"]
        assert prediction["sampling_rate"] == SAMPLING_RATE and isinstance(prediction["stopped"], bool)
        assert len(prediction["audio"]) == prediction["num_samples"] == HOP * (max(prediction["num_frames"], 4) - 1)
        assert all(isinstance(sample, float) for sample in prediction["audio"][:10])
        status, body = post(f"{base}/invocations", {"dataframe_records": [{"text": " "}], "params": FAST})
        assert status == 400 and "Row 0 of column 'text'" in body["message"]
    finally:
        stop_process_group(server)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stops ``process`` and what it started (MLflow's CLI runs uvicorn in a shell): SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
