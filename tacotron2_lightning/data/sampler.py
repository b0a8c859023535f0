"""Length-bucketed batches: utterances of similar length batched together, reshuffled each epoch, DDP-aware.

Padding a batch to its longest utterance wastes compute on every shorter one; with LJSpeech-like length
spreads, random batches are roughly half padding. Bucketing (as in ESPnet, Coqui TTS and fairseq) shuffles
the dataset, sorts pools of ``bucket_size`` neighbours by length, cuts each pool into batches and shuffles
the batch order, so batches are nearly uniform in length while the training order stays random.

The position in an epoch is state (``state_dict``/``load_state_dict``): a run resumed from a mid-epoch checkpoint
sees exactly the batches it would have seen had it not stopped.
:class:`~tacotron2_lightning.data.loader.ResumableDataLoader` carries that state into Lightning's checkpoints.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

logger = logging.getLogger(__name__)

# Default pool size, in batches. Larger pools give more uniform batches but a less random epoch order;
# 50 batches is enough for padding to be a few percent on TTS corpora.
_DEFAULT_POOL_BATCHES = 50

# Attribute names under which Lightning saves a batch sampler's __init__ arguments (it does so itself for
# `BatchSampler` subclasses built inside a `*_dataloader` hook) to re-create it with an injected sampler:
# lightning_fabric/utilities/data.py `_wrap_init_method`, read by pytorch_lightning/utilities/data.py
# `_dataloader_init_kwargs_resolve_sampler`.
_LIGHTNING_SAVED_ARGS = (
    "__pl_saved_args", "__pl_saved_kwargs", "__pl_saved_arg_names", "__pl_saved_default_kwargs",
)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")


class _SetEpochRelay:
    """What ``batch_sampler.sampler`` returns: Lightning calls ``set_epoch`` there, never on the batch sampler."""

    def __init__(self, owner: LengthBucketBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epoch={self.owner.epoch})"


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances in a seeded, per-epoch random order; disjoint shards under DDP.

    Each epoch, with a generator seeded by ``seed + epoch``: shuffle the indices, split them into pools of
    ``bucket_size``, sort each pool by length, cut the pools into batches of ``batch_size`` (only the very
    last batch of the epoch can be smaller) and shuffle the batch order. With ``shuffle=False`` all indices
    are sorted by length and batched in order. The order depends only on ``(seed, epoch)``, so every rank
    computes the same global list of batches; rank ``r`` of ``R`` takes batches ``r, r + R, r + 2R, ...``.
    So that every rank runs the same number of steps (DDP would hang otherwise), the batch count is made a
    multiple of ``R``: by repeating batches from the start of the epoch or, with ``drop_last``, by dropping
    the partial batch and the last ``count % R`` batches.

    Lightning: ``Trainer(use_distributed_sampler=True)`` (the default) under DDP re-creates a DataLoader's
    custom batch sampler to inject a ``DistributedSampler`` (``DataConnector._prepare_dataloader`` ->
    ``utilities/data.py:_dataloader_init_kwargs_resolve_sampler``). It re-uses the saved ``__init__``
    arguments with ``sampler`` replaced where it has them, otherwise it calls ``cls(sampler,
    batch_size=..., drop_last=...)``, which would lose ``lengths``. This class therefore saves its own
    arguments the way Lightning does and accepts ``sampler=``; it reads only ``num_replicas``/``rank``
    from an injected ``DistributedSampler`` and keeps its own order. Lightning calls ``set_epoch`` on
    ``batch_sampler.sampler`` (``_set_sampler_epoch``), so that attribute relays to :meth:`set_epoch`.
    ``num_replicas``/``rank`` left as None are resolved at each ``__iter__``/``__len__``, because a
    DataLoader is often built before the process group exists.

    Resuming mid-epoch: :meth:`state_dict` is ``{"epoch", "batches_done", ...}``, where ``batches_done`` counts
    this rank's batches of the epoch handed out so far; after :meth:`load_state_dict`, iterations of that epoch
    start at batch ``batches_done`` (until one of them is exhausted or another epoch is set), and a state taken
    after an epoch's last batch continues with the next epoch. The epoch's order is computed when ``iter()`` is
    called, so the ``DataLoader``'s own prefetching cannot see a later ``set_epoch``. A DataLoader prefetches
    batches before the training loop takes them: save its count, not this one (``ResumableDataLoader`` does).

    Args:
        lengths: Length of each utterance (e.g. mel frames), indexed like the dataset.
        batch_size: Utterances per batch.
        bucket_size: How many shuffled utterances are sorted together; rounded up to a multiple of
            ``batch_size``. Default ``50 * batch_size``.
        shuffle: Random pools and batch order each epoch; False gives length-sorted batches in order.
        seed: Base seed; must be the same on every rank.
        drop_last: Drop the partial batch and, under DDP, the batches that do not divide evenly among ranks.
        num_replicas: Number of DDP processes. None: from Lightning's injected sampler, else
            ``torch.distributed`` when initialised, else 1.
        rank: This process's rank, resolved like ``num_replicas``.
        sampler: Set by Lightning when it re-creates the sampler; only its ``num_replicas``/``rank`` are used.

    Example:
        >>> sampler = LengthBucketBatchSampler([5, 1, 4, 2, 3, 6], batch_size=2, shuffle=False)
        >>> list(sampler)
        [[1, 3], [4, 2], [0, 5]]
        >>> resumed = LengthBucketBatchSampler([5, 1, 4, 2, 3, 6], batch_size=2, shuffle=False)
        >>> resumed.load_state_dict({"epoch": 0, "batches_done": 1})
        >>> list(resumed)
        [[4, 2], [0, 5]]
        >>> loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)  # doctest: +SKIP
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        bucket_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        sampler: Sampler | None = None,
    ):
        if isinstance(lengths, Sampler):
            # Lightning's fallback `cls(sampler, batch_size=..., drop_last=...)`: only reachable if it stopped
            # honouring the saved arguments below; fail loudly rather than sample the wrong thing.
            raise TypeError(
                f"lengths must be a sequence of utterance lengths, got a sampler ({type(lengths).__name__}); "
                "if Lightning re-created this batch sampler, pass Trainer(use_distributed_sampler=False)"
            )
        _check_positive_int("batch_size", batch_size)
        if bucket_size is not None:
            _check_positive_int("bucket_size", bucket_size)
        if num_replicas is not None:
            _check_positive_int("num_replicas", num_replicas)
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
            raise ValueError(f"rank must be a non-negative integer, got rank={rank!r}")
        if rank is not None and num_replicas is not None and rank >= num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got rank={rank}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got seed={seed!r}")
        self.lengths = self._as_lengths(lengths)

        self.batch_size = batch_size
        pool = _DEFAULT_POOL_BATCHES * batch_size if bucket_size is None else bucket_size
        # A pool that is a whole number of batches leaves no partial batch inside the epoch.
        self.bucket_size = -(-pool // batch_size) * batch_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.epoch_start = 0  # the batch of the epoch at which the latest iteration began (> 0 when resumed)
        self._batches_done = 0  # this rank's batches of `epoch` handed out, counting those skipped on resume
        self._resume: dict[str, int] | None = None  # a loaded state, applied to iterations of its epoch
        self._injected = sampler
        self._remember_init_args(
            lengths=lengths, batch_size=batch_size, bucket_size=bucket_size, shuffle=shuffle, seed=seed,
            drop_last=drop_last, num_replicas=num_replicas, rank=rank, sampler=sampler,
        )

    @staticmethod
    def _as_lengths(lengths: Sequence[int]) -> list[int]:
        try:
            values = list(lengths)
        except TypeError:
            raise ValueError(f"lengths must be a sequence of integers, got {type(lengths).__name__}") from None
        if not values:
            raise ValueError("lengths must not be empty, got 0 lengths")
        result = []
        for position, value in enumerate(values):
            try:
                as_int = int(value)
            except (TypeError, ValueError):
                raise ValueError(f"lengths[{position}]={value!r} is not an integer") from None
            if as_int != value or as_int < 0:
                raise ValueError(f"lengths[{position}]={value!r} is not a non-negative integer")
            result.append(as_int)
        return result

    def _remember_init_args(self, **kwargs: object) -> None:
        # Everything as keyword arguments, so Lightning's `_replace_value_in_saved_args("sampler", ...)` finds
        # `sampler` and re-creating keeps lengths, seed and the rest. Lightning sets these itself (before our
        # __init__ runs) for BatchSampler subclasses made in a hook; don't overwrite its record then.
        if hasattr(self, _LIGHTNING_SAVED_ARGS[0]):
            return
        for name, value in zip(_LIGHTNING_SAVED_ARGS, ((), kwargs, (), {}), strict=True):
            object.__setattr__(self, name, value)

    @property
    def sampler(self) -> _SetEpochRelay:
        """Where Lightning's ``_set_sampler_epoch`` looks for ``set_epoch``; relays it to this sampler."""
        return _SetEpochRelay(self)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order the next ``__iter__`` yields (call on every rank, each epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got epoch={epoch!r}")
        if epoch != self.epoch:
            self._resume = None  # a loaded position belongs to its own epoch only
            self._batches_done = 0
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """Where this rank is: the epoch and how many of its batches of that epoch were handed out, plus what
        that position depends on (seed, dataset size, world size), checked by :meth:`load_state_dict`'s resume."""
        return {"epoch": self.epoch, "batches_done": self._batches_done, "seed": self.seed,
                "size": len(self.lengths), "num_replicas": self.world()[0]}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continues from ``state`` (a :meth:`state_dict`): the next iteration of its epoch skips the batches
        already done. The seed, size and world size are checked when iterating: a changed one is logged."""
        for key in ("epoch", "batches_done"):
            value = state.get(key) if isinstance(state, dict) else None
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"state[{key!r}] must be a non-negative integer, got {value!r} in {state!r}")
        self.epoch = state["epoch"]
        self._batches_done = state["batches_done"]
        self._resume = dict(state)

    def _resume_position(self, num_replicas: int, batch_count: int) -> int:
        """The batch of this epoch at which the next iteration starts: the loaded position, adjusted or dropped
        when what it depends on changed."""
        resume = self._resume
        if resume is None or resume["epoch"] != self.epoch:
            return 0
        if resume.get("seed", self.seed) != self.seed or resume.get("size", len(self.lengths)) != len(self.lengths):
            logger.warning(
                "Resuming epoch %d from its first batch: the checkpoint's position is for seed=%s and %s "
                "utterances, this run has seed=%s and %d", self.epoch, resume.get("seed"), resume.get("size"),
                self.seed, len(self.lengths))
            return 0
        done = resume["batches_done"]
        saved_replicas = resume.get("num_replicas", num_replicas)
        if saved_replicas != num_replicas:
            # Every rank took as many batches from one global order: go on from the same global position.
            converted = min(done * saved_replicas // num_replicas, batch_count)
            logger.warning("Resuming epoch %d on %d ranks from a checkpoint of %d: batch %d of this rank's %d "
                           "(%d per rank were done)", self.epoch, num_replicas, saved_replicas, converted,
                           batch_count, done)
            return converted
        return done

    def world(self) -> tuple[int, int]:
        """``(num_replicas, rank)`` in effect now: explicit arguments, else Lightning's injected sampler,
        else the initialised default process group, else ``(1, 0)``."""
        num_replicas, rank = self.num_replicas, self.rank
        if isinstance(self._injected, DistributedSampler):
            num_replicas = self._injected.num_replicas if num_replicas is None else num_replicas
            rank = self._injected.rank if rank is None else rank
        if (num_replicas is None or rank is None) and dist.is_available() and dist.is_initialized():
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        num_replicas = 1 if num_replicas is None else num_replicas
        rank = 0 if rank is None else rank
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got rank={rank}")
        return num_replicas, rank

    def _global_batches(self) -> list[list[int]]:
        """All ranks' batches of this epoch, before evening them out among ranks."""
        count = len(self.lengths)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            shuffled = torch.randperm(count, generator=generator).tolist()
            order = []
            for start in range(0, count, self.bucket_size):
                # sorted() is stable, so equal lengths keep their shuffled order.
                order.extend(sorted(shuffled[start:start + self.bucket_size], key=self.lengths.__getitem__))
        else:
            order = sorted(range(count), key=self.lengths.__getitem__)
        batches = [order[start:start + self.batch_size] for start in range(0, count, self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and batches:
            permutation = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in permutation]
        return batches

    def _even_count(self, count: int, num_replicas: int) -> int:
        if self.drop_last:
            return count - count % num_replicas
        return math.ceil(count / num_replicas) * num_replicas

    def _rank_batches(self, num_replicas: int, rank: int) -> list[list[int]]:
        batches = self._global_batches()
        wanted = self._even_count(len(batches), num_replicas)
        if wanted > len(batches):
            logger.debug("Epoch %d: repeating %d of %d batches so %d ranks get equally many",
                         self.epoch, wanted - len(batches), len(batches), num_replicas)
        # Modulo, not a slice: with fewer batches than ranks a batch may have to repeat more than once.
        batches = [batches[i % len(batches)] for i in range(wanted)]
        return batches[rank::num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        num_replicas, rank = self.world()
        batches = self._rank_batches(num_replicas, rank)
        start = self._resume_position(num_replicas, len(batches))
        if start and start >= len(batches):  # saved after the epoch's last batch: the next epoch is due
            self.set_epoch(self.epoch + 1)
            batches, start = self._rank_batches(num_replicas, rank), 0
        # Set now, not at the first next(): a DataLoader creates iterators it never runs.
        self.epoch_start = self._batches_done = start
        return self._hand_out(batches, start)

    def _hand_out(self, batches: list[list[int]], start: int) -> Iterator[list[int]]:
        for batch in batches[start:]:
            self._batches_done += 1
            yield batch
        self._resume = None  # the resumed epoch is over: a later pass over the same epoch number is whole

    def __len__(self) -> int:
        num_replicas, _ = self.world()
        full, partial = divmod(len(self.lengths), self.batch_size)
        count = full + (1 if partial and not self.drop_last else 0)
        return self._even_count(count, num_replicas) // num_replicas

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self.lengths)}, batch_size={self.batch_size}, "
                f"bucket_size={self.bucket_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}, num_replicas={self.num_replicas}, rank={self.rank})")


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of the positions in ``batches`` that are padding, when each is padded to its longest item.

    ``sum(max_len * n - sum(lens)) / sum(max_len * n)`` over the batches; 0.0 when there are no positions.

    Args:
        lengths: Length of each utterance, indexed like the dataset.
        batches: Batches of indices into ``lengths``.

    Example:
        >>> padding_fraction([1, 3, 2, 2], [[0, 1], [2, 3]])  # (6 - 4 + 4 - 4) / (6 + 4)
        0.2
    """
    padded = real = 0
    for batch in batches:
        batch_lengths = [int(lengths[i]) for i in batch]
        if batch_lengths:
            padded += max(batch_lengths) * len(batch_lengths)
            real += sum(batch_lengths)
    return (padded - real) / padded if padded else 0.0
