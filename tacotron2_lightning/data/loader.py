"""The training app's DataLoaders: workers that leave SIGTERM to the training process, and ResumableDataLoader,
whose position in the epoch goes into Lightning's checkpoints.

Lightning saves the state of a training DataLoader that has ``state_dict``/``load_state_dict`` (its ``_Stateful``
protocol, checked on each loader of the fit loop's ``CombinedLoader``) and gives the state back before the resumed
run's first ``iter()``; without them it warns that a mid-epoch checkpoint resumes "not resumable" and starts the
epoch over. The position must be counted here, not in the batch sampler: worker processes take indices from the
sampler ahead of the batches the training loop has consumed.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

# Signals a whole process group receives (``timeout``, SLURM, Ctrl+C) that the training process handles itself.
GROUP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def group_signals_blocked() -> Iterator[None]:
    """Block SIGTERM and SIGINT in this thread for the block: worker processes started inside it begin with them
    blocked (a child inherits its parent's signal mask), so one sent to the group before a worker's init function
    has set them to be ignored waits instead of killing the worker. The training process gets any it missed when
    the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks, and no process-group signals either
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_group_signals() -> None:
    """In a worker: ignore SIGTERM and SIGINT (which discards one already pending), then unblock them."""
    for signum in GROUP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)


class WorkerSignalsDataLoader(DataLoader):
    """A ``DataLoader`` that starts its worker processes with SIGTERM and SIGINT blocked; give it a
    ``worker_init_fn`` that calls :func:`ignore_group_signals`. Without the block, a signal sent to the process group
    while a worker is still starting (before its init function runs) would kill it and fail the step."""

    def _get_iterator(self):
        if self.num_workers == 0:
            return super()._get_iterator()
        with group_signals_blocked():
            return super()._get_iterator()


class ResumableDataLoader(WorkerSignalsDataLoader):
    """A ``DataLoader`` over a batch sampler with ``state_dict``/``load_state_dict``/``epoch_start`` (such as
    :class:`~tacotron2_lightning.data.sampler.LengthBucketBatchSampler`) whose state is the batch sampler's with
    the number of batches this loader handed out.

    Built with the same arguments as a ``DataLoader`` (Lightning re-creates it with them under DDP). A state taken
    after an epoch's last batch resumes with the next epoch; with ``Trainer(limit_train_batches=...)`` the loader
    cannot see where Lightning ends an epoch, so a checkpoint taken at the last batch of a shortened epoch resumes
    with that epoch's remaining batches.

    Example:
        >>> loader = ResumableDataLoader(dataset, batch_sampler=LengthBucketBatchSampler(lengths, 16))  # doctest: +SKIP
        >>> state = loader.state_dict()    # {"epoch": 3, "batches_done": 17, ...}  # doctest: +SKIP
        >>> loader.load_state_dict(state)  # the next iter() yields batch 17 of epoch 3 onwards  # doctest: +SKIP
    """

    _position: dict[str, Any] | None = None  # the batch sampler's state at the latest iter(), then counted here

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()  # runs the batch sampler's __iter__: the epoch and where it starts are set
        sampler = self.batch_sampler
        self._position = {**sampler.state_dict(), "batches_done": sampler.epoch_start}
        return self._counted(iterator, self._position)

    @staticmethod
    def _counted(iterator: Iterator[Any], position: dict[str, Any]) -> Iterator[Any]:
        for batch in iterator:
            position["batches_done"] += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The batch sampler's state, with ``batches_done`` the batches this loader handed out in the epoch."""
        if self._position is None:
            return self.batch_sampler.state_dict()
        return dict(self._position)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Hands ``state`` to the batch sampler: the next ``iter()`` continues where the saved run stopped."""
        self._position = None
        self.batch_sampler.load_state_dict(state)
