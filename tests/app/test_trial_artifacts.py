"""A sweep trial's validation media attached to its Optuna trial (``optuna.artifacts``), best effort."""

from __future__ import annotations

import logging

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

from tacotron2_lightning.app.training import _attach_media


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
