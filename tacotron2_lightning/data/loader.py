"""ResumableDataLoader: a DataLoader whose position in the epoch goes into Lightning's checkpoints.

Lightning saves the state of a training DataLoader that has ``state_dict``/``load_state_dict`` (its ``_Stateful``
protocol, checked on each loader of the fit loop's ``CombinedLoader``) and gives the state back before the resumed
run's first ``iter()``; without them it warns that a mid-epoch checkpoint resumes "not resumable" and starts the
epoch over. The position must be counted here, not in the batch sampler: worker processes take indices from the
sampler ahead of the batches the training loop has consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader


class ResumableDataLoader(DataLoader):
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
