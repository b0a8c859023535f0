"""A Hydra app whose trials wait instead of computing: what a sweep costs apart from the model.

Each trial sleeps for a duration drawn from its trial number (``duration_s`` × (1 ± ``jitter``)), split into
``reports`` waits; after each it reports an intermediate value to its Optuna trial on the path ``TrialPruning``
takes in a real job (``tuner_callbacks.optuna_storage.load_trial``: the study's storage and the pruner the sweep
recorded) and stops as PRUNED when the pruner says so. The objective is a bowl over ``x`` and ``y``; the
intermediate values fall towards it. The trial records ``simulation: {started_at, slept_s, ended_at}`` (epoch
seconds, and the pid of the process it ran in) so that ``benchmarks/sweep_scaling.py --simulate`` can tell the
sweeper's time from the trial's.

    python benchmarks/simulated_trial.py -m hydra.sweep.dir=/tmp/sim hydra.sweeper.n_trials=8 duration_s=2
    python benchmarks/simulated_trial.py -m ... hydra.sweeper.storage=postgresql+psycopg://user@host/db

``fail_every: N`` makes every N-th trial (numbers N-1, 2N-1, ...) raise, for failure-rate checks.
Outside a sweep (``trial.number`` null) it only sleeps and returns the objective.
"""

from __future__ import annotations

import os
import random
import time

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

ATTR_SIMULATION = "simulation"  # trial user attribute: {started_at, slept_s, ended_at, pid}

ConfigStore.instance().store(name="simulated_trial", node={
    "defaults": [{"override hydra/sweeper": "smart_optuna"}, "_self_"],
    "duration_s": 1.0,  # mean seconds a trial waits
    "jitter": 0.0,  # durations are drawn uniformly from duration_s * (1 ± jitter), seeded by the trial number
    "reports": 4,  # intermediate values reported, one after each equal part of the wait
    "fail_every": 0,  # 0: none fails; N: trials N-1, 2N-1, ... raise
    "x": 0.5,
    "y": 0.5,
    "trial": {"study_name": None, "storage": None, "number": None, "artifact_dir": None},  # set by the sweeper
    "hydra": {
        "mode": "MULTIRUN",
        "sweep": {"dir": "multirun/simulated", "subdir": "trial_${trial.number}"},
        "sweeper": {"study_name": "simulated", "n_trials": 8, "direction": "minimize", "report": False,
                    "heartbeat_interval_s": 1.0, "metric_names": ["objective"],
                    "params": {"x": "interval(0.0, 1.0)", "y": "interval(0.0, 1.0)"}},
    },
})


class SimulatedFailure(RuntimeError):
    """Raised by the trials ``fail_every`` picks."""


@hydra.main(version_base="1.3", config_path=None, config_name="simulated_trial")
def main(cfg: DictConfig) -> float:
    started_at = time.time()
    number = cfg.trial.number
    objective = (float(cfg.x) - 0.3) ** 2 + (float(cfg.y) - 0.7) ** 2
    trial = None
    if number is not None:
        from tuner_callbacks.optuna_storage import load_trial

        trial = load_trial(cfg.trial.study_name, cfg.trial.storage, number)
    duration = cfg.duration_s * (1.0 + cfg.jitter * (2.0 * random.Random(number).random() - 1.0))
    slept, pruned = 0.0, False
    for step in range(1, cfg.reports + 1):
        wait = duration / cfg.reports
        time.sleep(wait)
        slept += wait
        if trial is not None:
            trial.report(objective * (1.0 + (cfg.reports - step) / cfg.reports), step)
            if trial.should_prune():
                pruned = True
                break
    if trial is not None:
        trial.set_user_attr(ATTR_SIMULATION, {"started_at": started_at, "slept_s": slept, "ended_at": time.time(),
                                              "pid": os.getpid()})
    if pruned:
        import optuna

        raise optuna.TrialPruned(f"pruned at step {step}")
    if cfg.fail_every and number is not None and number % cfg.fail_every == cfg.fail_every - 1:
        raise SimulatedFailure(f"trial {number} fails on purpose (fail_every={cfg.fail_every})")
    return objective


if __name__ == "__main__":
    main()
