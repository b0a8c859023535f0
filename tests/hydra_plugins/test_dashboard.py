"""A finished sweep seen through optuna-dashboard: a real tiny sweep through `train.py`, then the real dashboard
server against its storage and artifact folder, read through the HTTP API its web page uses."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers.train_configs import ROOT, TINY
from tests.hydra_plugins.test_sweeper import UNLOOKED_AT

pytest.importorskip("optuna_dashboard")  # the `dashboard` extra (and `dev`)

# Validation media stay on: they are what each trial attaches.
MEDIA_SWEEP = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2",
               "callbacks.metric_history.export_formats=[]", "logger=none", *UNLOOKED_AT]
START_TIMEOUT_S = 120  # a slow machine may take long to import optuna and bottle


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


class Dashboard:
    """`optuna-dashboard <storage> --artifact-dir <folder>` on a free local port, stopped on exit."""

    def __init__(self, storage: str, artifact_dir: str, log_path):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        executable = shutil.which("optuna-dashboard", path=os.path.dirname(sys.executable))
        command = [executable] if executable else [sys.executable, "-m", "optuna_dashboard"]
        self.log_path = log_path
        self.log = open(log_path, "w")  # closed in __exit__
        self.process = subprocess.Popen([*command, storage, "--artifact-dir", artifact_dir, "--host", "127.0.0.1",
                                         "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self) -> Dashboard:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                _get(f"{self.base_url}/api/meta")
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        self.__exit__()
        pytest.fail(f"optuna-dashboard did not answer within {START_TIMEOUT_S} s (exit code "
                    f"{self.process.returncode}):\n{self.log_path.read_text()[-4000:]}")

    def __exit__(self, *_exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    def get(self, path: str) -> object:
        return _get(f"{self.base_url}{path}")


@pytest.mark.slow
def test_the_dashboard_lists_the_sweep_and_each_trials_media(tmp_path, shared_cache):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SMART_TUNER_CACHE": str(shared_cache)}
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "-m", "hparams=search", *MEDIA_SWEEP,
                           "hydra.sweeper.n_trials=2"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "search"
    artifact_dir = sweep_dir / "artifacts"  # beside optuna.db
    assert artifact_dir.is_dir(), done.stderr[-4000:]

    with Dashboard(f"sqlite:///{sweep_dir / 'optuna.db'}", str(artifact_dir), tmp_path / "dashboard.log") as dash:
        (study,) = dash.get("/api/studies")["study_summaries"]
        assert study["study_name"] == "search"
        trials = dash.get(f"/api/studies/{study['study_id']}")["trials"]
        assert len(trials) == 2
        for trial in trials:
            names = names_of(trial)
            assert {"alignment.png", "inference_alignment.png", "mel.png", "sample.wav"} <= set(names)
            assert names["alignment.png"]["mimetype"] == "image/png"
            assert names["sample.wav"]["mimetype"] in {"audio/x-wav", "audio/wav", "audio/wave"}
        # The file itself, as the page's <img> fetches it.
        artifact_id = names_of(trials[0])["alignment.png"]["artifact_id"]
        url = f"{dash.base_url}/artifacts/{study['study_id']}/{trials[0]['trial_id']}/{artifact_id}"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read(8) == b"\x89PNG\r\n\x1a\n"


def names_of(trial: dict) -> dict[str, dict]:
    return {artifact["filename"]: artifact for artifact in trial["artifacts"]}
