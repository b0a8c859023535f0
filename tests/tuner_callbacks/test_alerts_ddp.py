"""TelegramAlerts under DDP on 2 CPU processes (gloo): rank zero alone talks to the Bot API, and a rejected
token fails every rank instead of leaving the others waiting. Run as a script, this file is the training job."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
from tests.helpers.train_configs import ROOT


def run_ddp_job(base_url: str, token: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, __file__, base_url, token], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_under_ddp_only_rank_zero_sends_and_a_bad_token_fails_all_ranks():
    with FakeBotApi() as api:
        result = run_ddp_job(api.base_url, TOKEN)
        assert result.returncode == 0, result.stderr[-3000:]
        assert [r.method for r in api.requests] == ["getMe", "getChat", "sendMessage", "sendMessage"]
        titles = [r.text.split("\n")[0] for r in api.sent]
        assert titles == ["🚀 <b>Training started</b>", "✅ <b>Training finished</b>"]
        assert "devices: 2 × CPU" in api.sent[0].text

        api.requests.clear()
        bad = "111:rejected-under-ddp"
        result = run_ddp_job(api.base_url, bad)
        assert result.returncode != 0  # and it returned: rank 1 did not wait forever for rank 0
        assert "AlertsConfigError: TelegramAlerts: Telegram rejected the bot token" in result.stderr
        assert bad not in result.stdout + result.stderr
        assert [r.method for r in api.requests] == ["getMe"]


if __name__ == "__main__":
    import pytorch_lightning as pl

    from tests.helpers.toy_module import ToyRegression, toy_loader
    from tuner_callbacks.alerts import TelegramAlerts

    base_url, token = sys.argv[1:3]
    alerts = TelegramAlerts(token=token, chat_id=CHAT_ID, base_url=base_url, min_interval_s=0.0, every_n_validations=10,
                            notify_new_best=False, check_timeout_s=5.0, timeout_s=5.0)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=[alerts])
    trainer.fit(ToyRegression(), toy_loader())
    # Lightning leaves the process group up; gloo's threads then abort the exit now and then (SIGABRT).
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
