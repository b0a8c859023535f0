"""The mel cache computes once, notices changed sources, and never trusts a corrupt or foreign entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tacotron2_lightning.data.mel_cache import MelCache
from tests.helpers.data_factory import write_tone

ROOT = Path(__file__).resolve().parents[2]


class CountingMel:
    def __init__(self):
        self.calls = 0

    def __call__(self, path: Path) -> torch.Tensor:
        self.calls += 1
        return torch.full((4, 3), float(path.stat().st_size))


def test_second_read_is_a_hit_with_the_same_mel(tmp_path):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    compute = CountingMel()
    cache = MelCache(tmp_path / "cache", {"hop": 256}, compute)
    first = cache.get(wav)
    second = cache.get(wav)
    assert compute.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first, second)


def test_changed_source_file_is_recomputed(tmp_path):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    compute = CountingMel()
    cache = MelCache(tmp_path / "cache", {"hop": 256}, compute)
    cache.get(wav)
    write_tone(wav, 0.4)  # same path, new content, size and mtime
    assert cache.get(wav)[0, 0] == wav.stat().st_size
    assert compute.calls == 2


def test_other_audio_settings_use_other_entries(tmp_path):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    assert MelCache(tmp_path, {"hop": 256}, CountingMel()).entry_path(wav) != \
        MelCache(tmp_path, {"hop": 200}, CountingMel()).entry_path(wav)


def test_corrupt_entry_is_recomputed_and_replaced(tmp_path, caplog):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    compute = CountingMel()
    cache = MelCache(tmp_path / "cache", {"hop": 256}, compute)
    expected = cache.get(wav)
    entry = cache.entry_path(wav)
    data = bytearray(entry.read_bytes())
    data[len(data) // 3] ^= 0xFF  # flip bits inside the stored array: the zip CRC must catch it
    entry.write_bytes(bytes(data))
    assert torch.equal(cache.get(wav), expected)
    assert compute.calls == 2
    assert "unreadable" in caplog.text
    assert torch.equal(cache.get(wav), expected) and compute.calls == 2  # rewritten whole


def test_truncated_entry_is_recomputed(tmp_path):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    compute = CountingMel()
    cache = MelCache(tmp_path / "cache", {"hop": 256}, compute)
    cache.get(wav)
    entry = cache.entry_path(wav)
    entry.write_bytes(entry.read_bytes()[:40])
    cache.get(wav)
    assert compute.calls == 2


def test_no_temporary_files_are_left_behind(tmp_path):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    cache = MelCache(tmp_path / "cache", {"hop": 256}, CountingMel())
    cache.get(wav)
    files = [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].endswith(".npz") and not files[0].startswith(".tmp-")


CONCURRENT_WRITER = """
import sys, torch
from pathlib import Path
from tacotron2_lightning.data.mel_cache import MelCache

def must_not_compute(path):
    raise RuntimeError("a reader saw a partial entry and had to recompute")

wav = Path(sys.argv[2])
mel = torch.arange(20000.0).reshape(80, 250)
cache = MelCache(Path(sys.argv[1]), {"hop": 256}, must_not_compute)
for _ in range(30):
    cache._write(cache.entry_path(wav), cache._fields(wav), mel)
    assert torch.equal(cache.get(wav), mel)
"""


@pytest.mark.slow
def test_processes_writing_the_same_entry_at_once_never_see_a_partial_one(tmp_path):
    wav = write_tone(tmp_path / "a.wav", 0.2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path / "cache"), str(wav)],
                                env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [w.communicate(timeout=120)[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
