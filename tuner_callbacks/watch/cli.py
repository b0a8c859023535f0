"""``python -m tuner_callbacks.watch``: a live terminal table of MLflow runs while they train.

Each refresh asks the store again, so runs that start after the watcher are picked up, and shows per run its
state in words (running, early-stopped and why, pruned at which step, failed), the step and steps per second,
and the latest value of a few metrics with an arrow for where they are heading. Works on the project's SQLite
store and on a tracking server; the pieces are functions so that tests and notebooks drive them directly::

    client = connect("sqlite:///outputs/mlflow.db")
    Console().print(render(snapshot(client, ["train"], DEFAULT_METRICS), DEFAULT_METRICS))
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tuner_callbacks.mlflow_utils import redact_url, resolve_tracking_uri
from tuner_callbacks.watch.rows import RunRow, describe_state, step_rate, trend, trial_label
from tuner_callbacks.watch.store import (
    HTTP_FAIL_FAST_ENV,
    StoreUnavailableError,
    connect,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from rich.console import Console, RenderableType
    from rich.table import Table

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("train/loss", "val/loss", "val/alignment_score")
TREND_WINDOW = 5  # values an arrow looks back over: enough to smooth one noisy batch, short enough to react
_STATE_STYLES = {"running": "cyan", "finished": "green", "early-stopped": "yellow", "pruned": "magenta",
                 "failed": "bold red", "killed": "red", "stopped": "yellow"}


def snapshot(client: MlflowClient, experiments: Sequence[str] | None, metrics: Sequence[str],
             max_runs: int = 15, now_ms: int | None = None, cache: dict[str, tuple] | None = None) -> list[RunRow]:
    """The runs to show now: every RUNNING run of the experiments, then the newest others, up to ``max_runs``.

    Args:
        client: a connected client (see :func:`~tuner_callbacks.watch.store.connect`).
        experiments: experiment names; None: all active experiments. Names not created yet are skipped, so
            the watcher can start before the training does.
        metrics: metric names to show; runs that did not log one show a blank.
        max_runs: how many runs at most besides the running ones.
        now_ms: the clock, for tests; None reads it.
        cache: a dict kept between calls (``watch`` keeps one): rows of runs that ended are reused while their
            status, end time and tags stay the same, so each refresh reads only the histories of running runs.
    """
    if experiments:
        found = [client.get_experiment_by_name(name) for name in experiments]
        chosen = [experiment for experiment in found if experiment is not None]
    else:
        chosen = list(client.search_experiments())
    if not chosen:
        return []
    names = {experiment.experiment_id: experiment.name for experiment in chosen}
    ids = list(names)
    running = client.search_runs(ids, filter_string="attributes.status = 'RUNNING'",
                                 order_by=["attributes.start_time DESC"], max_results=1000)
    recent = client.search_runs(ids, order_by=["attributes.start_time DESC"], max_results=max_runs)
    runs = list({run.info.run_id: run for run in [*running, *recent]}.values())
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cache = {} if cache is None else cache
    rows = []
    for run in runs:
        key = (run.info.status, run.info.end_time, tuple(sorted(run.data.tags.items())), tuple(metrics))
        cached = cache.get(run.info.run_id)
        if cached is not None and cached[0] == key:
            rows.append(cached[1])
            continue
        row = _row(client, run, names[run.info.experiment_id], metrics, now_ms)
        if run.info.status != "RUNNING":
            cache[run.info.run_id] = (key, row)
        rows.append(row)
    for run_id in set(cache) - {run.info.run_id for run in runs}:  # out of view: forget, so the cache stays small
        del cache[run_id]
    return rows


def _row(client: MlflowClient, run, experiment: str, metrics: Sequence[str], now_ms: int) -> RunRow:
    logged = run.data.metrics
    wanted = [name for name in metrics if name in logged]
    # Step and rate come from the histories fetched anyway; a run logging none of the shown metrics lends one.
    fetch = wanted or sorted(logged)[:1]
    histories = {name: sorted(client.get_metric_history(run.info.run_id, name), key=lambda p: (p.step, p.timestamp))
                 for name in fetch}
    points = [(point.step, point.timestamp) for history in histories.values() for point in history]
    views = {name: trend([point.value for point in histories[name][-TREND_WINDOW:]], name)
             for name in wanted if histories[name]}
    updated_ms = max((timestamp for _, timestamp in points), default=None)
    quiet_for_s = (now_ms - (updated_ms or run.info.start_time)) / 1000
    state, reason = describe_state(run.info.status, run.data.tags, quiet_for_s)
    return RunRow(experiment=experiment, run_id=run.info.run_id, name=run.info.run_name or run.info.run_id[:8],
                  status=run.info.status, state=state, reason=reason, trial=trial_label(run.data.tags),
                  step=max((step for step, _ in points), default=None), steps_per_s=step_rate(points),
                  metrics=views, started_ms=run.info.start_time or 0, updated_ms=updated_ms)


def render(rows: Sequence[RunRow], metrics: Sequence[str], title: str | None = None) -> Table:
    """A rich Table of ``rows``: one line per run, a column per metric; an empty table says it is waiting."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", expand=False)
    with_trial = any(row.trial for row in rows)
    table.add_column("experiment")
    table.add_column("run")
    if with_trial:
        table.add_column("trial")
    table.add_column("state")
    table.add_column("step", justify="right")
    table.add_column("steps/s", justify="right")
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_column("reason", overflow="fold")
    for row in rows:
        # Text, not str: rich would read "[...]" in a run name or stop message as markup.
        cells: list[RenderableType] = [Text(row.experiment), Text(row.name)]
        if with_trial:
            cells.append(Text(row.trial))
        style = next((s for word, s in _STATE_STYLES.items() if row.state.startswith(word)), "")
        cells += [Text(row.state, style=style), "" if row.step is None else str(row.step),
                  "" if row.steps_per_s is None else f"{row.steps_per_s:.3g}"]
        for name in metrics:
            view = row.metrics.get(name)
            if view is None:
                cells.append("")
                continue
            arrow_style = {True: "green", False: "red"}.get(view.improving, "dim")
            cells.append(Text.assemble(f"{view.value:.4g} ", (view.trend or " ", arrow_style)))
        cells.append(Text(row.reason))
        table.add_row(*cells)
    if not rows:
        table.caption = "no runs yet: waiting for one to start"
    return table


def watch(client: MlflowClient, experiments: Sequence[str] | None = None, metrics: Sequence[str] = DEFAULT_METRICS,
          refresh_s: float = 5.0, iterations: int | None = None, console: Console | None = None,
          max_runs: int = 15, source: str = "", stop: threading.Event | None = None) -> None:
    """Shows :func:`snapshot` every ``refresh_s`` seconds, ``iterations`` times (None: until ``stop`` is set).

    On a terminal the table is redrawn in place; otherwise (a pipe, a file, a recording console) each refresh is
    printed below the last, so the output reads as a log. A failed refresh (a server blip, a locked SQLite file)
    is shown and retried at the next one rather than ending the watch. Setting ``stop`` (the CLI does on Ctrl-C)
    ends the watch after the refresh in progress, without interrupting a query half-way.
    """
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = console or Console()
    if refresh_s <= 0:
        raise ValueError(f"refresh_s must be > 0 seconds, got {refresh_s!r}")
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be >= 1 or None, got {iterations!r}")
    where = ", ".join(experiments) if experiments else "all experiments"

    where += f" at {source}" if source else ""

    def frame() -> RenderableType:
        title = f"MLflow runs in {where} - {time.strftime('%H:%M:%S')} (Ctrl-C quits)"
        try:
            return render(snapshot(client, experiments, metrics, max_runs=max_runs, cache=cache), metrics, title)
        except Exception as error:  # any store error is shown and retried: a watcher outlives blips
            log.warning("Refresh failed: %s", error)
            return Text(f"{title}: refresh failed, retrying in {refresh_s:g} s: {error}", style="red")

    stop = stop or threading.Event()
    cache: dict[str, tuple] = {}
    count = 0
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    with live or contextlib.nullcontext():
        while not stop.is_set():
            shown = frame()
            if live:
                live.update(shown, refresh=True)
            else:
                console.print(shown)
            count += 1
            if (iterations is not None and count >= iterations) or stop.wait(refresh_s):
                return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner_callbacks.watch",
        description="A live table of MLflow runs: state and stop reason, step, steps/s, latest metrics and trends.")
    parser.add_argument("--experiment", action="append", dest="experiments", metavar="NAME",
                        help="experiment to watch (repeatable); default: all experiments")
    parser.add_argument("--tracking-uri", help="MLflow store; default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///outputs/mlflow.db (the store `python train.py` writes)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="NAME",
                        help="metrics to show, space- or comma-separated (default: %(default)s)")
    parser.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS", help="seconds between refreshes")
    parser.add_argument("--iterations", type=int, default=None, metavar="N", help="refresh N times, then exit")
    parser.add_argument("--once", action="store_true", help="print one table and exit (same as --iterations 1)")
    parser.add_argument("--max-runs", type=int, default=15, metavar="N",
                        help="finished runs shown besides the running ones (newest first)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns the exit code: 0, or 2 when the store is missing or unreachable (with a message)."""
    from rich.console import Console

    parser = _parser()
    args = parser.parse_args(argv)
    if args.refresh <= 0:
        parser.error(f"--refresh must be > 0 seconds, got {args.refresh:g}")
    if args.iterations is not None and args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    metrics = [name for item in args.metrics for name in item.split(",") if name]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for key, value in HTTP_FAIL_FAST_ENV.items():
        os.environ.setdefault(key, value)
    uri = resolve_tracking_uri(args.tracking_uri)
    stop = threading.Event()

    def on_interrupt(signum: int, frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C while a query hangs quits at once
            raise KeyboardInterrupt
        stop.set()

    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGINT, on_interrupt) if in_main_thread else None
    try:
        client = connect(uri)
        watch(client, args.experiments, metrics, refresh_s=args.refresh, iterations=1 if args.once else args.iterations,
              max_runs=args.max_runs, source=redact_url(uri), stop=stop)
    except StoreUnavailableError as error:
        Console(stderr=True).print(str(error), style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 0
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    return 0
