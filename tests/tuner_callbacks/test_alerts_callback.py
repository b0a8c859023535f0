"""TelegramAlerts in a Trainer, against a Bot API server on 127.0.0.1: what a run sends and when, stop reasons,
exceptions, bad credentials, a dead server, resuming, and ranks other than zero."""

from __future__ import annotations

import logging
import time

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.strategies import SingleDeviceStrategy

from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
from tests.helpers.toy_module import ToyRegression, toy_loader, toy_trainer
from tuner_callbacks import SmartEarlyStopping
from tuner_callbacks.alerts import AlertsConfigError, TelegramAlerts
from tuner_callbacks.stop_reason import StopReason, set_stop_reason

PNG = b"\x89PNG\r\n\x1a\n" + b"alignment plot"


@pytest.fixture
def bot_api():
    with FakeBotApi() as server:
        yield server


def alerts(api: FakeBotApi, **options) -> TelegramAlerts:
    fast = dict(token=TOKEN, chat_id=CHAT_ID, base_url=api.base_url, min_interval_s=0.0, backoff_s=0.05,
                check_timeout_s=2.0, timeout_s=2.0, flush_timeout_s=5.0)
    return TelegramAlerts(**{**fast, **options})


def fit(tmp_path, callbacks, module=None, checkpoint=True, ckpt_path=None, **trainer_options) -> pl.Trainer:
    if checkpoint:
        callbacks = [*callbacks, ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/loss", save_last=True)]
    trainer = toy_trainer(tmp_path, callbacks, enable_checkpointing=checkpoint, **trainer_options)
    trainer.fit(module or ToyRegression(), toy_loader(), toy_loader(n=8), ckpt_path=ckpt_path)
    return trainer


def titles(api: FakeBotApi) -> list[str]:
    """The first line of each delivered message, without markup."""
    return [r.text.split("\n")[0].split("<b>")[1].removesuffix("</b>") for r in api.sent]


class KeepsPlots(pl.Callback):
    """Draws nothing: writes a PNG per validation and keeps it in ``latest``, as ValidationMedia does."""

    def __init__(self, folder):
        self.folder, self.latest = folder, {}

    def on_validation_epoch_end(self, trainer, pl_module):
        path = self.folder / f"alignment_{trainer.global_step}.png"
        path.write_bytes(PNG + str(trainer.global_step).encode())
        self.latest = {"step": trainer.global_step, "alignment": path}


def test_a_run_sends_start_summaries_new_bests_and_end(bot_api, tmp_path):
    scripted = {"val/loss": [5.0, 4.0, 4.5, 3.0, 3.5, 2.0]}
    trainer = fit(tmp_path, [alerts(bot_api, every_n_validations=3, metrics=["val/loss"]), KeepsPlots(tmp_path)],
                  ToyRegression(scripted=scripted), max_steps=6)
    assert titles(bot_api) == ["Training started", "Step 1 · validation 1", "New best at step 2",
                               "Step 4 · validation 4", "New best at step 6", "Training finished"]
    start, summary, best, summary_4, _, end = bot_api.sent
    assert "model: ToyRegression" in start.text and "max_steps: 6" in start.text
    assert summary.method == "sendPhoto" and summary.files["photo"] == PNG + b"1"
    assert summary.text.split("\n")[1:] == ["val/loss = 5", "best: val/loss = 5 (new)"]
    assert best.method == "sendMessage" and "val/loss = 4 (was 5)" in best.text
    assert summary_4.files["photo"] == PNG + b"4"
    assert "steps: 6" in end.text and "best val/loss: 2" in end.text
    assert f"checkpoint: {trainer.checkpoint_callback.best_model_path}" in end.text


def test_early_stop_sends_its_reason_and_min_level_filters(bot_api, tmp_path):
    stopper = SmartEarlyStopping("val/loss", patience=2, verbose=False)
    trainer = fit(tmp_path, [stopper, alerts(bot_api, min_level="warning")],
                  ToyRegression(scripted={"val/loss": [1.0, 2.0, 3.0, 4.0]}), max_steps=10)
    assert trainer.global_step == 3
    [message] = bot_api.sent  # start, summaries and end are "info"
    assert message.text.startswith("⏹ <b>Training stopped early at step 3: patience</b>")
    assert "val/loss did not improve" in message.text


class PrunesAtStep(pl.Callback):
    """Stops the run the way TrialPruning does: a "pruning" stop reason and should_stop."""

    def __init__(self, step):
        self.step = step

    def on_validation_end(self, trainer, pl_module):
        if trainer.global_step == self.step:
            set_stop_reason(trainer, StopReason("pruning", "pruned", "val/loss 2.1 worse than the median 1.4",
                                                trainer.global_step, "val/loss", 2.1))
            trainer.should_stop = True


def test_a_pruned_trial_says_so_instead_of_complete(bot_api, tmp_path):
    fit(tmp_path, [PrunesAtStep(2), alerts(bot_api, trial_number=3, study_name="tts", every_n_validations=10)],
        ToyRegression(scripted={"val/loss": [1.0, 2.0]}), max_steps=10)
    assert titles(bot_api) == ["Trial 3 (tts) started", "Step 1 · validation 1", "Trial 3 (tts) pruned at step 2"]
    assert "worse than the median" in bot_api.sent[-1].text


class Explodes(ToyRegression):
    def training_step(self, batch, batch_idx):
        if self.global_step == 2:
            raise FloatingPointError("loss is <nan> & rising")
        return super().training_step(batch, batch_idx)


def test_an_exception_is_sent_with_its_frames_and_still_raised(bot_api, tmp_path):
    with pytest.raises(FloatingPointError):
        fit(tmp_path, [alerts(bot_api, trial_number=1, every_n_validations=10)], Explodes(), max_steps=10)
    assert titles(bot_api)[0] == "Trial 1 started"
    failure = bot_api.sent[-1]
    assert failure.text.startswith("💥 <b>Trial 1 failed</b>\nFloatingPointError: loss is &lt;nan&gt; &amp; rising\n"
                                   "at step 2\n")
    assert "in training_step: raise FloatingPointError" in failure.text


def test_a_rejected_token_fails_the_run_at_start_without_showing_the_token(bot_api, tmp_path):
    bad = "111:this-token-is-rejected"
    with pytest.raises(AlertsConfigError, match="rejected the bot token.*on_bad_token=continue") as error:
        fit(tmp_path, [alerts(bot_api, token=bad)])
    assert bad not in str(error.value)
    assert not bot_api.sent and [r.method for r in bot_api.requests] == ["getMe"]


def test_a_rejected_chat_can_continue_with_alerts_in_the_log(bot_api, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tuner_callbacks.alerts"):
        trainer = fit(tmp_path, [alerts(bot_api, chat_id=777, on_bad_token="continue")], max_steps=2)
    assert trainer.global_step == 2 and not bot_api.sent
    assert "chat 777 not found" in caplog.text and "alerts go to the log instead" in caplog.text
    assert "[info] Training started: model: ToyRegression" in caplog.text
    assert "[info] Training finished: duration" in caplog.text


def test_without_a_token_alerts_go_to_the_log(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with caplog.at_level(logging.INFO, logger="tuner_callbacks.alerts"):
        fit(tmp_path, [TelegramAlerts(every_n_validations=2, metrics=["val/loss"])], max_steps=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "tuner_callbacks.alerts.channels"]
    assert [line.split(":")[0] for line in lines] == ["[info] Training started", "[info] Step 1 · validation 1",
                                                      "[info] New best at step 2", "[info] Training finished"]


def test_a_server_that_never_answers_does_not_hold_up_training(bot_api, tmp_path):
    started = time.monotonic()
    fit(tmp_path / "plain", [], max_steps=20)
    baseline = time.monotonic() - started
    bot_api.hang = True
    options = dict(check_timeout_s=0.3, timeout_s=0.3, flush_timeout_s=1.0, max_retries=1)
    started = time.monotonic()
    trainer = fit(tmp_path / "alerts", [alerts(bot_api, **options)], max_steps=20)
    assert trainer.global_step == 20
    # The start-up check and the final flush are the only waits: never one per message (20+ messages x 0.6 s).
    assert time.monotonic() - started < baseline + 0.3 + 1.0 + 2.0
    assert not bot_api.sent and bot_api.calls("getMe")


def test_resume_continues_the_count_and_does_not_repeat_the_best(bot_api, tmp_path):
    scripted = {"val/loss": [3.0, 2.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0]}
    first = alerts(bot_api, every_n_validations=3)
    trainer = fit(tmp_path, [first], ToyRegression(scripted=scripted), max_steps=4)
    trainer.save_checkpoint(tmp_path / "end.ckpt")
    state = first.state_dict()
    assert state["validations"] == 4 and state["elapsed_s"] > 0
    restored = TelegramAlerts()
    restored.load_state_dict(state)
    assert restored.validations == 4 and restored.elapsed_s == state["elapsed_s"]
    assert TOKEN not in repr(state) and TOKEN not in repr(first)

    bot_api.requests.clear()
    resumed = alerts(bot_api, every_n_validations=3)
    module = ToyRegression(scripted=scripted)
    module.validations = 4  # the scripted sequence goes on where it stopped
    fit(tmp_path, [resumed], module, ckpt_path=str(tmp_path / "end.ckpt"), max_steps=8)
    # Validations 5 to 8 (a summary at the 7th); the best of step 2 came back with the checkpoint: not news.
    assert titles(bot_api) == ["Training started", "Step 7 · validation 7", "Training finished"]
    assert "resumed at step: 4" in bot_api.sent[0].text
    assert "best: " not in bot_api.sent[1].text
    assert resumed.validations == 8 and resumed.state_dict()["elapsed_s"] > state["elapsed_s"]


def test_resume_with_another_min_level_keeps_the_count(bot_api, tmp_path):
    first = alerts(bot_api, min_level="info")
    fit(tmp_path, [first], max_steps=4).save_checkpoint(tmp_path / "end.ckpt")
    resumed = alerts(bot_api, min_level="warning")
    assert resumed.state_key == first.state_key  # which alerts are sent does not identify the count
    fit(tmp_path, [resumed], ckpt_path=str(tmp_path / "end.ckpt"), max_steps=6)
    assert resumed.validations == 6


def test_a_checkpoint_keyed_by_chat_and_min_level_resumes_each_chats_count(bot_api, tmp_path):
    ours, theirs = alerts(bot_api), alerts(bot_api, chat_id="@other")
    assert ours.state_key != theirs.state_key
    fit(tmp_path, [ours], max_steps=4).save_checkpoint(tmp_path / "end.ckpt")
    checkpoint = torch.load(tmp_path / "end.ckpt", weights_only=True)
    state = checkpoint["callbacks"].pop(ours.state_key)
    checkpoint["callbacks"][f"TelegramAlerts{{'chat_id': {CHAT_ID!r}, 'min_level': 'info'}}"] = state
    checkpoint["callbacks"]["TelegramAlerts{'chat_id': '@other', 'min_level': 'info'}"] = {**state, "validations": 1}
    torch.save(checkpoint, tmp_path / "end.ckpt")
    resumed = alerts(bot_api, min_level="critical")
    fit(tmp_path, [resumed], ckpt_path=str(tmp_path / "end.ckpt"), max_steps=6)
    assert resumed.validations == 6


class NotRankZero(SingleDeviceStrategy):
    """One process that believes it is a DDP rank other than zero."""

    @property
    def is_global_zero(self) -> bool:
        return False


def test_ranks_other_than_zero_stay_quiet(bot_api, tmp_path):
    fit(tmp_path, [alerts(bot_api)], checkpoint=False, max_steps=3, strategy=NotRankZero(torch.device("cpu")))
    assert bot_api.requests == []


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="`on_bad_token` must be 'fail' or 'continue', got 'ignore'"):
        TelegramAlerts(on_bad_token="ignore")
    with pytest.raises(ValueError, match="`every_n_validations` must be an integer >= 1, got 0"):
        TelegramAlerts(every_n_validations=0)
    with pytest.raises(ValueError, match="`flush_timeout_s` must be a finite number > 0, got -1"):
        TelegramAlerts(flush_timeout_s=-1)
