"""`train(cfg)` with `callbacks=[default,telegram_alerts]`: a tiny Tacotron2 run reports to a Bot API server on
127.0.0.1, with ValidationMedia's alignment plot, and its token ends up in no log, file, parameter or checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tacotron2_lightning.app.training import train
from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi


@pytest.mark.slow
def test_a_tacotron2_run_reports_with_its_alignment_plot_and_leaks_no_token(make_cfg, tmp_path, monkeypatch, caplog,
                                                                           capsys):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(CHAT_ID))
    caplog.set_level(logging.DEBUG)  # everything any library logs, httpx's request URLs included
    with FakeBotApi() as api:
        cfg = make_cfg(["callbacks=[default,telegram_alerts]", f"callbacks.telegram_alerts.base_url={api.base_url}",
                        "callbacks.telegram_alerts.min_interval_s=0"])
        _, objects = train(cfg)
        sent = api.sent
    summary = objects["summary"]

    titles = [r.text.split("\n")[0] for r in sent]
    assert titles == ["🚀 <b>Training started</b>", "📊 <b>Step 2 · validation 1</b>",
                      "📊 <b>Step 4 · validation 2</b>", "✅ <b>Training finished</b>"]
    start, first, second, end = sent
    for line in ("model: Tacotron2Module", "task: train", "batch_size: 4", "learning_rate: 0.003",
                 f"MLflow run: {summary['mlflow_run_id']}"):
        assert line in start.text
    media = Path(cfg.paths.output_dir) / "media"
    assert first.method == "sendPhoto"
    assert first.files["photo"] == (media / "step_000002" / "alignment.png").read_bytes()
    assert second.files["photo"] == (media / "step_000004" / "alignment.png").read_bytes()
    assert "val/alignment_score = " in first.text and "best: val/loss = " in first.text
    assert f"checkpoint: {summary['best_checkpoint']}" in end.text and summary["mlflow_run_id"] in end.text

    # The token went out in every request URL; it must come back nowhere.
    assert "/bot***/sendPhoto" in caplog.text  # httpx's request log was captured, redacted
    captured = capsys.readouterr()
    assert TOKEN not in caplog.text + captured.out + captured.err
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".ckpt" for p in files) and any(p.name == "mlflow.db" for p in files)
    leaking = [str(p) for p in files if TOKEN.encode() in p.read_bytes()]
    assert leaking == []
