"""The best trial's validation media for the sweep report: the newest step's alignment plot, mel plot and audio
sample, read from the trial's run folder (``<output_dir>/media/step_XXXXXX/``, written by
``tacotron2_lightning.media.ValidationMedia``) or, when the folder is gone, from the artifacts of its MLflow run
(``validation/step_XXXXXX/``)."""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_callbacks.report.data import OUTPUT_DIR, RUN_ID

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

# What ValidationMedia writes per validation, in the order the report shows it.
FILES = {"alignment": "alignment.png", "inference_alignment": "inference_alignment.png", "mel": "mel.png",
         "audio": "sample.wav"}
_STEP_FOLDER = re.compile(r"^step_(\d+)$")


@dataclass(frozen=True)
class TrialMedia:
    step: int | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # key of FILES -> file contents
    source: str = ""  # where they were found, for the report to say
    missing: list[str] = field(default_factory=list)  # why nothing was found, place by place


def _newest_step(names: list[str]) -> tuple[int, str] | None:
    steps = [(int(m.group(1)), name) for name in names if (m := _STEP_FOLDER.match(name))]
    return max(steps, default=None)


def _from_disk(output_dir: Path) -> TrialMedia | None:
    media = output_dir / "media"
    newest = _newest_step([p.name for p in media.iterdir() if p.is_dir()]) if media.is_dir() else None
    if newest is None:
        return None
    folder = media / newest[1]
    files = {key: (folder / name).read_bytes() for key, name in FILES.items() if (folder / name).is_file()}
    return TrialMedia(newest[0], files, f"{folder}") if files else None


def _from_mlflow(client: MlflowClient, run_id: str) -> TrialMedia | None:
    folders = [Path(info.path).name for info in client.list_artifacts(run_id, "validation") if info.is_dir]
    newest = _newest_step(folders)
    if newest is None:
        return None
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(client.download_artifacts(run_id, f"validation/{newest[1]}", scratch))
        files = {key: (local / name).read_bytes() for key, name in FILES.items() if (local / name).is_file()}
    return TrialMedia(newest[0], files, f"MLflow run {run_id}, artifacts validation/{newest[1]}") if files else None


def find_media(trial: FrozenTrial, client: MlflowClient | None) -> TrialMedia:
    """The newest step's media of ``trial``: its run folder first, then its MLflow run; empty with reasons if
    neither has any (the report then says so instead of failing)."""
    missing = []
    output_dir = trial.user_attrs.get(OUTPUT_DIR)
    if output_dir:
        try:
            found = _from_disk(Path(output_dir))
        except OSError as error:
            found, missing = None, [*missing, f"{output_dir} could not be read ({error})"]
        if found:
            return found
        missing.append(f"no media/step_*/ with media files under {output_dir}")
    else:
        missing.append(f"trial {trial.number} has no {OUTPUT_DIR!r} attribute")
    run_id = trial.user_attrs.get(RUN_ID)
    if not run_id:
        missing.append(f"trial {trial.number} has no {RUN_ID!r} attribute")
    elif client is None:
        missing.append(f"MLflow run {run_id} not searched: no MLflow store to read")
    else:
        try:
            found = _from_mlflow(client, run_id)
        except Exception as error:  # a deleted run, an artifact store that is gone
            log.warning("Sweep report: could not read the media of MLflow run %s: %s", run_id, error)
            found, missing = None, [*missing, f"MLflow run {run_id} could not be read ({error})"]
        else:
            if not found:
                missing.append(f"MLflow run {run_id} has no validation/step_*/ artifacts")
        if found:
            return found
    return TrialMedia(missing=missing)
