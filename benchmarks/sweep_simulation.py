"""``python -m benchmarks.sweep_scaling --simulate``: sweeps of trials that wait instead of training, on PostgreSQL, by
1-32 sweeper processes (or one sweeper launching Ray tasks), optionally with workers killed and restarted. What it
measures and prints is described in benchmarks/sweep_scaling.py's docstring.

:func:`run_sweep` and :func:`chaos_findings` are also what tests/hydra_plugins/test_chaos.py runs, at a smaller scale.
"""

from __future__ import annotations

import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tests.helpers.processes import stop_ray_head

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "benchmarks" / "simulated_trial.py"
STUDY = "scaling"
STORAGE_ENV = "SMART_TUNER_OPTUNA_STORAGE"  # tuner_callbacks.optuna_storage.STORAGE_ENV
PID, ATTR_SIMULATION = "smart_tuner:pid", "simulation"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SweepRun:
    """What :func:`run_sweep` did: the wall time, each worker process's pid and start (epoch s), the kills (pid, the
    trial numbers it was running), and every process's exit code."""

    wall_s: float
    started: dict[int, float] = field(default_factory=dict)
    kills: list[tuple[int, list[int]]] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=dict)
    logs: list[Path] = field(default_factory=list)


def sweep_command(sweep_dir: Path, n_trials: int, duration_s: float, reports: int, *extra: str,
                  heartbeat_s: float = 5.0, jitter: float = 0.0) -> list[str]:
    """A sweeper of the simulated app on the study named in ``$SMART_TUNER_OPTUNA_STORAGE``: trials report at every
    step to the median pruner, which may prune only at the last (n_warmup_steps), so every trial waits as long.
    ``heartbeat_s``: how often each worker marks its trial alive and looks for dead workers' trials; ``jitter``: trial
    durations drawn from ``duration_s`` × (1 ± jitter), so that workers started together do not all end together."""
    return [sys.executable, str(APP), "-m", f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.study_name={STUDY}",
            f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.storage=${oc.env:" + STORAGE_ENV + "}",
            f"duration_s={duration_s}", f"jitter={jitter}", f"reports={reports}",
            f"hydra.sweeper.pruner.n_warmup_steps={reports - 1}",
            f"hydra.sweeper.heartbeat_interval_s={heartbeat_s}", *extra]


def run_sweep(command: list[str], workers: int, url: str, folder: Path, kills: int = 0, kill_every_s: float = 3.0,
              seed: int = 0, timeout_s: float = 1800, study_name: str = STUDY) -> SweepRun:
    """Starts ``workers`` processes of ``command`` together in ``folder`` and waits for them all. With ``kills``:
    every ``kill_every_s`` seconds a random live worker is killed with SIGKILL and started again, ``kills`` times,
    each while it is running a trial."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", STORAGE_ENV: url}
    folder.mkdir(parents=True, exist_ok=True)
    run = SweepRun(0.0)
    slots: list[subprocess.Popen] = []

    def spawn(slot: int) -> subprocess.Popen:
        log = folder / f"worker{slot}.{len(run.started)}.log"
        run.logs.append(log)
        with log.open("w") as out:
            process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
        run.started[process.pid] = time.time()
        return process

    began = time.monotonic()
    slots = [spawn(slot) for slot in range(workers)]
    rng, storage = random.Random(seed), None
    while len(run.kills) < kills and any(p.poll() is None for p in slots):
        time.sleep(kill_every_s)
        if storage is None:
            from tuner_callbacks.optuna_storage import open_storage

            storage = open_storage(url)
        running = {}
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                running.setdefault(trial.system_attrs.get(PID), []).append(trial.number)
        except KeyError:  # the study is not created yet
            continue
        busy = [slot for slot, p in enumerate(slots) if p.poll() is None and p.pid in running]
        if not busy:
            continue
        slot = rng.choice(busy)
        victim = slots[slot]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        # What it was running when it died: a trial it told meanwhile is simply finished.
        study = optuna.load_study(study_name=study_name, storage=storage)
        still = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t.system_attrs.get(PID) == victim.pid]
        run.kills.append((victim.pid, still))
        run.codes[victim.pid] = victim.returncode
        slots[slot] = spawn(slot)
    deadline = time.monotonic() + timeout_s
    for process in slots:
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        run.codes[process.pid] = process.returncode
    run.wall_s = time.monotonic() - began
    return run


def chaos_findings(study: optuna.Study, n_trials: int, run: SweepRun, sweep_dir: Path) -> list[str]:
    """What is wrong with the study after a run with kills, as sentences; empty when all holds: exactly ``n_trials``
    COMPLETE or PRUNED trials with unique numbers, none RUNNING or WAITING, every killed trial failed as interrupted
    and queued again exactly once, its values run to the end exactly once, the workers left standing ended well,
    and the results file and the report are whole."""
    from omegaconf import OmegaConf

    from tuner_callbacks.contract import ATTR_INTERRUPTED, ATTR_NOT_RUN, ATTR_REQUEUED_FROM

    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    problems = []
    finished = [t for t in trials if t.state in FINISHED]
    if len(finished) != n_trials:
        problems.append(f"{len(finished)} trials COMPLETE or PRUNED, not n_trials={n_trials}")
    if len({t.number for t in finished}) != len(finished):
        problems.append("a trial number is finished twice")
    left = [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if left:
        problems.append(f"trials left RUNNING or WAITING: {left}")
    requeued: dict[int, list[int]] = {}
    for trial in trials:
        if ATTR_REQUEUED_FROM in trial.user_attrs:
            requeued.setdefault(int(trial.user_attrs[ATTR_REQUEUED_FROM]), []).append(trial.number)
    for _pid, numbers in run.kills:
        for number in numbers:
            killed = by_number[number]
            if killed.state != TrialState.FAIL or not killed.user_attrs.get(ATTR_INTERRUPTED):
                problems.append(f"killed trial {number} is {killed.state.name}, not FAIL as interrupted")
            if not killed.params and not killed.system_attrs.get("fixed_params"):
                continue  # killed before its values were drawn: nothing to run again
            again = requeued.get(number, [])
            if len(again) != 1:
                problems.append(f"killed trial {number} was queued again {len(again)} times, not once")
                continue
            # Follow the chain (a re-run may itself be killed) to the one run that ended.
            chain, current = [number], again[0]
            while by_number[current].state == TrialState.FAIL and requeued.get(current):
                chain.append(current)
                current = requeued[current][0]
            if by_number[current].state not in FINISHED:
                problems.append(f"killed trial {number} (then {chain[1:]}) never ran to its end: trial {current} is "
                                f"{by_number[current].state.name}")
            elif by_number[current].params != (killed.params or by_number[current].params):
                problems.append(f"trial {current} re-ran killed trial {number} with other values")
    interrupted = [t.number for t in trials if t.user_attrs.get(ATTR_INTERRUPTED)]
    unexplained = sorted(set(interrupted) - {n for _, numbers in run.kills for n in numbers})
    if unexplained:
        problems.append(f"trials {unexplained} were interrupted but not killed")
    given_back = [t.number for t in trials if t.user_attrs.get(ATTR_NOT_RUN) and t.intermediate_values]
    if given_back:
        problems.append(f"trials {given_back} were given back after they reported")
    killed_pids = {pid for pid, _ in run.kills}
    failed = {pid: code for pid, code in run.codes.items() if pid not in killed_pids and code != 0}
    if failed:
        problems.append(f"workers that were not killed ended with exit codes {failed}")
    results = sweep_dir / "optimization_results.yaml"
    try:
        counted = dict(OmegaConf.load(results).trials)
        if sum(counted.values()) != n_trials or set(counted) - {"complete", "pruned"}:
            problems.append(f"{results.name} counts {counted}")
    except Exception as error:
        problems.append(f"{results} is not whole: {type(error).__name__}: {error}")
    report = sweep_dir / "report.html"
    if not report.is_file() or not report.read_text().rstrip().endswith("</html>"):
        problems.append(f"{report} is missing or cut short")
    return problems


def figures(study: optuna.Study, run: SweepRun, slots_per_worker: int = 1) -> dict[str, Any]:
    """Efficiency, start-up and overhead of a simulated sweep (see benchmarks/sweep_scaling.py)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and ATTR_SIMULATION in t.user_attrs]
    by_worker: dict[Any, list[Any]] = {}
    for trial in trials:
        by_worker.setdefault(trial.system_attrs.get(PID), []).append(trial)
    if slots_per_worker > 1:
        return _ray_figures(trials)
    slept = sum(t.user_attrs[ATTR_SIMULATION]["slept_s"] for t in trials)
    steady, startup, overhead = 0.0, [], []
    for pid, own in by_worker.items():
        own.sort(key=lambda t: t.datetime_start)
        first, last = own[0].datetime_start.timestamp(), max(t.datetime_complete.timestamp() for t in own)
        steady += (last - first) * slots_per_worker
        if pid in run.started:
            startup.append(first - run.started[pid])
        previous = first
        for trial in own:
            start, end = trial.datetime_start.timestamp(), trial.datetime_complete.timestamp()
            # One trial at a time per process: from the previous trial told; with several slots: ask -> tell.
            since = previous if slots_per_worker == 1 else start
            overhead.append(end - since - trial.user_attrs[ATTR_SIMULATION]["slept_s"])
            previous = end
    overhead.sort()
    return {"trials": len(trials), "slept_s": slept, "efficiency": slept / steady if steady else float("nan"),
            "startup": startup, "overhead_median": statistics.median(overhead) if overhead else float("nan"),
            "overhead_p95": overhead[min(len(overhead) - 1, int(0.95 * len(overhead)))] if overhead else float("nan")}


def _ray_figures(trials: list[Any]) -> dict[str, Any]:
    """One sweeper, n_jobs slots, trials in Ray worker processes: the first trial each Ray worker ran paid its start
    (imports, Hydra, the study): that is start-up; the others are the steady state, where a trial's overhead is its
    ask -> tell less its wait and efficiency is Σ waits / Σ (ask -> tell)."""
    first: dict[Any, Any] = {}
    for trial in sorted(trials, key=lambda t: t.datetime_start):
        first.setdefault(trial.user_attrs[ATTR_SIMULATION].get("pid"), trial)

    def cost(trial: Any) -> float:
        return (trial.datetime_complete - trial.datetime_start).total_seconds() - trial.user_attrs[ATTR_SIMULATION][
            "slept_s"]

    steady = [t for t in trials if t not in first.values()]
    overhead = sorted(cost(t) for t in steady)
    slept = sum(t.user_attrs[ATTR_SIMULATION]["slept_s"] for t in steady)
    spent = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in steady)
    return {"trials": len(trials), "slept_s": sum(t.user_attrs[ATTR_SIMULATION]["slept_s"] for t in trials),
            "efficiency": slept / spent if spent else float("nan"),
            "startup": [cost(t) for t in first.values()],
            "overhead_median": statistics.median(overhead) if overhead else float("nan"),
            "overhead_p95": overhead[min(len(overhead) - 1, int(0.95 * len(overhead)))] if overhead else float("nan")}


def statements(server: Any, database: str) -> int | None:
    """Statements ``database`` executed, from the server's statement log (see :func:`log_statements`)."""
    if server is None or not server.log.exists():
        return None
    pattern = re.compile(rf"\[{re.escape(database)}\] LOG:  (statement|execute)")
    return sum(1 for line in server.log.read_text(errors="replace").splitlines() if pattern.search(line))


def log_statements(url: str, database: str) -> None:
    """Makes the server log every statement of ``database`` with the database's name, so :func:`statements` counts
    them (the benchmark's own server only: the role is its superuser)."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
                         dbname="postgres", autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET log_line_prefix = '%m [%d] '")
        connection.execute("SELECT pg_reload_conf()")
        connection.execute(f'ALTER DATABASE "{database}" SET log_statement = \'all\'')


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ray(folder: Path, cpus: int = 32) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """``ray start --head --num-cpus 32`` on 127.0.0.1 with token authentication (a token of its own), as
    tests/hydra_plugins/test_smart_ray_launcher.py starts one; returns the head process, its address and the
    environment a driver needs."""
    import secrets

    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    port = _free_port()
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}", "--num-gpus=0",
               "--object-store-memory=200000000", "--include-dashboard=false", f"--temp-dir={folder}",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}",
               f"--dashboard-agent-listen-port={_free_port()}"]
    head = subprocess.Popen(command, cwd=folder, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "sys.exit(0 if ray.cluster_resources().get('CPU') else 1)")
    deadline = time.monotonic() + 300
    while subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True,
                         timeout=180).returncode != 0:
        if head.poll() is not None or time.monotonic() > deadline:
            stop_ray_head(head, folder)
            raise SystemExit(f"ray start --head did not come up at {address}")
        time.sleep(2)
    return head, address, env


def simulate(args: Any) -> None:
    from benchmarks.sweep_scaling import database_maker

    counts = args.workers or [1, 2, 4, 8, 16, 32]
    server, new_database = database_maker(args.storage_server)
    ray_env = None
    try:
        with tempfile.TemporaryDirectory(prefix="sweep-sim-") as tmp:
            root = Path(tmp)
            if args.launcher == "ray":
                ray_folder = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
                ray_head, ray_address, ray_env = start_ray(ray_folder)
            print(f"simulated trials of {args.duration:g} s ± {100 * args.jitter:.0f}% ({args.reports} reports each), "
                  f"{args.trials_per_worker} "
                  f"per worker; launcher {args.launcher}; PostgreSQL {'(throw-away)' if server else '(given)'}; "
                  f"{os.cpu_count()} CPUs, load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            print(f"{'workers':>7} {'wall s':>7} {'start s med/max':>16} {'efficiency':>10} {'end-to-end':>10} "
                  f"{'speed-up':>8} {'overhead/trial s med/p95':>24} {'DB trips/trial':>14}")
            base, last = None, None
            for workers in counts:
                n_trials = args.trials_per_worker * workers
                database = f"sim_{workers}_{os.getpid()}"
                url = new_database(database)
                if server is not None:
                    log_statements(url, database)
                extra = ["hydra.sweeper.report=false"]
                if args.chaos:
                    extra = ["hydra.sweeper.stale_trials=requeue", "hydra.sweeper.stale_after_s=30",
                             "hydra.sweeper.report=true"]
                if args.launcher == "ray":
                    extra += ["hydra/launcher=smart_ray", f"hydra.launcher.ray.init.address={ray_address}",
                              f"hydra.sweeper.n_jobs={workers}"]
                command = sweep_command(root / f"w{workers}" / "sweep", n_trials, args.duration, args.reports, *extra,
                                        heartbeat_s=args.heartbeat, jitter=args.jitter)
                if ray_env is not None:  # the sweeper (Ray's driver) joins the cluster with its token
                    os.environ.update({k: v for k, v in ray_env.items() if k.startswith("RAY")})
                run = run_sweep(command, 1 if args.launcher == "ray" else workers, url, root / f"w{workers}",
                                kills=args.chaos, kill_every_s=args.kill_every, seed=args.seed)
                from tuner_callbacks.optuna_storage import open_storage

                study = optuna.load_study(study_name=STUDY, storage=open_storage(url))
                bad = [c for c in run.codes.values() if c not in (0, -signal.SIGKILL)]
                if bad and not args.chaos:
                    print(f"workers failed ({bad}); logs: {[str(p) for p in run.logs]}")
                    print((run.logs[0].read_text())[-3000:])
                    raise SystemExit(1)
                found = figures(study, run, slots_per_worker=workers if args.launcher == "ray" else 1)
                end_to_end = found["slept_s"] / (workers * run.wall_s)
                base = base if base is not None else (found["efficiency"] if workers == 1 else None)
                speedup = workers * found["efficiency"] / base if base else float("nan")
                time.sleep(1.0)  # the server writes its log as statements run; let it catch up
                trips = statements(server, database)
                start = found["startup"]
                print(f"{workers:>7} {run.wall_s:>7.1f} "
                      f"{(f'{statistics.median(start):.1f}/{max(start):.1f}' if start else '-'):>16} "
                      f"{found['efficiency']:>10.3f} {end_to_end:>10.3f} {speedup:>8.2f} "
                      f"{found['overhead_median']:>14.2f}/{found['overhead_p95']:<9.2f} "
                      f"{(f'{trips / max(1, len(study.trials)):.0f}' if trips is not None else '-'):>14}")
                if args.chaos:
                    killed = sum(len(n) for _, n in run.kills)
                    problems = chaos_findings(study, n_trials, run, root / f"w{workers}" / "sweep")
                    states = {s.name: sum(1 for t in study.trials if t.state == s) for s in TrialState}
                    print(f"chaos: {len(run.kills)} workers killed (SIGKILL) while running {killed} trials; study "
                          f"{ {k: v for k, v in states.items() if v} }; "
                          + ("all checks hold: n_trials exact, unique numbers, none left RUNNING, each killed "
                             "trial queued again once and run once, results file and report whole"
                             if not problems else "PROBLEMS: " + "; ".join(problems)))
                last = (workers, found)
            if last:
                workers, found = last
                print(f"sweep_scaling: workers={workers} efficiency={found['efficiency']:.3f} "
                      f"overhead_median_s={found['overhead_median']:.3f} overhead_p95_s={found['overhead_p95']:.3f}")
    finally:
        if ray_env is not None:
            stop_ray_head(ray_head, ray_folder)
        if server is not None:
            server.stop()
