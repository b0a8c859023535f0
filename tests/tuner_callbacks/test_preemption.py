"""PreemptionCheckpoint: SIGTERM or Ctrl+C mid-step saves last.ckpt at that step and stops; a resumed fit continues
from it; every N steps; both Lightning packages; ranks that are signalled apart agree under DDP.

Signals are real: a helper callback sends one to this process with ``os.kill`` in the middle of a step (or of a
validation), and Lightning's and the callback's handlers take it from there.
"""

from __future__ import annotations

import importlib
import os
import signal
import time

import pytest
import torch

from tests.helpers.processes import rank_records, run_ddp_script
from tests.helpers.toy_module import toy_loader, toy_regression_on, toy_trainer
from tuner_callbacks.lightning_compat import lightning_bases
from tuner_callbacks.preemption import PreemptionCheckpoint, StoppedBySignal

PACKAGES = ["pytorch_lightning", "lightning.pytorch"]


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """Lightning's KeyboardInterrupt path ignores SIGINT for good; give the next test the handlers this one had."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield before
    for signum, handler in before.items():
        signal.signal(signum, handler)


class SignalMidStep(*lightning_bases("Callback")):
    """Sends ``signum`` to this process ``times`` times while step ``step`` runs (before its optimizer step).

    Signals of one kind do not queue: a second one sent before Python ran the handler of the first is lost. With
    ``handled`` (a condition the handler makes true), each signal after the first waits until it holds.
    """

    def __init__(self, step: int, signum: int, times: int = 1, handled=None):
        self.step, self.signum, self.times, self.handled = step, signum, times, handled

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == self.step - 1:
            for sent in range(self.times):
                if sent and self.handled is not None:
                    deadline = time.monotonic() + 120  # generous: a loaded machine runs the handler late
                    while not self.handled() and time.monotonic() < deadline:
                        time.sleep(0.001)  # Python runs pending signal handlers between bytecodes
                os.kill(os.getpid(), self.signum)


class SignalMidValidation(*lightning_bases("Callback")):
    """Sends SIGTERM while the first validation batch after step ``step`` runs."""

    def __init__(self, step: int):
        self.step = step

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step == self.step and batch_idx == 0 and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)


class Steps(*lightning_bases("Callback")):
    def __init__(self):
        self.seen: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(trainer.global_step)


def model_checkpoint(package, dirpath):
    return importlib.import_module(f"{package}.callbacks").ModelCheckpoint(dirpath=dirpath, save_last=True)


def fit(tmp_path, package, callbacks, ckpt_path=None, **kwargs):
    trainer = toy_trainer(tmp_path, callbacks, package=package, enable_checkpointing=True,
                          **{"max_steps": 20, "val_check_interval": 4, **kwargs})
    trainer.fit(toy_regression_on(package)(), toy_loader(), toy_loader(n=8), ckpt_path=ckpt_path)
    return trainer


def saved_step(path) -> int:
    return torch.load(path, weights_only=False, map_location="cpu")["global_step"]


@pytest.mark.parametrize("package", PACKAGES)
@pytest.mark.parametrize(("name", "exit_code"), [("SIGTERM", 143), ("SIGINT", 1)])
def test_a_signal_mid_step_saves_last_at_that_step_and_the_resumed_fit_continues_from_it(tmp_path, package, name,
                                                                                          exit_code):
    preemption = PreemptionCheckpoint()
    with pytest.raises(SystemExit) as stopped:
        fit(tmp_path, package, [SignalMidStep(6, getattr(signal, name)), model_checkpoint(package, tmp_path / "ckpt"),
                                preemption])
    assert stopped.value.code == exit_code
    last = tmp_path / "ckpt" / "last.ckpt"
    assert preemption.last_saved_step == 6 == saved_step(last)  # ModelCheckpoint's own last.ckpt was step 4
    assert sorted(p.name for p in last.parent.iterdir() if "last" in p.name) == ["last.ckpt"]

    steps = Steps()
    trainer = fit(tmp_path, package, [steps, model_checkpoint(package, tmp_path / "ckpt2"), PreemptionCheckpoint()],
                  ckpt_path=last, max_steps=9)
    assert steps.seen == [7, 8, 9] and trainer.global_step == 9


def test_sigterm_exits_with_lightnings_sigterm_exception_of_both_packages():
    from lightning.pytorch.utilities.exceptions import SIGTERMException as LightningSIGTERM
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    assert issubclass(StoppedBySignal, SIGTERMException) and issubclass(StoppedBySignal, LightningSIGTERM)


def test_a_second_ctrl_c_stops_at_once_saving_nothing(tmp_path):
    # What Ctrl+C does in an interactive Python; a process started in the background inherits SIGINT ignored, and
    # the second Ctrl+C then does what it did before, nothing (the conftest puts the handler back afterwards).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    preemption = PreemptionCheckpoint()
    with pytest.raises(SystemExit):
        first_handled = lambda: preemption._received == signal.SIGINT  # noqa: E731
        fit(tmp_path, "pytorch_lightning", [SignalMidStep(6, signal.SIGINT, times=2, handled=first_handled),
                                            model_checkpoint("pytorch_lightning", tmp_path / "ckpt"), preemption])
    assert preemption.last_saved_step is None
    assert saved_step(tmp_path / "ckpt" / "last.ckpt") == 4  # the validation's


def test_sigterm_during_validation_saves_at_that_step(tmp_path):
    # Lightning stops at the end of the validation batch in which SIGTERM came, before ModelCheckpoint saves.
    preemption = PreemptionCheckpoint()
    with pytest.raises(SystemExit):
        fit(tmp_path, "pytorch_lightning", [SignalMidValidation(8), model_checkpoint("pytorch_lightning",
                                                                                     tmp_path / "ckpt"), preemption],
            limit_val_batches=2)
    assert preemption.last_saved_step == 8 == saved_step(tmp_path / "ckpt" / "last.ckpt")
    steps = Steps()
    fit(tmp_path, "pytorch_lightning", [steps, PreemptionCheckpoint(dirpath=tmp_path / "ckpt2")],
        ckpt_path=tmp_path / "ckpt" / "last.ckpt", max_steps=10)
    assert steps.seen == [9, 10]


def test_without_a_model_checkpoint_it_saves_under_the_default_root_dir(tmp_path):
    with pytest.raises(SystemExit):
        fit(tmp_path, "pytorch_lightning", [SignalMidStep(3, signal.SIGTERM), PreemptionCheckpoint()])
    assert saved_step(tmp_path / "checkpoints" / "last.ckpt") == 3


def test_every_n_train_steps_keeps_one_last_ckpt_with_the_model_checkpoint(tmp_path):
    preemption = PreemptionCheckpoint(every_n_train_steps=3)
    saves = []
    original = preemption._save
    preemption._save = lambda trainer, why: (saves.append(trainer.global_step), original(trainer, why))
    fit(tmp_path, "pytorch_lightning", [model_checkpoint("pytorch_lightning", tmp_path / "ckpt"), preemption],
        max_steps=7, val_check_interval=5)
    assert saves == [3, 6]
    # ModelCheckpoint saved last.ckpt at its validation (step 5) over ours, and ours at step 6 over its own.
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if "last" in p.name) == ["last.ckpt"]
    assert saved_step(tmp_path / "ckpt" / "last.ckpt") == 6


def test_the_handlers_are_given_back_after_the_fit(tmp_path, signal_handlers_restored):
    fit(tmp_path, "pytorch_lightning", [PreemptionCheckpoint()], max_steps=2)
    assert signal.getsignal(signal.SIGINT) == signal_handlers_restored[signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) == signal_handlers_restored[signal.SIGTERM]


def test_a_forked_dataloader_worker_leaves_ctrl_c_to_the_training_process():
    preemption = PreemptionCheckpoint()
    preemption._armed, preemption._owner_pid = True, os.getpid() + 1  # as seen from a forked child
    preemption._on_signal(signal.SIGINT, None)
    assert preemption._received == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signals": ["SIGKILL"]}, "`signals` must be a list of \\['SIGTERM', 'SIGINT'\\], got \\['SIGKILL'\\]"),
        ({"signals": "SIGTERM"}, "`signals` must be a list"),
        ({"every_n_train_steps": 0}, "`every_n_train_steps` must be None or an integer >= 1, got 0"),
        ({"filename": "a/last"}, "`filename` must be a file name without folders"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PreemptionCheckpoint(**kwargs)


@pytest.mark.slow
def test_ddp_ranks_signalled_apart_save_the_same_step_and_all_stop(tmp_path):
    """SIGTERM reaches rank 1 only: both ranks agree at the next step, save together and stop."""
    result = run_ddp_script("ddp_preemption.py", tmp_path, timeout_s=600)
    assert result.returncode == 143, result.stderr[-3000:]
    ranks = rank_records(tmp_path)
    assert [r["last_saved_step"] for r in ranks] == [5, 5]
    assert [r["stopped_at"] for r in ranks] == [5, 5]
    assert saved_step(tmp_path / "ckpt" / "last.ckpt") == 5
