"""Every defect strict mode names is skippable with ``skip_bad`` and counted; BOM and CRLF lists read the same.

An LJSpeech folder of ten good utterances gets one defect on line 8 (or a filelist gets one on line 2); strict
mode must refuse it naming ``file:line`` and the defect, and ``skip_bad=true`` must keep the other utterances and
log the count and the line.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

import pytest

from tacotron2_lightning.data.datamodule import Tacotron2DataModule
from tacotron2_lightning.data.sources import DataError, read_filelist, read_ljspeech
from tests.helpers.data_factory import write_ljspeech, write_tone

TEXTS = [f"utterance number {word}" for word in "one two three four five six seven eight nine ten".split()]
BAD_LINE = 8  # 1-based: UT-0007
GOOD_ID = "UT-0007"


def _set_line(root: Path, text: bytes) -> None:
    metadata = root / "metadata.csv"
    lines = metadata.read_bytes().split(b"\n")
    lines[BAD_LINE - 1] = text
    metadata.write_bytes(b"\n".join(lines))


def _wav(root: Path) -> Path:
    return root / "wavs" / f"{GOOD_ID}.wav"


# name: (how to break line 8 of metadata.csv or its wav, what strict mode says about it)
METADATA_DEFECTS = {
    "one field": (lambda root: _set_line(root, b"UT-0007 no separator"), "expected 'id|text|normalized_text'"),
    "four fields": (lambda root: _set_line(root, b"UT-0007|a|b|c"), "expected 'id|text|normalized_text'"),
    "empty id": (lambda root: _set_line(root, b" |some text|some text"), "expected 'id|text|normalized_text'"),
    "not utf-8": (lambda root: _set_line(root, b"UT-0007|caf\xe9 au lait|x"),
                  "not UTF-8 text (invalid continuation byte at byte 11 of the line)"),
}
AUDIO_AND_TEXT_DEFECTS = {
    "missing wav": (lambda root: _wav(root).unlink(), "audio file is missing"),
    "unreadable wav": (lambda root: _wav(root).write_bytes(b"RIFF, but not really"), "audio file is unreadable"),
    "empty wav": (lambda root: write_tone(_wav(root), 0.0), "audio is empty (0 samples)"),
    "stereo": (lambda root: write_tone(_wav(root), 0.4, channels=2), "audio has 2 channels; expected mono"),
    "sample rate": (lambda root: write_tone(_wav(root), 0.4, sampling_rate=16000),
                    "audio is 16000 Hz, expected 22050 Hz"),
    "empty text": (lambda root: _set_line(root, b"UT-0007| | "), "text is empty"),
    "text cleans to nothing": (lambda root: _set_line(root, b"UT-0007|~~~|~~~"), "cleans to nothing"),
    "text cannot be cleaned": (lambda root: _set_line(root, b"UT-0007|" + b"9" * 400 + b"|"),
                               "text cannot be cleaned: cannot expand numbers"),
}
DEFECTS = {**METADATA_DEFECTS, **AUDIO_AND_TEXT_DEFECTS}


@pytest.fixture
def ljspeech(tmp_path):
    return write_ljspeech(tmp_path / "lj", TEXTS)


def datamodule(tmp_path, **kwargs) -> Tacotron2DataModule:
    return Tacotron2DataModule(cache_dir=tmp_path / "cache", batch_size=4, val_size=2, **kwargs)


@pytest.mark.parametrize("defect", DEFECTS)
def test_strict_mode_names_the_line_and_the_defect(defect, ljspeech, tmp_path):
    DEFECTS[defect][0](ljspeech)
    with pytest.raises(DataError) as error:
        datamodule(tmp_path, path=ljspeech).setup("fit")
    message = str(error.value)
    assert f"metadata.csv:{BAD_LINE}" in message and DEFECTS[defect][1] in message
    assert "1 " in message and "set skip_bad=true" in message
    assert f"metadata.csv:{BAD_LINE - 1}" not in message


@pytest.mark.parametrize("defect", DEFECTS)
def test_skip_bad_skips_the_defect_and_counts_it(defect, ljspeech, tmp_path, caplog):
    DEFECTS[defect][0](ljspeech)
    data = datamodule(tmp_path, path=ljspeech, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    kept = [item.utterance.origin for item in data.train_set.items + data.val_set.items]
    assert len(kept) == len(TEXTS) - 1 and not any(origin.endswith(f":{BAD_LINE}") for origin in kept)
    what = "malformed line" if defect in METADATA_DEFECTS else "bad utterance"
    assert f"Skipping 1 {what}(s) of 10" in caplog.text
    assert f"metadata.csv:{BAD_LINE}" in caplog.text and DEFECTS[defect][1] in caplog.text


FILELIST_DEFECTS = {
    "no separator": (b"wavs/UT-0001.wav", "expected 'path/to/audio.wav|text'"),
    "empty path": (b" |some text", "expected 'path/to/audio.wav|text'"),
    "not utf-8": (b"wavs/UT-0001.wav|caf\xe9 au lait", "not UTF-8 text (invalid continuation byte at byte 20"),
}


@pytest.mark.parametrize("which", ["train", "val"])
@pytest.mark.parametrize("defect", FILELIST_DEFECTS)
def test_filelist_defects_in_both_modes(defect, which, ljspeech, tmp_path, caplog):
    lines = {"train": [f"wavs/UT-{i:04d}.wav|{TEXTS[i]}".encode() for i in range(6)],
             "val": [f"wavs/UT-{i:04d}.wav|{TEXTS[i]}".encode() for i in range(6, 10)]}
    lines[which][1] = FILELIST_DEFECTS[defect][0]
    for name, content in lines.items():
        (tmp_path / f"{name}.txt").write_bytes(b"\n".join(content) + b"\n")
    lists = {"train_filelist": tmp_path / "train.txt", "val_filelist": tmp_path / "val.txt", "audio_root": ljspeech}
    with pytest.raises(DataError, match=re.escape(f"{which}.txt:2: {FILELIST_DEFECTS[defect][1]}")):
        datamodule(tmp_path, **lists).setup("fit")
    data = datamodule(tmp_path, **lists, skip_bad=True)
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    assert len(data.train_set) + len(data.val_set) == 9
    assert "Skipping 1 malformed line(s)" in caplog.text and f"{which}.txt:2" in caplog.text


def test_a_list_with_nothing_usable_is_refused_even_when_skipping(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"no separator\n\n")
    with pytest.raises(DataError, match="list.txt lists no utterances \\(1 malformed line\\(s\\) skipped\\)"):
        read_filelist(tmp_path / "list.txt", skip_bad=True)


def test_strict_mode_lists_every_malformed_line_at_once(ljspeech):
    metadata = ljspeech / "metadata.csv"
    lines = metadata.read_text().splitlines()
    lines[2], lines[7] = "broken", "also|broken|here|too"
    metadata.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="2 malformed line\\(s\\) of 10") as error:
        read_ljspeech(ljspeech)
    assert "metadata.csv:3:" in str(error.value) and "metadata.csv:8:" in str(error.value)


ENCODINGS = {"LF": (b"", b"\n"), "CRLF": (b"", b"\r\n"), "BOM": (codecs.BOM_UTF8, b"\n"),
             "BOM+CRLF": (codecs.BOM_UTF8, b"\r\n")}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_ljspeech_metadata_with_bom_and_crlf(encoding, ljspeech, tmp_path):
    bom, newline = ENCODINGS[encoding]
    metadata = ljspeech / "metadata.csv"
    lines = metadata.read_text().splitlines()
    metadata.write_bytes(bom + newline.join(line.encode() for line in lines) + newline)
    utterances = read_ljspeech(ljspeech)
    assert [u.audio_path.name for u in utterances] == [f"UT-{i:04d}.wav" for i in range(10)]
    assert [u.text for u in utterances] == TEXTS  # no "\r" left on the last column
    data = datamodule(tmp_path, path=ljspeech)
    data.setup("fit")  # every wav found: the first id carries no BOM
    assert len(data.train_set) + len(data.val_set) == 10


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_filelists_with_bom_and_crlf(encoding, ljspeech, tmp_path):
    bom, newline = ENCODINGS[encoding]
    for name, indices in (("train", range(8)), ("val", range(8, 10))):
        content = newline.join(f"wavs/UT-{i:04d}.wav|{TEXTS[i]}|speaker0".encode() for i in indices)
        (tmp_path / f"{name}.txt").write_bytes(bom + content + newline)
    utterances = read_filelist(tmp_path / "train.txt", audio_root=ljspeech)
    assert utterances[0].audio_path == ljspeech / "wavs" / "UT-0000.wav"
    assert [u.text for u in utterances] == TEXTS[:8]
    data = datamodule(tmp_path, train_filelist=tmp_path / "train.txt", val_filelist=tmp_path / "val.txt",
                      audio_root=ljspeech)
    data.setup("fit")
    assert len(data.train_set) == 8 and len(data.val_set) == 2


def test_a_bom_line_number_stays_the_editors_line_number(ljspeech):
    metadata = ljspeech / "metadata.csv"
    lines = metadata.read_text().splitlines()
    lines[1] = "UT-0001|a text with a\u2028line separator|a text with a\u2028line separator"
    lines[7] = "broken"
    metadata.write_bytes(codecs.BOM_UTF8 + "\r\n".join(lines).encode() + b"\r\n")
    with pytest.raises(DataError, match="metadata.csv:8: expected"):
        read_ljspeech(ljspeech)


def test_utf16_lists_are_named(tmp_path):
    (tmp_path / "list.txt").write_text("a.wav|text\n", encoding="utf-16")
    with pytest.raises(DataError, match="list.txt is UTF-16 text; save it as UTF-8"):
        read_filelist(tmp_path / "list.txt")
