"""The MLflow run watcher: pure row logic on tables, then the watcher following a run that another process writes,
and the CLI's exits (missing store, unreachable server, Ctrl-C)."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.helpers.mlflow_stores import fresh_mlflow_store
from tuner_callbacks.contract import TAG_STOP_CRITERION, TAG_STOP_MESSAGE, TAG_STOP_SOURCE, TAG_STOP_STEP
from tuner_callbacks.mlflow_utils import redact_url
from tuner_callbacks.watch import main, render, snapshot, watch
from tuner_callbacks.watch.rows import (
    describe_state,
    lower_is_better,
    step_rate,
    trend,
)
from tuner_callbacks.watch.store import StoreUnavailableError, connect, local_store_path

ROOT = Path(__file__).resolve().parents[2]
METRICS = ["train/loss", "val/alignment_score"]
PLATEAU = {TAG_STOP_SOURCE: "early_stopping", TAG_STOP_CRITERION: "plateau", TAG_STOP_STEP: "60",
           TAG_STOP_MESSAGE: "val/loss spread 0.1% over 5 checks [window=5]"}  # brackets: not rich markup

# A separate process that writes one run in three phases; each waits for the test to touch go<N> and ends by
# touching done<N>, so the test looks at the store at known moments without sleeping on guesses.
WRITER = """
import sys, time
from pathlib import Path
from mlflow import MlflowClient

uri, experiment, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])

def phase(n):
    deadline = time.time() + 60
    while not (folder / f"go{n}").exists():
        if time.time() > deadline:
            sys.exit(f"go{n} never came")
        time.sleep(0.05)

client = MlflowClient(uri)
experiment_id = client.get_experiment_by_name(experiment).experiment_id
phase(1)
run_id = client.create_run(experiment_id, run_name="writer-run", tags={"optuna.study": "demo", "optuna.trial": "4"}
                           ).info.run_id
for step in (10, 20, 30):
    client.log_metric(run_id, "train/loss", 1.0 / step, step=step)
    time.sleep(0.02)
(folder / "done1").touch()
phase(2)
for step in (40, 50, 60):
    client.log_metric(run_id, "train/loss", 1.0 / step, step=step)
    client.log_metric(run_id, "val/alignment_score", step / 100, step=step)
    time.sleep(0.02)
(folder / "done2").touch()
phase(3)
for key, value in {tags!r}.items():
    client.set_tag(run_id, key, value)
client.set_terminated(run_id, "FINISHED")
(folder / "done3").touch()
""".replace("{tags!r}", repr(PLATEAU))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """One SQLite store per module: creating MLflow's schema takes seconds."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow")
    uri = fresh_mlflow_store(tmp_path_factory, folder)
    client = MlflowClient(uri)
    for name in ("follow", "train", "other", "many", "cli"):
        client.create_experiment(name, artifact_location=str(folder / "artifacts" / name))
    return uri, folder


def shown(client, experiments, **kwargs) -> str:
    """What one refresh of the watcher prints, as plain text on a wide console."""
    console = Console(file=io.StringIO(), width=260, record=True, color_system=None)
    watch(client, experiments, METRICS, refresh_s=0.01, iterations=1, console=console, **kwargs)
    return console.export_text()


def line_of(text: str, run_name: str) -> str:
    lines = [line for line in text.splitlines() if run_name in line]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(("values", "metric", "arrow", "improving"), [
    ([1.0, 0.9, 0.8], "train/loss", "↓", True),
    ([0.8, 0.9, 1.0], "val/loss", "↑", False),
    ([0.2, 0.3, 0.5], "val/alignment_score", "↑", True),
    ([0.5, 0.3, 0.2], "val/alignment_score", "↓", False),
    ([1e-3, 2e-3, 3e-3], "lr-Adam", "↑", None),  # no better direction for a learning rate
    ([1.0, 1.001, 0.999, 1.0], "val/loss", "→", None),  # within 1% of the mean before
    ([0.5], "val/loss", "", None),  # one value: no trend yet
    ([1.0, float("nan")], "val/loss", "", None),
])
def test_trend(values, metric, arrow, improving):
    view = trend(values, metric)
    assert (view.trend, view.improving) == (arrow, improving)
    assert view.value == values[-1] or view.value != view.value


def test_trend_refuses_no_values():
    with pytest.raises(ValueError, match="empty"):
        trend([], "val/loss")


@pytest.mark.parametrize(("name", "lower"), [("val/mel_loss", True), ("val/diagonality", False), ("lr-Adam", None)])
def test_lower_is_better(name, lower):
    assert lower_is_better(name) is lower


@pytest.mark.parametrize(("points", "rate"), [
    ([(0, 0), (100, 10_000)], 10.0),
    ([(0, 0), (0, 500), (50, 5_000), (50, 9_000), (100, 10_000)], 10.0),  # a step counts when first logged
    ([(5, 1_000)], None),
    ([(5, 1_000), (6, 1_000)], None),  # same timestamp: no rate rather than a division by zero
    ([(i, i * 1000) for i in range(100)] + [(200, 100_000)], (200 - 91) / 9),  # over the last 10 steps only
])
def test_step_rate(points, rate):
    assert step_rate(points) == (pytest.approx(rate) if rate else None)


@pytest.mark.parametrize(("status", "tags", "quiet", "state", "reason"), [
    ("RUNNING", {}, 5.0, "running", ""),
    ("RUNNING", {}, 1800.0, "running, quiet for 30 min", ""),
    ("RUNNING", PLATEAU, 5.0, "early-stopped (plateau), finishing", PLATEAU[TAG_STOP_MESSAGE]),
    ("FINISHED", PLATEAU, None, "early-stopped (plateau)", PLATEAU[TAG_STOP_MESSAGE]),
    ("FINISHED", {TAG_STOP_SOURCE: "pruning", TAG_STOP_CRITERION: "pruned", TAG_STOP_STEP: "1200",
                  TAG_STOP_MESSAGE: "trial 3 pruned"}, None, "pruned at step 1200", "trial 3 pruned"),
    ("FINISHED", {TAG_STOP_SOURCE: "exception", TAG_STOP_CRITERION: "oom"}, None, "stopped by exception (oom)", ""),
    ("FINISHED", {}, None, "finished", ""),
    ("FAILED", {}, None, "failed", ""),
    ("KILLED", {}, None, "killed", ""),
    ("FAILED", PLATEAU, None, "failed after early-stopped (plateau)", PLATEAU[TAG_STOP_MESSAGE]),
])
def test_describe_state(status, tags, quiet, state, reason):
    assert describe_state(status, tags, quiet) == (state, reason)


def test_stop_tag_names_match_the_callbacks():
    from tuner_callbacks.stop_reason import StopReason, stop_reason_tags

    written = stop_reason_tags(StopReason("early_stopping", "plateau", "flat", 60))
    assert set(written) == {TAG_STOP_SOURCE, TAG_STOP_CRITERION, TAG_STOP_MESSAGE, TAG_STOP_STEP}


@pytest.mark.parametrize(("uri", "path"), [
    ("sqlite:///outputs/mlflow.db", Path("outputs/mlflow.db")),
    ("sqlite:////abs/mlflow.db", Path("/abs/mlflow.db")),
    ("sqlite:///:memory:", None),
    ("file:///abs/mlruns", Path("/abs/mlruns")),
    ("mlruns", Path("mlruns")),
    ("http://localhost:5000", None),
    ("databricks", None),
    ("databricks://profile", None),
])
def test_local_store_path(uri, path):
    assert local_store_path(uri) == path


def test_redact_hides_credentials():
    assert redact_url("https://me:s3cret@mlflow.example.com/x") == "https://me:***@mlflow.example.com/x"
    assert redact_url("https://TOKEN@mlflow.example.com/x") == "https://***@mlflow.example.com/x"
    assert redact_url("postgresql://u:p@ss@db/x?a=b@c") == "postgresql://u:***@db/x?a=b@c"
    assert redact_url("sqlite:///outputs/mlflow.db") == "sqlite:///outputs/mlflow.db"


def test_watcher_follows_a_run_another_process_writes(store, tmp_path):
    uri, _ = store
    client = connect(uri)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, uri, "follow", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def advance(phase: int) -> None:
        (tmp_path / f"go{phase}").touch()
        deadline = time.time() + 60
        while not (tmp_path / f"done{phase}").exists():
            assert writer.poll() is None, writer.communicate()
            assert time.time() < deadline, f"writer phase {phase} timed out"
            time.sleep(0.05)

    try:
        before = shown(client, ["follow"])
        assert "writer-run" not in before and "waiting for one to start" in before

        advance(1)
        started = line_of(shown(client, ["follow"]), "writer-run")
        assert "running" in started and "demo #4" in started
        assert " 30 " in started and "0.03333 ↓" in started  # step 30, train/loss 1/30 falling

        advance(2)
        updated = line_of(shown(client, ["follow"]), "writer-run")
        assert " 60 " in updated and "0.01667 ↓" in updated and "0.6 ↑" in updated
        assert "running" in updated

        advance(3)
        finished = line_of(shown(client, ["follow"]), "writer-run")
        assert "early-stopped (plateau)" in finished and "finishing" not in finished
        assert PLATEAU[TAG_STOP_MESSAGE] in finished
        assert writer.wait(timeout=30) == 0, writer.communicate()
    finally:
        writer.kill()
        writer.wait()


def test_watch_shows_several_experiments_and_only_those_asked(store):
    uri, _ = store
    client = connect(uri)
    for experiment in ("train", "other"):
        run_id = client.create_run(client.get_experiment_by_name(experiment).experiment_id,
                                   run_name=f"run-in-{experiment}").info.run_id
        client.log_metric(run_id, "train/loss", 0.5, step=1)
    both = shown(client, ["train", "other", "not-created-yet"])
    assert "run-in-train" in both and "run-in-other" in both
    only = shown(client, ["other"])
    assert "run-in-other" in only and "run-in-train" not in only
    assert "run-in-train" in shown(client, None)  # no names: every experiment


def test_running_runs_are_shown_beyond_max_runs(store):
    uri, _ = store
    client = connect(uri)
    experiment_id = client.get_experiment_by_name("many").experiment_id
    old = client.create_run(experiment_id, run_name="old-but-running", start_time=1_000).info.run_id
    for index in range(3):
        client.set_terminated(client.create_run(experiment_id, run_name=f"done-{index}").info.run_id)
    rows = snapshot(client, ["many"], METRICS, max_runs=2)
    assert [row.name for row in rows][:1] == ["old-but-running"] and len(rows) == 3
    client.set_terminated(old)


def test_rows_of_ended_runs_are_cached_until_they_change(store):
    uri, _ = store
    client = connect(uri)
    experiment_id = client.create_experiment("cached")
    run_id = client.create_run(experiment_id, run_name="ended").info.run_id
    client.log_metric(run_id, "train/loss", 0.5, step=3)
    client.set_terminated(run_id)
    cache: dict = {}
    first, = snapshot(client, ["cached"], METRICS, cache=cache)
    client.log_metric(run_id, "train/loss", 0.1, step=9)  # unusual after the end: the cached row hides it
    again, = snapshot(client, ["cached"], METRICS, cache=cache)
    assert again is first and again.step == 3
    client.set_tag(run_id, TAG_STOP_SOURCE, "pruning")  # a tag change is seen: the row is rebuilt
    rebuilt, = snapshot(client, ["cached"], METRICS, cache=cache)
    assert rebuilt.state == "pruned" and rebuilt.step == 9
    assert snapshot(client, ["cached"], METRICS)[0].step == 9  # without a cache every call reads the store


def test_watch_loop_prints_each_refresh(store):
    uri, _ = store
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    watch(connect(uri), ["train"], METRICS, refresh_s=0.01, iterations=3, console=console)
    assert console.export_text().count("MLflow runs in train") == 3


def test_watch_redraws_in_place_on_a_terminal(store):
    uri, _ = store
    client = connect(uri)
    client.create_run(client.get_experiment_by_name("train").experiment_id, run_name="on-a-terminal")
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system=None)
    watch(client, ["train"], METRICS, refresh_s=0.01, iterations=2, console=console)
    output = console.file.getvalue()
    assert "on-a-terminal" in output and "\x1b[" in output  # cursor movements of rich's Live display


def test_watch_runs_until_stopped(store):
    uri, _ = store
    console = Console(file=io.StringIO(), width=200, record=True, color_system=None)
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    started = time.time()
    watch(connect(uri), ["train"], METRICS, refresh_s=0.05, console=console, stop=stop)
    timer.join()
    assert time.time() - started < 30 and console.export_text().count("MLflow runs in train") >= 2


def test_render_of_nothing_says_it_waits():
    console = Console(file=io.StringIO(), width=200, record=True)
    console.print(render([], METRICS))
    assert "waiting for one to start" in console.export_text()


def test_missing_store_exits_2_and_creates_nothing(tmp_path, capsys):
    database = tmp_path / "outputs" / "mlflow.db"
    assert main(["--tracking-uri", f"sqlite:///{database}", "--once"]) == 2
    err = capsys.readouterr().err
    assert "No MLflow store" in err and str(database) in err
    assert not database.exists() and not database.parent.exists()
    with pytest.raises(StoreUnavailableError, match="does not exist"):
        connect(f"sqlite:///{database}")


def test_unreachable_server_exits_2_quickly(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # what main() sets; set here so the test restores it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.time()
    assert main(["--tracking-uri", f"http://127.0.0.1:{port}", "--once"]) == 2
    assert "unreachable" in capsys.readouterr().err
    assert time.time() - started < 20


@pytest.mark.parametrize("argv", [["--refresh", "0"], ["--iterations", "0"]])
def test_cli_refuses_bad_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and argv[0] in capsys.readouterr().err


@pytest.mark.slow
def test_cli_shows_runs_and_exits_cleanly_on_ctrl_c(store):
    uri, _ = store
    client = connect(uri)
    run_id = client.create_run(client.get_experiment_by_name("cli").experiment_id, run_name="cli-run").info.run_id
    client.log_metric(run_id, "val/loss", 0.25, step=7)
    env = {**os.environ, "COLUMNS": "220", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tuner_callbacks.watch", "--tracking-uri", uri,
                                "--experiment", "cli", "--metrics", "val/loss,train/loss", "--refresh", "0.2"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.time() + 90
        while "cli-run" not in seen:  # the first table: the process is past its imports and in the loop
            assert process.poll() is None and time.time() < deadline, process.communicate()
            seen += process.stdout.readline()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "0.25" in line_of(seen, "cli-run")
