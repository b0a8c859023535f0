"""Tacotron2DataModule: sources, seeded split, cached mels, NVIDIA batches, and a real training step."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from tacotron2_lightning.data.datamodule import Tacotron2DataModule
from tacotron2_lightning.data.sources import DataError
from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import tiny_config
from tests.helpers.data_factory import write_ljspeech, write_tone

TEXTS = [f"utterance number {word}" for word in "one two three four five six seven eight nine ten".split()]


@pytest.fixture
def ljspeech(tmp_path):
    return write_ljspeech(tmp_path / "lj", TEXTS)


def make(ljspeech, tmp_path, **kwargs) -> Tacotron2DataModule:
    return Tacotron2DataModule(path=ljspeech, cache_dir=tmp_path / "cache", **{"batch_size": 4, "val_size": 2,
                                                                                **kwargs})


def test_ljspeech_split_batches_and_mel_lengths(ljspeech, tmp_path):
    data = make(ljspeech, tmp_path)
    data.setup("fit")
    assert len(data.train_set) == 8 and len(data.val_set) == 2
    held_out = {item.utterance.text for item in data.val_set.items}
    assert held_out.isdisjoint(item.utterance.text for item in data.train_set.items)
    batches = list(data.train_dataloader())
    assert sum(batch[0].size(0) for batch in batches) == 8
    text, text_lengths, mel, gate, mel_lengths = batches[0]
    assert mel.size(1) == 80
    assert text_lengths.tolist() == sorted(text_lengths.tolist(), reverse=True)
    for i in range(text.size(0)):
        item = next(it for it in data.train_set.items if list(it.sequence) == text[i, : text_lengths[i]].tolist())
        assert mel_lengths[i] == item.n_frames  # each text still paired with its own audio's mel
        assert gate[i, mel_lengths[i] - 1] == 1 and gate[i, : mel_lengths[i] - 1].sum() == 0


def test_split_is_seeded(ljspeech, tmp_path):
    def held_out(seed):
        data = make(ljspeech, tmp_path, split_seed=seed)
        data.setup("fit")
        return sorted(item.utterance.text for item in data.val_set.items)

    assert held_out(1) == held_out(1)
    assert any(held_out(1) != held_out(seed) for seed in (2, 3, 4))


def test_val_size_as_a_fraction(ljspeech, tmp_path):
    data = make(ljspeech, tmp_path, val_size=0.3)
    data.setup("fit")
    assert len(data.val_set) == 3


def test_mels_are_cached_and_shared_by_the_next_run(ljspeech, tmp_path):
    first = make(ljspeech, tmp_path)
    first.setup("fit")
    batch_first = next(iter(first.val_dataloader()))
    second = make(ljspeech, tmp_path)
    second.setup("fit")
    batch_second = next(iter(second.val_dataloader()))
    cache = second.val_set.mel_of.cache
    assert cache.hits == 2 and cache.misses == 0
    assert torch.equal(batch_first[2], batch_second[2])


def test_filelists_for_train_and_validation(tmp_path):
    for i in range(3):
        write_tone(tmp_path / "wavs" / f"{i}.wav", 0.3 + 0.1 * i)
    (tmp_path / "train.txt").write_text("wavs/0.wav|First one.\nwavs/1.wav|Second one.\n")
    (tmp_path / "val.txt").write_text("wavs/2.wav|Third one.\n")
    data = Tacotron2DataModule(train_filelist=tmp_path / "train.txt", val_filelist=tmp_path / "val.txt",
                               cache_dir=tmp_path / "cache", batch_size=2)
    data.setup("fit")
    assert [item.utterance.text for item in data.val_set.items] == ["Third one."]
    assert len(data.train_set) == 2


def test_bad_data_fails_before_training_naming_the_line(ljspeech, tmp_path):
    (ljspeech / "wavs" / "UT-0003.wav").unlink()
    with pytest.raises(DataError, match="metadata.csv:4 .*is missing"):
        make(ljspeech, tmp_path).setup("fit")
    data = make(ljspeech, tmp_path, skip_bad=True)
    data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == 9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_filelist": "v.txt"}, "val_filelist is set but train_filelist is not"),
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"val_size": 0}, "val_size must be a count"),
        ({"audio": {"hop_lenght": 200}}, "Unknown AudioConfig key\\(s\\) \\['hop_lenght'\\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Tacotron2DataModule(**kwargs)


def test_too_large_val_size_is_named(ljspeech, tmp_path):
    with pytest.raises(DataError, match="val_size=10 holds out 10 of only 10"):
        make(ljspeech, tmp_path, val_size=10).setup("fit")


def test_a_tiny_model_trains_and_validates_on_the_datamodule(ljspeech, tmp_path):
    torch.manual_seed(0)
    data = make(ljspeech, tmp_path, num_workers=0)
    module = Tacotron2Module(tiny_config(n_mel_channels=80), health_utterances=2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 2
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
