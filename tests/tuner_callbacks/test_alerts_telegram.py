"""The Telegram channel and dispatcher against a Bot API server on 127.0.0.1, through the real python-telegram-bot:
content and files arrive, failures are retried as Telegram asks, a dead server never holds anyone up."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from tests.helpers.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
from tests.helpers.train_configs import ROOT
from tuner_callbacks.alerts import Alert, AlertDispatcher, BadCredentialsError, TelegramChannel
from tuner_callbacks.alerts.__main__ import main as alerts_cli

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture
def bot_api():
    with FakeBotApi() as server:
        yield server


def dispatcher_for(api: FakeBotApi, token: str = TOKEN, timeout_s: float = 2.0, min_interval_s: float = 0.0,
                   **options) -> AlertDispatcher:
    channel = TelegramChannel(token, CHAT_ID, base_url=api.base_url, timeout_s=timeout_s, min_interval_s=min_interval_s)
    return AlertDispatcher(channel, **{"backoff_s": 0.05, **options})


def test_message_arrives_escaped_for_html(bot_api):
    dispatcher = dispatcher_for(bot_api)
    dispatcher.send(Alert("warning", "loss < 1 & falling", ["val/loss = 0.5 <best>"]))
    assert dispatcher.close(5.0)
    [message] = bot_api.sent
    assert message.method == "sendMessage"
    assert message.fields["chat_id"] == str(CHAT_ID)
    assert message.fields["parse_mode"] == "HTML"
    assert message.text == "⚠️ <b>loss &lt; 1 &amp; falling</b>\nval/loss = 0.5 &lt;best&gt;"


def test_photo_and_audio_arrive_with_their_bytes(bot_api, tmp_path):
    photo, wav = tmp_path / "alignment.png", tmp_path / "sample.wav"
    photo.write_bytes(PNG)
    wav.write_bytes(b"RIFF....WAVEfmt ")
    dispatcher = dispatcher_for(bot_api)
    dispatcher.send(Alert("info", "Step 4", ["val/loss = 1.2"], photo=photo))
    dispatcher.send(Alert("info", "Sample", audio=wav))
    assert dispatcher.close(5.0)
    sent_photo, sent_audio = bot_api.sent
    assert sent_photo.method == "sendPhoto" and sent_photo.files["photo"] == PNG
    assert sent_photo.text == "ℹ️ <b>Step 4</b>\nval/loss = 1.2"
    assert sent_audio.method == "sendDocument" and sent_audio.files["document"] == wav.read_bytes()


def test_the_token_is_never_posted_to_the_chat(bot_api):
    dispatcher = dispatcher_for(bot_api)
    dispatcher.send(Alert("critical", "Training failed", [f"ConnectError: https://api.telegram.org/bot{TOKEN}/getMe"]))
    assert dispatcher.close(5.0)
    [message] = bot_api.sent
    assert "/bot***/getMe" in message.text and TOKEN not in message.text


def test_a_vanished_photo_still_sends_the_text(bot_api, tmp_path):
    dispatcher = dispatcher_for(bot_api)
    dispatcher.send(Alert("info", "Step 4", photo=tmp_path / "deleted.png"))
    assert dispatcher.close(5.0)
    assert [r.method for r in bot_api.sent] == ["sendMessage"]


def test_server_errors_are_retried_with_backoff(bot_api):
    bot_api.fail_next(2, status=500)
    dispatcher = dispatcher_for(bot_api, backoff_s=0.1)
    dispatcher.send(Alert("info", "persistent"))
    assert dispatcher.close(5.0)
    attempts = bot_api.calls("sendMessage")
    assert [r.status for r in attempts] == [500, 500, 200]
    gaps = [b.time - a.time for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.09 and gaps[1] >= 0.19  # 0.1 s, then doubled
    assert dispatcher.stats["delivered"] == 1


def test_a_timeout_is_retried(bot_api):
    bot_api.delay_next(1, 1.0)
    dispatcher = dispatcher_for(bot_api, timeout_s=0.3)
    dispatcher.send(Alert("info", "slow"))
    assert dispatcher.close(5.0)
    assert len(bot_api.calls("sendMessage")) == 2
    assert dispatcher.stats == {"delivered": 1, "failed": 0, "dropped": 0, "waiting": 0}


def test_429_waits_the_retry_after_it_asks_for(bot_api):
    bot_api.rate_limit_next(1, retry_after=1)
    dispatcher = dispatcher_for(bot_api, backoff_s=0.0)
    dispatcher.send(Alert("info", "flood"))
    assert dispatcher.close(5.0)
    first, second = bot_api.calls("sendMessage")
    assert (first.status, second.status) == (429, 200)
    assert second.time - first.time >= 0.95  # not backoff_s=0: Telegram's retry_after


def test_sends_to_one_chat_are_spaced_by_the_rate_limit(bot_api):
    dispatcher = dispatcher_for(bot_api, min_interval_s=0.3)
    for i in range(5):
        dispatcher.send(Alert("info", f"m{i}"))
    assert dispatcher.close(5.0)
    times = [r.time for r in bot_api.sent]
    assert len(times) == 5
    # From the second on (the first also opened the connection): 3 intervals, less a little latency jitter.
    assert times[-1] - times[1] >= 3 * 0.3 - 0.1


def test_a_dead_server_warns_once_and_drops_what_overflows_the_queue(bot_api, caplog):
    bot_api.hang = True
    dispatcher = dispatcher_for(bot_api, timeout_s=0.2, max_queue=2, max_retries=1)
    with caplog.at_level(logging.WARNING, logger="tuner_callbacks.alerts"):
        started = time.perf_counter()
        queued = [dispatcher.send(Alert("info", f"m{i}")) for i in range(20)]
        assert time.perf_counter() - started < 0.2
        assert dispatcher.close(timeout_s=5.0)  # m0: two attempts of 0.2 s; dead: the others one each
    assert 2 <= sum(queued) <= 3  # one in flight, two waiting; the rest dropped at once
    assert dispatcher.stats == {"delivered": 0, "failed": sum(queued), "dropped": 20 - sum(queued), "waiting": 0}
    assert len(bot_api.calls("sendMessage")) == sum(queued) + 1
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "is not getting through" in m]) == 1
    assert len([m for m in messages if "dropping new ones" in m]) == 1
    assert TOKEN not in caplog.text


def test_close_gives_up_on_a_server_that_never_answers_within_its_time_limit(bot_api):
    bot_api.hang = True
    dispatcher = dispatcher_for(bot_api, timeout_s=30.0)
    for i in range(3):
        dispatcher.send(Alert("info", f"m{i}"))
    assert _wait_until(lambda: bot_api.calls("sendMessage"))  # m0 is in flight
    started = time.monotonic()
    assert not dispatcher.close(timeout_s=0.5)
    assert time.monotonic() - started < 0.7
    assert dispatcher.stats["dropped"] == 3


def _wait_until(condition, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return result


def test_check_names_a_rejected_token_without_showing_it(bot_api):
    dispatcher = dispatcher_for(bot_api, token="123:wrong-token-value")
    with pytest.raises(BadCredentialsError, match="rejected the bot token") as error:
        dispatcher.check(5.0)
    assert "wrong-token-value" not in str(error.value) and error.value.__suppress_context__
    dispatcher.close(1.0)


def test_check_names_an_unknown_chat(bot_api):
    channel = TelegramChannel(TOKEN, 777, base_url=bot_api.base_url)
    dispatcher = AlertDispatcher(channel)
    with pytest.raises(BadCredentialsError, match="chat 777 not found"):
        dispatcher.check(5.0)
    assert [r.method for r in bot_api.requests] == ["getMe", "getChat"]
    dispatcher.close(1.0)


@pytest.mark.slow
def test_cli_test_sends_a_test_message(bot_api):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TELEGRAM_BOT_TOKEN": TOKEN,
           "TELEGRAM_CHAT_ID": str(CHAT_ID)}
    result = subprocess.run([sys.executable, "-m", "tuner_callbacks.alerts", "test", "--base-url", bot_api.base_url],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok: test message sent as @fake_alerts_bot -> chat 4242" in result.stdout
    [message] = bot_api.sent
    assert "Smart Tuner test message" in message.text
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize(("token", "chat", "status", "error"), [
    ("123:bad", str(CHAT_ID), 2, "rejected the bot token"),
    (TOKEN, "999", 2, "chat '999' not found"),
    ("", str(CHAT_ID), 2, "set TELEGRAM_BOT_TOKEN"),
])
def test_cli_test_reports_bad_credentials(bot_api, monkeypatch, capsys, token, chat, status, error):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", chat)
    assert alerts_cli(["test", "--base-url", bot_api.base_url]) == status
    captured = capsys.readouterr()
    assert error in captured.err
    assert not bot_api.sent
    assert (token or "unset") not in captured.out + captured.err


def test_cli_test_reports_an_unreachable_server(monkeypatch, capsys, bot_api):
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(CHAT_ID))
    bot_api.hang = True
    assert alerts_cli(["test", "--base-url", bot_api.base_url, "--timeout", "0.2"]) == 1
    assert "could not reach" in capsys.readouterr().err
