"""``hydra/launcher=smart_ray``: its config; a sweep's trials as Ray tasks on a Ray cluster the test starts on
127.0.0.1, pruned from inside the Ray workers, each slot starting its next trial as soon as its own ends; and, without
an address, a cluster of its own on this machine, where a job whose worker dies fails alone."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tests.helpers.processes import stop_ray_head
from tests.helpers.train_configs import CONF, ROOT
from tests.hydra_plugins.test_sweeper import load, states, sweep

ray = pytest.importorskip("ray", reason="the `distributed` extra (and `dev`) installs Ray")

from hydra_plugins.smart_ray_launcher._impl import RayJobs, RayLauncherError  # noqa: E402 (imports Ray)

APP = ROOT / "tests" / "helpers" / "scripts" / "ray_jobs_app.py"  # jobs that say where they ran
START_DEADLINE_S = 180  # a loaded machine three times slower than ours still has its head node up by then


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_launcher_is_found_and_takes_hydra_ray_launchers_layout_leaving_out_nulls():
    assert "SmartRayLauncher" in [plugin.__name__ for plugin in Plugins.instance().discover(Launcher)]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=["hydra/launcher=smart_ray", "hydra.launcher.ray.init.address=auto",
                                              "+hydra.launcher.ray.init.runtime_env.env_vars.SMART_TUNER_CACHE=/c",
                                              "hydra.launcher.ray.remote.num_gpus=1"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    jobs = RayJobs(cfg.hydra.launcher.ray)
    assert jobs.init_kwargs == {"address": "auto", "include_dashboard": False,
                                "runtime_env": {"env_vars": {"SMART_TUNER_CACHE": "/c"}}}
    assert jobs.remote_kwargs == {"num_cpus": 1, "num_gpus": 1, "max_retries": 0}


@pytest.mark.parametrize(("settings", "named"), [
    ("local", "hydra.launcher.ray must be"),
    ({"init": {}, "remote": {}, "runtime_env": {}}, "got ['runtime_env']"),
    ({"init": "auto"}, "hydra.launcher.ray.init must be a dict"),
    ({"remote": [1]}, "hydra.launcher.ray.remote must be a dict"),
])
def test_settings_that_cannot_work_are_refused_naming_the_key(settings, named):
    with pytest.raises(RayLauncherError, match=re.escape(named)):
        RayJobs(OmegaConf.create({"ray": settings}).ray if isinstance(settings, dict) else settings)


@pytest.fixture(scope="module")
def ray_cluster(shared_cache):
    """A one-node Ray cluster of 2 CPUs on 127.0.0.1 (``ray start --head``) and the environment that reaches it:
    ``(address, Ray Client's ray:// address, env)``. Token authentication on, with a token of its own; stopped (its
    process group) after the module."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           # Ray swaps 127.0.0.1 for the machine's address unless multi-node is off: this cluster stays on loopback.
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           # The workers are the head node's children: they import the project and find the dataset through it.
           "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "SMART_TUNER_CACHE": str(shared_cache)}
    port, client_port = free_port(), free_port()
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
               "--object-store-memory=80000000", "--include-dashboard=false", f"--temp-dir={folder}",
               f"--ray-client-server-port={client_port}", f"--dashboard-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}"]
    head = subprocess.Popen(command, cwd=folder, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while not _cluster_up(address, env):
            if head.poll() is not None:
                pytest.fail(f"ray start --head exited: {head.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray head node at {address} did not answer within {START_DEADLINE_S} s")
            time.sleep(2)
        yield address, f"ray://127.0.0.1:{client_port}", env, Path(folder)
    finally:
        stop_ray_head(head, folder)


def _cluster_up(address: str, env: dict[str, str]) -> bool:
    """Whether a driver can connect and sees the head's 2 CPUs (in a child process: this one stays Ray-free)."""
    probe = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
             "sys.exit(0 if ray.cluster_resources().get('CPU') == 2 else 1)")
    try:
        return subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True,
                              timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.mark.slow
def test_trials_run_as_ray_tasks_in_continuous_slots_and_a_bad_one_is_pruned_from_its_worker(tmp_path, shared_cache,
                                                                                              ray_cluster):
    address, _, env, _ = ray_cluster
    (tmp_path / "outputs" / "sweeps" / "search").mkdir(parents=True)
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{tmp_path}/outputs/sweeps/search/optuna.db")
    # Trials 0 and 1 run side by side, one short and one long; trial 2 takes the first slot that frees, and its learning
    # rate of 100 wrecks the model (val/loss ~1e7): the median of the finished trial's report at step 2 prunes it there.
    for learning_rate, max_steps in ((1e-3, 4), (1e-3, 12), (100.0, 12)):
        study.enqueue_trial({"model.learning_rate": learning_rate, "trainer.max_steps": max_steps})
    sweep(tmp_path, shared_cache, "hydra/launcher=smart_ray", f"hydra.launcher.ray.init.address={address}",
          "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=3", "logger=none", "hydra.sweeper.report=false",
          "hydra.sweeper.enqueue_defaults=false", "model.learning_rate=tag(log, interval(1e-4, 1e3))",
          "trainer.max_steps=choice(4, 12)", "hydra.sweeper.pruner.n_startup_trials=1",
          "hydra.sweeper.pruner.n_warmup_steps=0", "objective=teacher_forced", env=env)
    study = load(tmp_path)
    assert states(study) == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    short, long, wrecked = study.trials
    assert short.user_attrs["global_step"] == 4 and long.user_attrs["global_step"] == 12
    # The pruned trial reported from its Ray worker into the study, and stopped at its first validation.
    assert wrecked.last_step == 2 and wrecked.user_attrs["global_step"] == 2
    assert wrecked.intermediate_values[2] > 10 * short.intermediate_values[2]
    # It took the free slot while the other trial still ran, not a new batch. (Which one ends first is not certain: on a
    # cold cache both trials build the dataset first.)
    assert wrecked.datetime_start < max(short.datetime_complete, long.datetime_complete)
    # Each trial was a task of the cluster: Hydra's job id is the Ray task's.
    job_ids = [OmegaConf.load(Path(t.user_attrs["output_dir"]) / ".hydra" / "hydra.yaml").hydra.job.id
               for t in study.trials]
    assert len(set(job_ids)) == 3
    assert all(ray.TaskID(bytes.fromhex(job_id)).hex() == job_id for job_id in job_ids)



@pytest.mark.slow
def test_without_an_address_ray_starts_on_this_machine_and_a_job_whose_worker_dies_fails_alone_once(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's session files, not /tmp/ray's shared ones
    app = subprocess.Popen(
        [sys.executable, str(APP), "-m",
         "hydra/launcher=smart_ray", "hydra.launcher.ray.init.num_cpus=2",
         "hydra.launcher.ray.init.object_store_memory=80000000", f"+hydra.launcher.ray.init._temp_dir={folder}",
         f"hydra.sweep.dir={tmp_path / 'sweep'}", "crash=false,true"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = app.communicate(timeout=600)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # Hydra's basic sweeper raises the failed job's error once the launch returns: after the other job finished.
    assert app.returncode != 0
    assert "Job #1 did not run to its end in Ray: WorkerCrashedError" in output, output[-3000:]
    ran = json.loads((tmp_path / "sweep" / "0" / "job.json").read_text())
    assert ran["cpus"] == 2  # the cluster ray.init started, of hydra.launcher.ray.init.num_cpus
    assert ran["pid"] != app.pid and ray.TaskID(bytes.fromhex(ran["job_id"])).hex() == ran["job_id"]
    # max_retries 0: the crashed job ran once, not again over its own trial.
    assert len((tmp_path / "sweep" / "1" / "attempts").read_text().split()) == 1
    assert not (tmp_path / "sweep" / "1" / "job.json").exists()


@pytest.mark.slow
def test_a_driver_on_another_machine_reaches_the_cluster_through_ray_client(tmp_path, ray_cluster):
    _, client_address, env, cluster_folder = ray_cluster
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(APP), "-m", "hydra/launcher=smart_ray",
             f"hydra.launcher.ray.init.address={client_address}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
             "crash=false"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        # Ray's client proxy starts a server process per driver; on a loaded machine that start has failed (Ray's
        # side, before our launcher ran anything: the start itself, or the proxier meeting a zombie process while it
        # starts it): one more connection, with the server's own log if it fails again.
        if done.returncode == 0 or not any(failure in done.stderr for failure in (
                "Starting Ray client server failed", "Initialization failure from server")):
            break
    server_logs = "".join(p.read_text()[-2000:] for p in cluster_folder.glob("session_*/logs/ray_client_server*.err"))
    assert done.returncode == 0, done.stderr[-3000:] + server_logs
    ran = json.loads((tmp_path / "sweep" / "0" / "job.json").read_text())
    assert ran["cpus"] == 2  # the head node's, not a cluster of the driver's own
    assert ray.TaskID(bytes.fromhex(ran["job_id"])).hex() == ran["job_id"]
