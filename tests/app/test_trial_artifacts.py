"""What a sweep trial's job records in its Optuna trial: its run, final metrics, and validation media
(``optuna.artifacts``, best effort)."""

from __future__ import annotations

import logging
import math

import optuna
from omegaconf import OmegaConf
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

from tacotron2_lightning.app.training import _attach_media, _record_trial


def test_the_final_finite_metrics_are_recorded_for_the_report(tmp_path):
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()
    cfg = OmegaConf.create({"trial": {"study_name": "s", "storage": storage, "number": 0, "artifact_dir": None},
                            "paths": {"output_dir": str(tmp_path)}, "trainer": {"max_steps": 10}})
    summary = {"mlflow_run_id": "r", "best_checkpoint": None, "last_checkpoint": None, "global_step": 10,
               "mlflow_tracking_uri": None}
    _record_trial(cfg, summary, metrics={"val/loss": 1.5, "val/alignment_error_ratio": 0.8, "val/mcd": math.nan})
    attrs = study.trials[0].user_attrs
    assert attrs["metrics"] == {"val/loss": 1.5, "val/alignment_error_ratio": 0.8}
    assert (attrs["mlflow_run_id"], attrs["global_step"]) == ("r", 10)


def test_the_media_files_are_attached_and_a_missing_one_is_only_warned_about(tmp_path, caplog):
    (tmp_path / "alignment.png").write_bytes(b"png")
    (tmp_path / "sample.wav").write_bytes(b"wav")
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}")
    trial = study.ask()
    media = {"step": 4, "alignment": tmp_path / "alignment.png", "mel": tmp_path / "gone.png",
             "audio": tmp_path / "sample.wav", "text": "not a file"}
    with caplog.at_level(logging.WARNING):
        _attach_media(trial, str(tmp_path / "artifacts"), media)
    assert "gone.png" in caplog.text
    metas = {meta.filename: meta for meta in get_all_artifact_meta(trial, storage=study._storage)}
    assert set(metas) == {"alignment.png", "sample.wav"}
    download_artifact(artifact_store=FileSystemArtifactStore(tmp_path / "artifacts"),
                      artifact_id=metas["sample.wav"].artifact_id, file_path=str(tmp_path / "back.wav"))
    assert (tmp_path / "back.wav").read_bytes() == b"wav"
