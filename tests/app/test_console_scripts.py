"""The installed commands: each `smart-tuner-*` script runs the same code as its `python -m` module."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

SCRIPTS = {
    "smart-tuner-watch": "python -m tuner_callbacks.watch",
    "smart-tuner-report": "python -m tuner_callbacks.report",
    "smart-tuner-registry": "python -m tuner_callbacks.registry",
    "smart-tuner-alerts": "python -m tuner_callbacks.alerts",
    "smart-tuner-synthesize": "python -m tacotron2_lightning.app.synthesize",
}


def test_every_command_is_an_installed_console_script():
    installed = {e.name for e in entry_points(group="console_scripts") if e.name.startswith("smart-tuner-")}
    assert installed == set(SCRIPTS)


@pytest.mark.parametrize("script, prog", SCRIPTS.items())
def test_each_script_answers_help_like_its_module(script, prog):
    path = Path(sys.executable).parent / script
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {prog}")


def test_the_registry_script_lists_the_subcommands_the_app_adds():
    path = Path(sys.executable).parent / "smart-tuner-registry"
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert "export" in result.stdout and "compare" in result.stdout


def test_mlflow_tracking_uri_from_the_environment_is_the_runs_store(make_cfg, monkeypatch, tmp_path):
    assert make_cfg().paths.mlflow_tracking_uri == f"sqlite:///{tmp_path}/outputs/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere.db")
    cfg = make_cfg()
    assert cfg.paths.mlflow_tracking_uri == f"sqlite:///{tmp_path}/elsewhere.db"
    assert cfg.logger.mlflow.tracking_uri == cfg.paths.mlflow_tracking_uri
