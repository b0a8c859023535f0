"""How a sweep scales with workers: the same sweep run by 1, 2 and 4 sweeper processes on one PostgreSQL study.

Each arm is a new study in a new database of a throw-away PostgreSQL server (the one the tests start,
tests/helpers/postgres_server.py; ``--storage-server URL`` to use yours: one database per arm is created there),
with ``--workers`` processes of ``python train.py -m hparams=search`` started together, sharing ``n_trials``
(``--trials``). Trials are tiny and short (the test model, ``--steps`` steps, no pruning, no MLflow), so the
figures show the sweep machinery rather than training.

For each arm it prints the wall time from starting the workers to the last one ending, the speedup against one
worker, the seconds from starting the workers to the first trial's start (a worker's start: imports, Hydra,
the study), and the sweeper's own overhead per trial: from the trial's start (Optuna's ``datetime_start``, set when
the sweeper asks for it, just before handing it to its launcher) to its first training batch (the trial's
``first_step_at``, recorded by :class:`benchmarks.first_step_clock.FirstStepClock`, which this benchmark adds to
the jobs' callbacks). That is Hydra's per-job setup, the data module, the model's construction (~10 ms for this
tiny model), the callbacks and Lightning's start (its sanity validation included).

Run from the repository root (it uses the tests' server helper):
    python -m benchmarks.sweep_scaling                       # 8 trials; 1, 2 and 4 workers
    python -m benchmarks.sweep_scaling --workers 1 2 --trials 4 --steps 8

``--simulate``: trials that wait instead of training (benchmarks/simulated_trial.py: ``--duration`` seconds ±
``--jitter`` (50%), drawn per trial, reporting ``--reports`` intermediate values to the study's pruner), so what is
measured is the sweeper, the storage and the launcher. 1, 2, 4, 8, 16 and 32 worker processes (``--workers``), each
count on a new PostgreSQL study of 4 trials per worker (``--trials-per-worker``), all sweepers started together. Per
worker count it prints:

- ``wall s``: starting the workers to the last one ending; ``start s``: each worker's start-up, from its process
  starting to its first trial being asked (imports, Hydra, connecting, the study), median and max: apart from the
  steady state below.
- ``efficiency``: steady state, Σ trial waits / Σ per worker (first trial asked -> last trial told): the share of a
  worker's time, once started, that its trials had; ``end-to-end`` the same over the whole wall time, start-up
  included. ``speed-up``: workers × efficiency / the 1-worker arm's efficiency (steady-state throughput).
- ``overhead/trial s``: per trial, the time its worker spent beyond the trial's wait (ask, launch, Hydra's job setup,
  the job's reports and bookkeeping, tell; from the worker's previous trial told, or the trial's ask for its first),
  median and p95.
- ``DB trips/trial``: statements the arm's database executed (PostgreSQL's statement log), per trial, start-up
  included: each is one round trip.

The last line reads ``sweep_scaling: workers=<n> efficiency=<e> overhead_median_s=<s> overhead_p95_s=<s>`` for the
largest worker count run. ``--launcher ray``: one sweeper with ``hydra.sweeper.n_jobs=<workers>`` launching every trial
as a Ray task (``hydra/launcher=smart_ray``) on a local cluster the benchmark starts (``ray start --head --num-cpus
32``; Ray schedules by declared CPUs): start-up is then what each Ray worker process's first trial cost beyond its
wait (its imports, Hydra, the study), and the steady state is the other trials: overhead their ask -> tell less their
wait (Ray's scheduling included), efficiency Σ waits / Σ (ask -> tell).
``--chaos K``: with the first worker count, SIGKILL a random worker every ``--kill-every`` seconds (K times) and start
it again, then check the study: n_trials COMPLETE/PRUNED with unique numbers, none RUNNING, each killed trial queued
again once and run once, the results file and the report whole.

    python -m benchmarks.sweep_scaling --simulate                        # 1..32 workers, 20 s trials
    python -m benchmarks.sweep_scaling --simulate --workers 1 16 --duration 10
    python -m benchmarks.sweep_scaling --simulate --workers 16 --chaos 20 --kill-every 3
    python -m benchmarks.sweep_scaling --simulate --launcher ray --workers 1 16 32
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
TINY = [  # tests/helpers/train_configs.py's model and data
    "model.model_config.symbols_embedding_dim=32", "model.model_config.encoder_embedding_dim=32",
    "model.model_config.attention_rnn_dim=64", "model.model_config.decoder_rnn_dim=64",
    "model.model_config.prenet_dim=32", "model.model_config.attention_dim=16",
    "model.model_config.attention_location_n_filters=4", "model.model_config.postnet_embedding_dim=32",
    "model.health_utterances=0", "data.builtin.size=12", "data.val_size=4", "data.batch_size=4",
    "callbacks.rich_progress_bar=null", "callbacks.validation_media=null", "callbacks.metric_history.export_formats=[]",
    "callbacks.model_registry=null", "callbacks.smart_early_stopping=null", "objective=teacher_forced", "logger=none",
]


# Records each trial's first training batch (benchmarks/first_step_clock.py), for the overhead per trial.
FIRST_STEP_CLOCK = [f"+callbacks.first_step_clock.{key}={value}" for key, value in (
    ("_target_", "benchmarks.first_step_clock.FirstStepClock"), ("study_name", "${trial.study_name}"),
    ("storage", "${trial.storage}"), ("number", "${trial.number}"))]


def run_arm(workers: int, trials: int, url: str, args: argparse.Namespace, folder: Path, cache: Path
            ) -> tuple[float, float, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SMART_TUNER_CACHE": str(cache),
           "SMART_TUNER_OPTUNA_STORAGE": url}
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams=search", *TINY,
               f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}",
               "hydra/sweeper/pruner=nop", f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.report=false",
               "hydra.sweeper.registry_model=null", "hydra.sweeper.alerts=null", "hydra.sweeper.study_name=scaling",
               "hydra.sweeper.storage=${oc.env:SMART_TUNER_OPTUNA_STORAGE}", *FIRST_STEP_CLOCK]
    folder.mkdir(parents=True)
    started, started_at = time.monotonic(), time.time()
    processes = []
    for index in range(workers):
        with (folder / f"worker{index}.log").open("w") as log:
            processes.append(subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in processes]
    wall_s = time.monotonic() - started
    if any(codes):
        raise SystemExit(f"{workers} workers: exit codes {codes}; see {folder}/worker*.log")
    from tuner_callbacks.optuna_storage import open_storage

    return wall_s, started_at, optuna.load_study(study_name="scaling", storage=open_storage(url))


def overheads(study: optuna.Study) -> list[float]:
    """Per trial: its start (the sweeper asked for it) -> its first training batch (s)."""
    from benchmarks.first_step_clock import ATTR_FIRST_STEP_AT

    return [trial.user_attrs[ATTR_FIRST_STEP_AT] - trial.datetime_start.timestamp()
            for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            if ATTR_FIRST_STEP_AT in trial.user_attrs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts; default 1 2 4 (training) or 1 2 4 8 16 32 (--simulate)")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="training steps per trial (one validation, at the end)")
    parser.add_argument("--storage-server", default=None,
                        help="a PostgreSQL URL whose role may CREATE DATABASE; default: a throw-away server")
    parser.add_argument("--simulate", action="store_true", help="trials that wait instead of training")
    parser.add_argument("--duration", type=float, default=20.0, help="--simulate: seconds each trial waits")
    parser.add_argument("--reports", type=int, default=5, help="--simulate: intermediate values each trial reports")
    parser.add_argument("--trials-per-worker", type=int, default=4)
    parser.add_argument("--jitter", type=float, default=0.5,
                        help="--simulate: durations drawn uniformly from duration × (1 ± jitter)")
    parser.add_argument("--heartbeat", type=float, default=5.0,
                        help="--simulate: hydra.sweeper.heartbeat_interval_s (each beat also looks for dead workers)")
    parser.add_argument("--launcher", choices=("processes", "ray"), default="processes",
                        help="--simulate: one sweeper process per worker, or one sweeper with Ray tasks")
    parser.add_argument("--chaos", type=int, default=0, metavar="K", help="--simulate: SIGKILL K workers, one by one")
    parser.add_argument("--kill-every", type=float, default=3.0, help="--chaos: seconds between kills")
    parser.add_argument("--seed", type=int, default=0, help="--chaos: which workers are killed when")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.simulate:
        from benchmarks.sweep_simulation import simulate

        simulate(args)
        return
    args.workers = args.workers or [1, 2, 4]
    server, new_database = database_maker(args.storage_server)
    try:
        with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as tmp:
            root, cache = Path(tmp), Path(tmp) / "cache"
            print(f"{args.trials} trials of {args.steps} steps; {os.cpu_count()} CPUs; load average before: "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            # Untimed: builds the dataset and its mel cache, which every arm then shares.
            run_arm(1, 1, new_database(f"warmup_{os.getpid()}"), args, root / "warmup", cache)
            print(f"{'workers':>7} {'wall s':>8} {'speedup':>8} {'start s':>8}   overhead/trial s: median, max")
            walls = {}
            for workers in args.workers:
                url = new_database(f"scaling_{workers}_{os.getpid()}")
                walls[workers], started_at, study = run_arm(workers, args.trials, url, args, root / f"w{workers}",
                                                            cache)
                spent = overheads(study)
                speedup = walls[1] / walls[workers] if 1 in walls else float("nan")
                first = min(t.datetime_start.timestamp() for t in study.trials) - started_at
                print(f"{workers:>7} {walls[workers]:>8.1f} {speedup:>8.2f} {first:>8.1f}   "
                      f"{statistics.median(spent):.2f}, {max(spent):.2f} ({len(spent)} trials)")
    finally:
        if server is not None:
            server.stop()


def database_maker(storage_server: str | None) -> tuple[Any, Callable[[str], str]]:
    """A throw-away PostgreSQL server (None when ``storage_server`` is given) and a function that creates a database
    on it, or on ``storage_server``, by name and returns its URL."""
    if storage_server is not None:
        return None, lambda name: _create_database(storage_server, name)
    from tests.helpers.postgres_server import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL binaries: pip install -e '.[distributed]' (pgserver), or --storage-server")
    server = PostgresServer(bin_dir).start()
    return server, server.create_database


def _create_database(server_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


if __name__ == "__main__":
    main()
