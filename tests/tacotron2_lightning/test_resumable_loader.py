"""A run resumed mid-epoch sees exactly the batches the uninterrupted run saw: the bucketing sampler's position
(``state_dict``/``load_state_dict``) and ``ResumableDataLoader``, which puts it in Lightning's checkpoints."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from tacotron2_lightning.data.loader import ResumableDataLoader
from tacotron2_lightning.data.sampler import LengthBucketBatchSampler

LENGTHS = [(7 * i) % 23 + 1 for i in range(22)]  # 22 utterances, batch 4: 6 batches an epoch, the last of 2


def sampler(**kwargs) -> LengthBucketBatchSampler:
    return LengthBucketBatchSampler(LENGTHS, 4, bucket_size=8, seed=5, **kwargs)


def epoch(s: LengthBucketBatchSampler, number: int) -> list[list[int]]:
    s.set_epoch(number)
    return list(s)


@pytest.mark.parametrize("done", [0, 1, 3, 5])
def test_a_resumed_sampler_yields_the_rest_of_the_epoch_identically(done):
    original = sampler()
    original.set_epoch(2)
    iterator = iter(original)
    head = [next(iterator) for _ in range(done)]
    state = original.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == done

    resumed = sampler()
    resumed.load_state_dict(state)
    assert head + list(resumed) == epoch(sampler(), 2)
    assert list(resumed) == epoch(sampler(), 2)  # the resumed epoch is over: another pass is whole
    assert epoch(resumed, 3) == epoch(sampler(), 3)


def test_a_state_taken_after_the_last_batch_continues_with_the_next_epoch():
    original = sampler()
    original.set_epoch(1)
    list(original)
    resumed = sampler()
    resumed.load_state_dict(original.state_dict())
    assert list(resumed) == epoch(sampler(), 2) and resumed.epoch == 2


def test_a_resumed_rank_continues_its_own_share():
    for rank in (0, 1):
        original = sampler(num_replicas=2, rank=rank)
        iterator = iter(original)
        head = [next(iterator) for _ in range(2)]
        resumed = sampler(num_replicas=2, rank=rank)
        resumed.load_state_dict(original.state_dict())
        assert head + list(resumed) == list(sampler(num_replicas=2, rank=rank))


def test_a_changed_seed_or_dataset_restarts_the_epoch_and_says_so(caplog):
    original = sampler()
    iterator = iter(original)
    next(iterator)
    state = original.state_dict()
    other = LengthBucketBatchSampler(LENGTHS, 4, bucket_size=8, seed=6)
    other.load_state_dict(state)
    assert list(other) == list(LengthBucketBatchSampler(LENGTHS, 4, bucket_size=8, seed=6))
    assert "from its first batch" in caplog.text and "seed=5" in caplog.text


@pytest.mark.parametrize("state", [{}, {"epoch": -1, "batches_done": 0}, {"epoch": 0, "batches_done": "2"}, None])
def test_a_bad_state_is_named(state):
    with pytest.raises(ValueError, match="must be a non-negative integer"):
        sampler().load_state_dict(state)


def test_the_loader_counts_what_it_handed_out_not_what_its_workers_prefetched():
    loader = ResumableDataLoader(list(range(len(LENGTHS))), batch_sampler=sampler(), num_workers=2,
                                 prefetch_factor=2)
    iterator = iter(loader)
    taken = [next(iterator).tolist() for _ in range(2)]
    state = loader.state_dict()
    assert state["batches_done"] == 2 and loader.batch_sampler.state_dict()["batches_done"] > 2
    resumed = ResumableDataLoader(list(range(len(LENGTHS))), batch_sampler=sampler(), num_workers=2,
                                  persistent_workers=True)
    resumed.load_state_dict(state)
    assert taken + [batch.tolist() for batch in resumed] == list(sampler())
    assert resumed.state_dict()["batches_done"] == 6


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return len(LENGTHS)

    def __getitem__(self, index):
        return torch.tensor([float(index)])


class RecorderBase:
    """Records the indices of every training batch; built on either package's LightningModule by ``fit``."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.view(-1).int().tolist())
        return self.layer(batch / 100).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path, max_steps, num_workers=0, ckpt_path=None, checkpoint=None, package="pytorch_lightning"):
    pl = importlib.import_module(package)
    module = type("Recorder", (RecorderBase, pl.LightningModule), {})()
    loader = ResumableDataLoader(Items(), batch_sampler=sampler(), num_workers=num_workers,
                                 persistent_workers=num_workers > 0)
    callbacks = [checkpoint] if checkpoint is not None else []
    trainer = pl.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=checkpoint is not None,
                         callbacks=callbacks, default_root_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path)
    assert not [w for w in caught if "not resumable" in str(w.message)]
    return module.seen


@pytest.mark.parametrize(("package", "num_workers"),
                         [("pytorch_lightning", 0), ("pytorch_lightning", 2), ("lightning.pytorch", 0)])
def test_lightning_resumes_mid_epoch_with_the_batches_of_the_uninterrupted_run(tmp_path, package, num_workers):
    callbacks = importlib.import_module(f"{package}.callbacks")
    checkpoint = callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=1,
                                           save_top_k=-1)
    uninterrupted = fit(tmp_path, 15, checkpoint=checkpoint, package=package)
    # steps 3 and 10: mid-epoch; 6: after an epoch's last batch; 7: one batch into the next epoch
    for stopped_at in ([3, 6] if num_workers else [3, 6, 7, 10]):
        resumed = fit(tmp_path, 15, num_workers, ckpt_path=tmp_path / "ckpt" / f"step={stopped_at}.ckpt",
                      package=package)
        assert resumed == uninterrupted[stopped_at:], f"resumed at step {stopped_at}"


def test_the_datamodules_workers_leave_sigterm_to_the_training_process(tmp_path):
    # `timeout` and SLURM signal the whole process group; a worker that died of it would fail the step.
    import multiprocessing
    import os
    import signal

    from tacotron2_lightning.data.datamodule import Tacotron2DataModule
    from tests.helpers.data_factory import write_ljspeech

    root = write_ljspeech(tmp_path / "lj", [f"utterance number {i}" for i in range(32)], seconds=[0.2] * 32)
    data = Tacotron2DataModule(path=root, cache_dir=tmp_path / "cache", batch_size=2, val_size=2, num_workers=2)
    data.setup("fit")
    iterator = iter(data.train_dataloader())
    first = next(iterator)
    workers = multiprocessing.active_children()
    assert len(workers) == 2
    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    rest = list(iterator)  # 15 batches, 4 of them prefetched: the workers' death would fail this
    assert len(rest) == 14 and first[0].size(0) == 2
    del iterator  # the loader shuts its workers down: they end as told, not of the signal
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]


def _slow_init(worker_id: int) -> None:
    """A worker init function that is still starting when the signal comes, then ignores it as ours does."""
    import time

    from tacotron2_lightning.data.loader import ignore_group_signals

    time.sleep(1.0)
    ignore_group_signals()


@pytest.mark.parametrize("loader_class", ["WorkerSignalsDataLoader", "DataLoader"])
def test_a_signal_before_the_workers_init_function_waits_instead_of_killing_them(loader_class):
    import os
    import signal

    import torch.utils.data

    from tacotron2_lightning.data import loader as loaders

    cls = getattr(loaders, loader_class, None) or torch.utils.data.DataLoader
    data = cls(list(range(8)), batch_size=2, num_workers=2, worker_init_fn=_slow_init)
    iterator = iter(data)  # workers started, each sleeping in its init function
    workers = list(iterator._workers)
    for worker in workers:
        os.kill(worker.pid, signal.SIGTERM)
    if loader_class == "WorkerSignalsDataLoader":
        assert [int(x) for batch in iterator for x in batch] == list(range(8))
        for worker in workers:  # shut down at the epoch's end, as told: not killed by the signal (-15)
            worker.join(timeout=60)
        assert [worker.exitcode for worker in workers] == [0, 0]
    else:  # a plain DataLoader's workers die of it: what the block prevents
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            list(iterator)
