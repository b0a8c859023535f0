"""PreemptionCheckpoint: a resumable ``last.ckpt`` when a scheduler stops the run, and every N steps if asked.

Without it, Lightning answers SIGTERM (``timeout``, ``scancel``, a preempting cluster) by stopping after the
current step and saving nothing: a run resumes from the last checkpoint written at validation and loses every step
since. Ctrl+C (SIGINT) interrupts wherever Python happens to be and saves nothing either.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks.lightning_compat import lightning_bases, pl, rank_zero_info, rank_zero_warn

SIGNALS = ("SIGTERM", "SIGINT")
_MODEL_CHECKPOINTS = lightning_bases("callbacks.ModelCheckpoint")
_LIGHTNING_SIGTERM = lightning_bases("utilities.exceptions.SIGTERMException")


class StoppedBySignal(*_LIGHTNING_SIGTERM):
    """Ends the fit on every rank after the signal's checkpoint is saved: each Lightning package's
    ``SIGTERMException`` (a ``SystemExit``), with exit status 128 + the signal number, as a shell reports it."""


class PreemptionCheckpoint(*lightning_bases("callbacks.Checkpoint")):
    """Saves the run's ``last.ckpt`` when it is told to stop, then stops it; optionally every N training steps.

    On SIGTERM or SIGINT the current training step finishes, ``last.ckpt`` is written at that step and the fit
    ends: with :class:`StoppedBySignal` (exit status 143) for SIGTERM, with ``KeyboardInterrupt`` (Lightning's
    graceful shutdown) for SIGINT. A second Ctrl+C interrupts at once, as it would without this callback. The
    checkpoint is written after the step's ``on_train_batch_end`` hooks of every other callback (this is a
    ``Checkpoint`` callback: Lightning runs those last), so it resumes exactly where the run stopped: the step
    count, optimizer, callbacks and, with a resumable DataLoader, the position in the epoch.

    Where: ``dirpath``/``filename`` default to the folder and last-checkpoint name of the Trainer's
    ``ModelCheckpoint`` (``last.ckpt`` next to the best ones: what ``ckpt_path=last`` finds), else
    ``<default_root_dir>/checkpoints/last.ckpt``. The file is written under a temporary name and renamed, so a
    kill during the write leaves the previous ``last.ckpt`` intact (a ``save_last="link"`` link is replaced, not
    written through). ModelCheckpoints saving the same ``last.ckpt`` are told, so they keep writing that file
    rather than ``last-v1.ckpt``. Being a ``Checkpoint``, it is one of ``trainer.checkpoint_callbacks``: list it
    after your ``ModelCheckpoint`` (``trainer.checkpoint_callback`` is the first), and note that Lightning then
    adds no default ``ModelCheckpoint`` of its own.

    ``every_n_train_steps`` also writes it every N optimizer steps, independent of validation, bounding what a
    SIGKILL (or a node that vanishes) costs.

    Signals. SIGINT is caught from setup, before DataLoader workers fork: they inherit the handler and leave
    Ctrl+C to the training process, which stops them. SIGTERM is caught from the start of training, over
    Lightning's own handler. In a single process that handler still runs too (``trainer.received_sigterm``):
    Lightning then stops at once during a validation, and the checkpoint is written there. Under DDP it does not:
    it broadcasts from inside the handler, a collective call at whatever point each rank was, which ranks that
    are signalled at different moments cannot match. Instead, at every step the ranks agree (one all-reduce of
    a scalar) and all save at the same step -- the save is collective -- and all stop, whichever got the signal.
    ``timeout`` and SLURM signal the whole process group, and PyTorch's DataLoader workers die of SIGTERM, failing
    the step; give them ``worker_init_fn=lambda _: signal.signal(signal.SIGTERM, signal.SIG_IGN)`` (a named
    function when workers are spawned) and they stop when the training process ends them.

    Args:
        dirpath: Folder of the checkpoint; None: the ModelCheckpoint's.
        filename: Name without ``.ckpt``; None: the ModelCheckpoint's last name (``"last"``).
        signals: Which of ``"SIGTERM"`` and ``"SIGINT"`` save a checkpoint before stopping.
        every_n_train_steps: Also save every N optimizer steps; None: only on a signal.

    Example:
        >>> trainer = pl.Trainer(callbacks=[ModelCheckpoint(dirpath="ckpt", save_last=True),
        ...                                 PreemptionCheckpoint(every_n_train_steps=500)])
        >>> trainer.fit(model, datamodule=data)  # SIGTERM at step 1234: ckpt/last.ckpt is step 1234
        >>> trainer.fit(model, datamodule=data, ckpt_path="ckpt/last.ckpt")  # continues from step 1234
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None,
                 signals: Sequence[str] = SIGNALS, every_n_train_steps: int | None = None):
        options.check("filename", filename, filename is None or isinstance(filename, str) and filename != ""
                      and "/" not in filename, "a file name without folders (or None)")
        options.check("signals", signals, not isinstance(signals, str) and all(name in SIGNALS for name in signals),
                      f"a list of {list(SIGNALS)}")
        options.integer("every_n_train_steps", every_n_train_steps, low=1, optional=True)
        self.dirpath, self.filename = dirpath, filename
        self.signals = tuple(signals)
        self.every_n_train_steps = every_n_train_steps
        self.last_saved_step: int | None = None  # global step of the latest save, for messages and tests
        self.last_saved_path: str | None = None
        self._received = 0  # the signal received and not yet acted on (SIGTERM outranks SIGINT), or 0
        self._previous: dict[int, Any] = {}  # signal -> the handler ours replaced
        self._armed = False  # our handlers act (one may outlive the fit: Lightning re-installs what it found)
        self._chain_sigterm = True
        self._owner_pid: int | None = None

    # --- signals: a flag, so that the step finishes ----------------------------------------------------------

    def _install(self, signum: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn(f"PreemptionCheckpoint: not on the main thread, so {signal.Signals(signum).name} cannot "
                           "be caught here" + ("; Lightning's SIGTERM handler still saves through this callback"
                                               if signum == signal.SIGTERM else ""))
            return
        self._previous[signum] = signal.signal(signum, self._on_signal)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._received, self._owner_pid, self._previous, self._armed = 0, os.getpid(), {}, True
        if "SIGINT" in self.signals:
            self._install(signal.SIGINT)  # before the DataLoader workers fork: they inherit it and ignore Ctrl+C

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After Lightning installed its SIGTERM handler, which is kept when it is safe (one process).
        if "SIGTERM" in self.signals and self._armed:
            self._chain_sigterm = trainer.world_size == 1
            self._install(signal.SIGTERM)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._owner_pid:
            return  # a forked DataLoader worker: the training process decides and shuts the workers down
        previous = self._previous.get(signum)
        if not self._armed or (signum == signal.SIGINT and self._received == signal.SIGINT):
            _as_before(signum, frame, previous)  # after the fit, or a second Ctrl+C: stop now
            return
        self._received = max(self._received, int(signum))
        if signum == signal.SIGINT:
            rank_zero_info("PreemptionCheckpoint: SIGINT received; finishing this step to save the last checkpoint "
                           "(press Ctrl+C again to stop at once, saving nothing)")
        elif self._chain_sigterm:
            _as_before(signum, frame, previous)

    def _disarm(self) -> None:
        self._armed = False
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._disarm()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._disarm()  # again: Lightning's teardown put back the SIGINT handler it found, ours

    # --- saving --------------------------------------------------------------------------------------------------

    def _pending(self, trainer: pl.Trainer) -> int:
        """The signal this rank was given and has not acted on (SIGTERM before SIGINT), or 0."""
        if "SIGTERM" in self.signals and trainer.received_sigterm:  # also when our handler could not be installed
            return int(signal.SIGTERM)
        return self._received

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if (batch_idx + 1) % trainer.accumulate_grad_batches and batch_idx + 1 < trainer.num_training_batches:
            return  # mid-accumulation: the gradients gathered so far are in no checkpoint
        signum = self._pending(trainer)
        if trainer.world_size > 1:  # every rank must save at the same step: the save is collective
            decision = torch.tensor(float(signum), device=trainer.strategy.root_device)
            signum = int(trainer.strategy.reduce(decision, reduce_op="max").item())
        step = trainer.global_step
        if signum:
            self._save(trainer, f"{signal.Signals(signum).name} received")
            self._stop(trainer, signum)
        elif self.every_n_train_steps and step % self.every_n_train_steps == 0 and step != self.last_saved_step:
            self._save(trainer, f"every {self.every_n_train_steps} steps")

    def _stop(self, trainer: pl.Trainer, signum: int) -> None:
        if trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps:
            return  # that was the last step: let the fit end as it would have (Lightning does the same)
        self._disarm()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise StoppedBySignal(128 + signum)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._disarm()
        # Lightning's own stop on SIGTERM, raised where this callback has no hook (during validation, at an epoch's
        # end): the loops are at a point a checkpoint resumes from. Single process only: the save is collective.
        if (trainer.state.fn == "fit" and "SIGTERM" in self.signals and trainer.received_sigterm
                and isinstance(exception, _LIGHTNING_SIGTERM) and not isinstance(exception, StoppedBySignal)
                and trainer.world_size == 1 and self.last_saved_step != trainer.global_step):
            self._save(trainer, "SIGTERM received")

    def checkpoint_path(self, trainer: pl.Trainer) -> str:
        """Where the checkpoint goes: ``dirpath``/``filename``, or the Trainer's ModelCheckpoint's last.ckpt."""
        model_checkpoint = next((c for c in trainer.checkpoint_callbacks
                                 if isinstance(c, _MODEL_CHECKPOINTS) and c.dirpath), None)
        dirpath = self.dirpath
        if dirpath is None:
            dirpath = (model_checkpoint.dirpath if model_checkpoint is not None
                       else os.path.join(trainer.default_root_dir, "checkpoints"))
        filename = self.filename
        if filename is None:
            filename = model_checkpoint.CHECKPOINT_NAME_LAST if model_checkpoint is not None else "last"
        return os.path.join(str(dirpath), f"{filename}.ckpt")

    def _save(self, trainer: pl.Trainer, why: str) -> None:
        path = self.checkpoint_path(trainer)
        if "://" in path:  # a remote filesystem: no rename there
            trainer.save_checkpoint(path, weights_only=False)
        else:
            partial = f"{path}.partial"  # not *.ckpt: no ModelCheckpoint takes it for one of its own
            trainer.save_checkpoint(partial, weights_only=False)
            if trainer.is_global_zero:
                os.replace(partial, path)
        self.last_saved_step, self.last_saved_path = trainer.global_step, path
        for callback in trainer.checkpoint_callbacks:
            if (isinstance(callback, _MODEL_CHECKPOINTS) and callback.save_last and callback.dirpath
                    and os.path.join(str(callback.dirpath), callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
                    == path):
                callback.last_model_path = path  # else it would write last-v1.ckpt beside a file it did not write
        rank_zero_info(f"PreemptionCheckpoint: {why}; saved {path} at step {trainer.global_step}")


def _as_before(signum: int, frame: FrameType | None, previous: Any) -> None:
    """Does what the handler ``previous`` (as ``signal.signal`` returned it) would have done with the signal."""
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # the default action, or a handler installed outside Python
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
