"""LengthBucketBatchSampler: coverage, bucketing quality, seeded epochs, DDP sharding and Lightning wiring."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from tacotron2_lightning.data.sampler import LengthBucketBatchSampler, padding_fraction
from tests.helpers.processes import rank_records, run_ddp_script

ROOT = Path(__file__).resolve().parents[2]


def random_lengths(count=1000, seed=0, low=20, high=900):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (count,), generator=generator).tolist()


LENGTHS = random_lengths()


def epoch(sampler, number):
    sampler.set_epoch(number)
    return list(sampler)


def shards(lengths, world, **kwargs):
    return [list(LengthBucketBatchSampler(lengths, num_replicas=world, rank=r, **kwargs)) for r in range(world)]


@pytest.mark.parametrize(("count", "batch_size", "bucket_size"), [(1000, 32, None), (1000, 32, 100), (7, 3, 3)])
def test_every_index_exactly_once_per_epoch(count, batch_size, bucket_size):
    sampler = LengthBucketBatchSampler(LENGTHS[:count], batch_size, bucket_size=bucket_size)
    for number in range(3):
        batches = epoch(sampler, number)
        flat = [i for batch in batches for i in batch]
        assert sorted(flat) == list(range(count))
        assert all(1 <= len(batch) <= batch_size for batch in batches)
        assert sum(len(batch) < batch_size for batch in batches) <= 1  # only the epoch's last batch is partial
        assert len(sampler) == len(batches)


@pytest.mark.parametrize("bucket_size", [None, 8 * 32])
def test_bucketing_pads_far_less_than_random_batches(bucket_size):
    sampler = LengthBucketBatchSampler(LENGTHS, 32, bucket_size=bucket_size, seed=3)
    permutation = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(3)).tolist()
    random_batches = [permutation[i:i + 32] for i in range(0, len(permutation), 32)]
    bucketed, random = padding_fraction(LENGTHS, list(sampler)), padding_fraction(LENGTHS, random_batches)
    assert random > 0.3  # the comparison means something: random batches of these lengths are mostly padding
    assert bucketed < 0.5 * random


def test_bucket_order_is_still_random_across_lengths():
    # Bucketing must not turn the epoch into short-to-long order (that would bias every epoch's start).
    batches = list(LengthBucketBatchSampler(LENGTHS, 32))
    maxima = [max(LENGTHS[i] for i in batch) for batch in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def test_epochs_differ_and_same_seed_and_epoch_repeat():
    a, b = LengthBucketBatchSampler(LENGTHS, 16, seed=5), LengthBucketBatchSampler(LENGTHS, 16, seed=5)
    assert epoch(a, 0) == epoch(b, 0)
    assert epoch(a, 1) == epoch(b, 1)
    assert epoch(a, 0) != epoch(a, 1)
    assert epoch(a, 0) != epoch(LengthBucketBatchSampler(LENGTHS, 16, seed=6), 0)
    assert list(a) == list(a)  # iterating twice in one epoch repeats it


def test_no_shuffle_is_length_sorted_in_order_every_epoch():
    sampler = LengthBucketBatchSampler(LENGTHS, 10, shuffle=False, seed=9)
    batches = epoch(sampler, 0)
    flat = [i for batch in batches for i in batch]
    assert [LENGTHS[i] for i in flat] == sorted(LENGTHS)
    assert flat == sorted(range(len(LENGTHS)), key=LENGTHS.__getitem__)  # stable: ties in index order
    assert epoch(sampler, 4) == batches
    assert list(LengthBucketBatchSampler([5, 1, 4, 2, 3], 2, shuffle=False)) == [[1, 3], [4, 2], [0]]


@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_even_case_is_disjoint_and_covers_everything(shuffle):
    # 96 items / 8 = 12 batches, 6 per rank: no padding needed.
    rank0, rank1 = shards(LENGTHS[:96], 2, batch_size=8, shuffle=shuffle, seed=1)
    assert len(rank0) == len(rank1) == 6
    seen0, seen1 = {i for b in rank0 for i in b}, {i for b in rank1 for i in b}
    assert seen0 | seen1 == set(range(96))
    assert not seen0 & seen1


@pytest.mark.parametrize("shuffle", [True, False])
def test_ddp_uneven_case_pads_by_repeating_batches(shuffle):
    # 100 items / 8 = 13 batches (the last has 4): rank 1 gets one batch repeated from the start of the epoch.
    lengths = LENGTHS[:100]
    rank0, rank1 = shards(lengths, 2, batch_size=8, shuffle=shuffle, seed=1)
    assert len(rank0) == len(rank1) == 7
    assert [len(s) for s in (rank0, rank1)] == [len(LengthBucketBatchSampler(lengths, 8, num_replicas=2, rank=r))
                                                 for r in (0, 1)]
    counts = Counter(i for b in rank0 + rank1 for i in b)
    assert set(counts) == set(range(100))
    repeated = [i for i, c in counts.items() if c > 1]
    assert rank1[-1] == rank0[0]  # the padding batch is the epoch's first one
    assert sorted(repeated) == sorted(rank0[0]) and max(counts.values()) == 2


def test_ddp_fewer_batches_than_ranks_still_gives_every_rank_one():
    batches = shards([3, 1, 2], 4, batch_size=2)
    assert [len(b) for b in batches] == [1, 1, 1, 1]
    assert {i for rank in batches for b in rank for i in b} == {0, 1, 2}


@pytest.mark.parametrize(("count", "world", "expected"), [(100, 1, 12), (100, 2, 6), (100, 3, 4), (7, 4, 0)])
def test_drop_last_drops_partial_and_uneven_batches(count, world, expected):
    per_rank = shards(LENGTHS[:count], world, batch_size=8, drop_last=True, seed=2)
    assert [len(r) for r in per_rank] == [expected] * world
    assert all(len(b) == 8 for r in per_rank for b in r)
    flat = [i for r in per_rank for b in r for i in b]
    assert len(flat) == len(set(flat)) == expected * world * 8


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("count", "batch_size", "world"), [(1, 4, 1), (9, 4, 1), (9, 4, 2), (33, 5, 3), (64, 8, 4)])
def test_len_equals_batches_yielded(count, batch_size, world, shuffle, drop_last):
    for rank in range(world):
        sampler = LengthBucketBatchSampler(LENGTHS[:count], batch_size, shuffle=shuffle, drop_last=drop_last,
                                           num_replicas=world, rank=rank, bucket_size=batch_size * 2)
        for number in range(2):
            assert len(sampler) == len(epoch(sampler, number))


def test_bucket_size_rounds_up_to_whole_batches():
    assert LengthBucketBatchSampler(LENGTHS, 8, bucket_size=20).bucket_size == 24
    assert LengthBucketBatchSampler(LENGTHS, 8).bucket_size == 400


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": -2}, "batch_size=-2"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"lengths": []}, "lengths must not be empty"),
        ({"lengths": [3, -1]}, r"lengths\[1\]=-1"),
        ({"lengths": [3, 2.5]}, r"lengths\[1\]=2.5"),
        ({"lengths": 5}, "lengths must be a sequence"),
        ({"bucket_size": 0}, "bucket_size=0"),
        ({"num_replicas": 0}, "num_replicas=0"),
        ({"rank": -1}, "rank=-1"),
        ({"num_replicas": 2, "rank": 2}, r"rank must be in \[0, num_replicas=2\), got rank=2"),
        ({"seed": "x"}, "seed='x'"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = {"lengths": [3, 1, 2], "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        LengthBucketBatchSampler(**arguments)


def test_bad_epoch_and_rank_resolved_later_are_named():
    with pytest.raises(ValueError, match="epoch=-1"):
        LengthBucketBatchSampler([1, 2], 1).set_epoch(-1)
    with pytest.raises(ValueError, match="got rank=3"):
        len(LengthBucketBatchSampler([1, 2], 1, rank=3))  # no process group: num_replicas resolves to 1


def test_padding_fraction():
    assert padding_fraction([1, 3, 2, 2], [[0, 1], [2, 3]]) == pytest.approx(0.2)
    assert padding_fraction([4, 4], [[0, 1]]) == 0.0
    assert padding_fraction([4], []) == 0.0


def test_lightning_reinstantiation_keeps_arguments_and_takes_the_world_from_the_injected_sampler():
    # What Lightning does under DDP with use_distributed_sampler=True, without starting processes.
    from pytorch_lightning.trainer.states import RunningStage
    from pytorch_lightning.utilities.data import _update_dataloader

    lengths = LENGTHS[:50]
    loader = DataLoader(list(range(50)), batch_sampler=LengthBucketBatchSampler(lengths, 4, seed=11, bucket_size=8))
    for rank in (0, 1):
        injected = DistributedSampler(loader.dataset, num_replicas=2, rank=rank)
        new = _update_dataloader(loader, injected, mode=RunningStage.TRAINING).batch_sampler
        assert type(new) is LengthBucketBatchSampler and new is not loader.batch_sampler
        assert new.world() == (2, rank)
        expected = LengthBucketBatchSampler(lengths, 4, seed=11, bucket_size=8, num_replicas=2, rank=rank)
        assert epoch(new, 3) == epoch(expected, 3)


def test_a_sampler_passed_as_lengths_fails_loudly():
    with pytest.raises(TypeError, match="use_distributed_sampler=False"):
        LengthBucketBatchSampler(DistributedSampler(list(range(4)), num_replicas=1, rank=0), batch_size=2)


class Items(torch.utils.data.Dataset):
    """Item i is its index and its length."""

    def __init__(self, lengths):
        self.lengths = lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        return {"index": index, "length": float(self.lengths[index])}


class RecordingSampler(LengthBucketBatchSampler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.epochs_set = []

    def set_epoch(self, epoch):
        self.epochs_set.append(epoch)
        super().set_epoch(epoch)


class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(batch["index"].tolist())
        return self.layer(batch["length"].float().unsqueeze(1) / 100).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_sets_the_epoch_and_trains_on_the_samplers_batches():
    lengths = random_lengths(40, seed=4, low=1, high=100)
    sampler = RecordingSampler(lengths, 6, bucket_size=12, seed=2)
    module = Recorder()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(Items(lengths), batch_sampler=sampler))
    assert sampler.epochs_set == [0, 1]
    reference = LengthBucketBatchSampler(lengths, 6, bucket_size=12, seed=2)
    assert module.seen[0] == epoch(reference, 0)
    assert module.seen[1] == epoch(reference, 1)
    assert module.seen[0] != module.seen[1]


@pytest.mark.slow
def test_two_process_ddp_ranks_see_disjoint_halves(tmp_path):
    start = time.perf_counter()
    result = run_ddp_script("ddp_bucket_sampler.py", tmp_path, timeout_s=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = rank_records(tmp_path)
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Lightning re-created our sampler (not replaced or wrapped it) and it resolved the 2-process world.
    assert [r["sampler_type"] for r in ranks] == ["LengthBucketBatchSampler"] * 2
    assert [r["sampler_world"] for r in ranks] == [[2, 0], [2, 1]]
    lengths, batch_size = ranks[0]["lengths"], ranks[0]["batch_size"]
    assert len(lengths) % (2 * batch_size) == 0  # the even case: no batch needs repeating
    for number in ("0", "1"):
        seen = [r["seen"][number] for r in ranks]
        assert len(seen[0]) == len(seen[1]) == len(lengths) // batch_size // 2
        indices = [{i for b in batches for i in b} for batches in seen]
        assert indices[0] | indices[1] == set(range(len(lengths)))
        assert not indices[0] & indices[1]
        for rank in (0, 1):
            expected = LengthBucketBatchSampler(lengths, batch_size, bucket_size=ranks[0]["bucket_size"],
                                                seed=ranks[0]["seed"], num_replicas=2, rank=rank)
            assert seen[rank] == epoch(expected, int(number))
    assert ranks[0]["seen"]["0"] != ranks[0]["seen"]["1"]
    print(f"2-process DDP run took {time.perf_counter() - start:.1f} s")
