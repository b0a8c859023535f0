"""A real ``python train.py`` stopped by SIGTERM mid-interval resumes with ``ckpt_path=last`` from the step it was
stopped at: nothing is lost, nothing is repeated, and Lightning does not call the DataLoader "not resumable".

The test waits on the run itself (a probe callback writes each finished step, and holds the run at the end of step 7
until the signal comes) with generous deadlines, never on a sleep: a machine three times slower only takes longer.
Step 7 is between validations (every 5 steps; ModelCheckpoint's last.ckpt was step 5) and in the middle of an
epoch (2 batches each), so the resumed run must also continue the epoch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers.step_probe import steps
from tests.helpers.train_configs import ROOT, TINY

DEADLINE_S = 600  # start-up and a few tiny steps take well under a minute here


STOP_AT = 7


def train_py(tmp_path, shared_cache, probe, *overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SMART_TUNER_CACHE": str(shared_cache)}
    command = [sys.executable, str(ROOT / "train.py"), *TINY, f"paths.log_dir={tmp_path}/outputs", "logger=csv",
               "trainer.val_check_interval=5", "callbacks.validation_media=null",
               "+callbacks.step_probe._target_=tests.helpers.step_probe.StepProbe",
               f"+callbacks.step_probe.path={probe}", *overrides]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_resumes_from_the_step_it_was_stopped_at(tmp_path, shared_cache):
    probe = tmp_path / "first.steps"
    run = train_py(tmp_path, shared_cache, probe, "trainer.max_steps=1000", f"+callbacks.step_probe.pause_at={STOP_AT}")
    deadline = time.monotonic() + DEADLINE_S
    while STOP_AT not in steps(probe):
        assert run.poll() is None, f"train.py ended early:\n{run.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"train.py did not reach step {STOP_AT}"
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=DEADLINE_S)
    assert run.returncode == 128 + signal.SIGTERM, stderr[-3000:]

    stopped_at = steps(probe)[-1]  # the last step the run finished
    assert stopped_at == STOP_AT
    (last,) = (tmp_path / "outputs" / "runs" / "train").glob("*/checkpoints/last.ckpt")
    assert torch.load(last, weights_only=False, map_location="cpu")["global_step"] == stopped_at
    assert f"saved {last} at step {stopped_at}" in stderr

    resumed_probe = tmp_path / "resumed.steps"
    resumed = train_py(tmp_path, shared_cache, resumed_probe, "ckpt_path=last", f"trainer.max_steps={stopped_at + 3}")
    _, stderr = resumed.communicate(timeout=DEADLINE_S)
    assert resumed.returncode == 0, stderr[-3000:]
    assert steps(resumed_probe) == [stopped_at + 1, stopped_at + 2, stopped_at + 3]
    assert "not resumable" not in stderr
    print(f"stopped at step {stopped_at}; resumed with steps {steps(resumed_probe)}")
