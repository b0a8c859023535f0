"""The tags a registered version carries: its metrics, hyper-parameters, trial, git commit and step.

Pure functions of plain values, so they are tested without MLflow. MLflow caps a tag value's length; longer
values are cut with a marker rather than refused, as a registration must not fail over one long option.
"""

from __future__ import annotations

import logging
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tuner_callbacks.mlflow_utils import flatten_for_params
from tuner_callbacks.registry.client import HPARAM_TAG_PREFIX, METRIC_TAG_PREFIX

log = logging.getLogger(__name__)

MAX_TAG_LENGTH = 5000  # MLflow's limit on a model version tag's value


def git_commit(folder: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` in ``folder`` (the working directory by default), or ``"unknown"``: a run outside
    a git checkout, or on a machine without git, still registers."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def _text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TAG_LENGTH else text[: MAX_TAG_LENGTH - 3] + "..."


def metric_tags(metrics: Mapping[str, Any]) -> dict[str, str]:
    """``{"val/loss": tensor(0.5)}`` -> ``{"metric.val/loss": "0.5"}``; values that are not numbers are left out."""
    tags = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of more than one element
            continue
        tags[f"{METRIC_TAG_PREFIX}{name}"] = repr(number) if math.isfinite(number) else str(number)
    return tags


def hparam_tags(hparams: Mapping[str, Any]) -> dict[str, str]:
    """Flattened hyper-parameters (``hparam.model_config/decoder_rnn_dim``), secrets masked."""
    return {f"{HPARAM_TAG_PREFIX}{key}": _text(value) for key, value in flatten_for_params(hparams).items()}


def plain(config: Any) -> Any:
    """A Hydra ``DictConfig``/``ListConfig`` (interpolations resolved) or a mapping as plain dicts and lists."""
    if type(config).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(config, resolve=True)
    if isinstance(config, Mapping):
        return {str(key): plain(value) for key, value in config.items()}
    if isinstance(config, list | tuple):
        return [plain(value) for value in config]
    return config
