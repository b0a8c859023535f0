"""Alerts without a server: rendering and escaping, templates, levels, the dispatcher's queue, secrets in logs."""

from __future__ import annotations

import asyncio
import html
import logging
import pickle
import threading
import time

import pytest

from tuner_callbacks.alerts import (
    Alert,
    AlertDispatcher,
    AlertsConfigError,
    LogChannel,
    RetryableError,
    Secret,
    TelegramAlerts,
    TelegramChannel,
    build_dispatcher,
    render_html,
    render_text,
    sweep_summary_alert,
    templates,
)
from tuner_callbacks.alerts.rate_limit import default_interval
from tuner_callbacks.alerts.redaction import RedactingFilter

TOKEN = "987654:SecretUnitTestToken_abc"


def test_html_escapes_title_and_lines():
    alert = Alert("warning", "val/loss < 0.5 & <b>bold</b>", ["x < y & z > w", "plain"])
    text = render_html(alert)
    assert text == ("⚠️ <b>val/loss &lt; 0.5 &amp; &lt;b&gt;bold&lt;/b&gt;</b>\n"
                    "x &lt; y &amp; z &gt; w\nplain")


@pytest.mark.parametrize("limit", [40, 100, 1024])
@pytest.mark.parametrize("line", ["a" * 3000, "&<>" * 1000, "é&" * 900])
def test_html_is_cut_to_the_limit_without_splitting_an_entity(limit, line):
    text = render_html(Alert("info", "title", [line, "second line"]), limit=limit)
    assert len(text) <= limit
    assert text.endswith("…")
    # Every & starts a complete entity: the cut fell between characters of the plain text.
    body = text.split("\n", 1)[1].removesuffix("…")
    assert html.escape(html.unescape(body), quote=False) == body


def test_alert_checks_level_and_attachments(tmp_path):
    with pytest.raises(ValueError, match="'debug'"):
        Alert("debug", "x")
    with pytest.raises(ValueError, match="one file"):
        Alert("info", "x", photo=tmp_path / "a.png", audio=tmp_path / "a.wav")
    assert render_text(Alert("critical", "Boom", ["a", "b"])) == "[critical] Boom: a | b"


def _raise_nested():
    def inner():
        raise ValueError("bad <value> & more")

    inner()


def test_exception_alert_has_type_message_and_last_frames():
    try:
        _raise_nested()
    except ValueError as error:
        alert = templates.exception_alert(error, step=12, trial_number=3, study_name="tts")
    assert (alert.level, alert.title) == ("critical", "Trial 3 (tts) failed")
    assert alert.lines[0] == "ValueError: bad <value> & more"
    assert alert.lines[1] == "at step 12"
    assert alert.lines[-1].startswith("test_alerts.py:")
    assert alert.lines[-1].endswith('raise ValueError("bad <value> & more")')
    assert "in inner" in alert.lines[-1] and "in _raise_nested" in alert.lines[-2]
    assert "bad &lt;value&gt; &amp; more" in render_html(alert)


def test_interruption_is_a_warning_not_a_failure():
    alert = templates.exception_alert(KeyboardInterrupt())
    assert (alert.level, alert.title) == ("warning", "Training interrupted")


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (42.4, "42s"), (61, "1m 01s"), (3725, "1h 02m 05s")])
def test_format_duration(seconds, text):
    assert templates.format_duration(seconds) == text


def test_sweep_summary_alert_from_plain_values():
    alert = sweep_summary_alert("tts", {"COMPLETE": 12, "PRUNED": 7, "FAIL": 1, "RUNNING": 0}, 0.41234,
                                {"lr": 0.001, "batch_size": 32}, metric="val/loss", best_trial=9, duration_s=3600)
    assert alert.title == "Sweep tts finished" and alert.kind == "sweep_summary"
    assert alert.lines == ("trials: 20 (12 complete, 7 pruned, 1 fail)", "duration: 1h 00m 00s",
                           "best val/loss: 0.4123 (trial 9)", "  lr = 0.001", "  batch_size = 32")


def test_sweep_summary_alert_says_why_a_sweep_stopped_early():
    alert = sweep_summary_alert("tts", {"COMPLETE": 3}, 0.4, metric="val/loss", best_trial=2, duration_s=60,
                                stopped_early="target: trial 2 reached 0.4 (<= 0.45)")
    assert alert.title == "Sweep tts stopped early"
    assert alert.lines == ("trials: 3 (3 complete)", "duration: 1m 00s",
                           "stopped early: target: trial 2 reached 0.4 (<= 0.45)", "best val/loss: 0.4 (trial 2)")


def test_end_alert_speaks_of_the_trial_under_a_sweep():
    plain = templates.end_alert(65, 600, "val/loss", 0.5, "/ckpt/best.ckpt", "abc123")
    assert plain.title == "Training finished"
    assert plain.lines == ("duration: 1m 05s", "steps: 600", "best val/loss: 0.5", "checkpoint: /ckpt/best.ckpt",
                           "MLflow run: abc123")
    assert templates.end_alert(1, 2, trial_number=4).title == "Trial 4 complete"


def _drain(dispatcher: AlertDispatcher) -> None:
    assert dispatcher.close(timeout_s=5.0)


def test_log_channel_and_min_level(caplog):
    dispatcher = AlertDispatcher(LogChannel(), min_level="warning")
    with caplog.at_level(logging.INFO, logger="tuner_callbacks.alerts"):
        assert not dispatcher.send(Alert("info", "quiet"))
        assert dispatcher.send(Alert("warning", "stopped early", ["patience"]))
        assert dispatcher.send(Alert("critical", "failed"))
        _drain(dispatcher)
    lines = [r.getMessage() for r in caplog.records if r.name == "tuner_callbacks.alerts.channels"]
    assert lines == ["[warning] stopped early: patience", "[critical] failed"]
    assert dispatcher.stats["delivered"] == 2
    assert not dispatcher.send(Alert("critical", "after close"))


def test_min_level_is_checked():
    with pytest.raises(ValueError, match="`min_level` must be one of 'info', 'warning', 'critical', got 'error'"):
        AlertDispatcher(LogChannel(), min_level="error")


class GateChannel:
    """A channel whose sends wait for ``gate`` (a threading.Event), and fail while ``failing`` is set."""

    name = "gate"

    def __init__(self):
        self.gate = threading.Event()
        self.failing = False
        self.sent: list[str] = []
        self.attempts = 0

    async def check(self) -> str:
        return "gate"

    async def send(self, alert: Alert) -> None:
        self.attempts += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        if self.failing:
            raise RetryableError("down")
        self.sent.append(alert.title)

    async def close(self) -> None:
        pass


def test_send_never_blocks_and_a_full_queue_drops_with_one_warning(caplog):
    channel = GateChannel()
    dispatcher = AlertDispatcher(channel, max_queue=3)
    with caplog.at_level(logging.WARNING, logger="tuner_callbacks.alerts"):
        dispatcher.send(Alert("info", "first"))
        deadline = time.monotonic() + 5
        while channel.attempts == 0 and time.monotonic() < deadline:  # "first" is in flight, the queue is empty
            time.sleep(0.005)
        started = time.perf_counter()
        queued = [dispatcher.send(Alert("info", f"a{i}")) for i in range(10)]
        assert time.perf_counter() - started < 0.5  # the gate is shut: nothing waited for the channel
        channel.gate.set()
        _drain(dispatcher)
    assert queued == [True] * 3 + [False] * 7
    assert channel.sent == ["first", "a0", "a1", "a2"]
    assert dispatcher.stats == {"delivered": 4, "failed": 0, "dropped": 7, "waiting": 0}
    assert len([r for r in caplog.records if "dropping new ones" in r.getMessage()]) == 1


def test_a_dead_channel_warns_once_and_revives(caplog):
    channel = GateChannel()
    channel.gate.set()
    channel.failing = True
    dispatcher = AlertDispatcher(channel, max_retries=2, backoff_s=0.0)
    with caplog.at_level(logging.WARNING, logger="tuner_callbacks.alerts"):
        for i in range(4):
            dispatcher.send(Alert("info", f"lost {i}"))
        deadline = time.monotonic() + 5
        while dispatcher.stats["failed"] < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        channel.failing = False
        dispatcher.send(Alert("info", "back"))
        _drain(dispatcher)
    # 3 attempts for the first alert; once dead, one each.
    assert channel.attempts == 3 + 3 + 1
    assert channel.sent == ["back"]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "is not getting through" in m]) == 1
    assert len([m for m in messages if "delivers again" in m]) == 1


def test_close_respects_its_time_limit_with_a_stuck_channel(caplog):
    channel = GateChannel()  # never opened: every send waits forever
    dispatcher = AlertDispatcher(channel)
    for i in range(3):
        dispatcher.send(Alert("info", f"stuck {i}"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tuner_callbacks.alerts"):
        assert not dispatcher.close(timeout_s=0.4)
    assert time.monotonic() - started < 0.6
    assert dispatcher.stats["dropped"] == 3
    assert "3 alert(s) not delivered to the gate channel within 0.4 s" in caplog.text


def test_build_dispatcher_falls_back_to_the_log_and_reads_the_environment(monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("TELEGRAM_CHAT_ID", raising=False)
    dispatcher = build_dispatcher()
    assert isinstance(dispatcher.channel, LogChannel)
    _drain(dispatcher)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    with pytest.raises(AlertsConfigError, match="TELEGRAM_CHAT_ID") as error:
        build_dispatcher()
    assert TOKEN not in str(error.value)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "-1001234")
    dispatcher = build_dispatcher(min_level="critical")
    assert isinstance(dispatcher.channel, TelegramChannel)
    assert dispatcher.channel.chat_id == "-1001234"
    assert TOKEN not in repr(dispatcher) and TOKEN not in repr(vars(dispatcher.channel))
    _drain(dispatcher)


def test_secret_hides_its_value():
    secret = Secret(TOKEN)
    assert TOKEN not in f"{secret} {secret!r} {[secret]}"
    assert secret.reveal() == TOKEN
    # ddp_spawn pickles the callbacks to its processes: the token has to travel with them.
    assert pickle.loads(pickle.dumps(TelegramAlerts(token=TOKEN)))._token.reveal() == TOKEN


def test_redacting_filter_rewrites_messages_and_tracebacks(caplog):
    redactor = RedactingFilter(Secret(TOKEN))
    redactor.install()
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("httpx").info("HTTP Request: POST %s", f"https://api.telegram.org/bot{TOKEN}/getMe")
            try:
                raise RuntimeError(f"The token `{TOKEN}` was rejected")
            except RuntimeError:
                logging.getLogger("telegram.Bot").exception("failed")
    finally:
        redactor.uninstall()
    assert "bot***/getMe" in caplog.text and "The token `***` was rejected" in caplog.text
    assert TOKEN not in caplog.text
    assert not logging.getLogger("httpx").filters  # uninstall left the logger as it was


@pytest.mark.parametrize(("chat_id", "interval"), [(4242, 1.0), ("4242", 1.0), (-1001234, 3.0), ("@news", 3.0)])
def test_default_interval_follows_telegrams_limits(chat_id, interval):
    assert default_interval(chat_id) == interval


def test_telegram_channel_checks_its_arguments():
    with pytest.raises(ValueError, match="`base_url` must be a URL ending in /bot .*got 'http://localhost:8081'"):
        TelegramChannel(TOKEN, 42, base_url="http://localhost:8081")
    with pytest.raises(ValueError, match="`chat_id` must be a chat id or @channel name, got ''"):
        TelegramChannel(TOKEN, "")
