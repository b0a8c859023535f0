"""``hydra/launcher=submitit_local`` (hydra-submitit-launcher): each trial a submitit job, the code path of
``submitit_slurm`` without the scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from tests.hydra_plugins.test_sweeper import load, states, sweep

pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                    reason="the `distributed` extra (and `dev`) installs hydra-submitit-launcher")


@pytest.mark.slow
def test_a_submitit_local_sweep_runs_each_trial_as_a_submitit_job_reporting_to_the_study(tmp_path, shared_cache):
    sweep(tmp_path, shared_cache, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=30",
          "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2", "logger=none", "hydra.sweeper.report=false")
    study = load(tmp_path)
    assert states(study) == [TrialState.COMPLETE] * 2
    sweep_dir = tmp_path / "outputs" / "sweeps" / "search"
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == [2, 4]  # TrialPruning reported from the job at each validation
        # Hydra's job id is submitit's (SLURM_JOB_ID on a cluster); submitit keeps the job's call, result and logs.
        job_id = OmegaConf.load(Path(trial.user_attrs["output_dir"]) / ".hydra" / "hydra.yaml").hydra.job.id
        assert (sweep_dir / ".submitit" / job_id / f"{job_id}_0_result.pkl").is_file()
    assert (sweep_dir / "optimization_results.yaml").is_file()
