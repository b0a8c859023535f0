"""Word timings: the timings.json format, the map onto symbols and frames, and the timed validation set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.data.collate import TextMelCollate
from tacotron2_lightning.data.dataset import TextMelDataset, inspect_utterances
from tacotron2_lightning.data.sources import DataError, read_ljspeech
from tacotron2_lightning.data.timings import (
    TIMINGS_FILE,
    TimedTextMelDataset,
    UtteranceTimings,
    WordTiming,
    attach_word_timings,
    frame_of,
    read_timings,
    symbol_offsets,
    write_timings,
)
from tacotron2_lightning.text import text_to_sequence
from tacotron2_lightning.text.cleaners import english_cleaners
from tests.helpers.data_factory import write_ljspeech

CLEANERS = ["english_cleaners"]
TEXTS = ["Rivers run, the sea is calm.", "Dr. Brown came. Why?"]


def timings_for(text: str, samples: list[int]) -> UtteranceTimings:
    words = [WordTiming(word, text.index(word), sample) for word, sample in zip(text.split(), samples, strict=False)]
    return UtteranceTimings(text, tuple(words))


@pytest.fixture
def timed_folder(tmp_path) -> Path:
    folder = write_ljspeech(tmp_path / "lj", TEXTS, seconds=[1.0, 0.8])
    write_timings(folder / TIMINGS_FILE, {"UT-0000": timings_for(TEXTS[0], [0, 5000, 9000, 11000, 14000, 16000]),
                                          "UT-0001": timings_for(TEXTS[1], [300, 4000, 8000, 15000])},
                  sampling_rate=22050, hop_length=256)
    return folder


def checked(folder: Path):
    return inspect_utterances(read_ljspeech(folder), CLEANERS, AudioConfig())


def test_frame_of_is_the_nearest_frame_centre():
    assert [frame_of(s, 256) for s in (0, 127, 128, 255, 256, 383, 384)] == [0, 0, 1, 1, 1, 1, 2]


def test_write_then_read_round_trips(tmp_path):
    utterances = {"A": timings_for(TEXTS[0], [0, 5000]), "B": UtteranceTimings("Hm.", ())}
    write_timings(tmp_path / TIMINGS_FILE, utterances, sampling_rate=16000, hop_length=200)
    document = json.loads((tmp_path / TIMINGS_FILE).read_text(encoding="utf-8"))
    assert document["hop_length"] == 200
    assert document["utterances"]["A"]["words"][1] == {"word": "run,", "char": 7, "sample": 5000, "frame": 25}
    assert read_timings(tmp_path / TIMINGS_FILE) == (16000, utterances)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not a readable word-timings file"),
    ('{"format": 9, "sampling_rate": 1, "utterances": {}}', "format must be 1"),
    ('{"format": 1, "sampling_rate": 22050, "utterances": {"A": {"text": "Hi.", "words": [{"word": "Hi.", '
     '"char": 5, "sample": 0}]}}}', "utterance A: word 'Hi.' has char 5"),
])
def test_a_bad_file_is_named(tmp_path, content, message):
    (tmp_path / TIMINGS_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_timings(tmp_path / TIMINGS_FILE)


def test_symbol_offsets_follow_the_cleaners():
    # english_cleaners expands "Dr." to "doctor": every word after it moves by four symbols.
    text = TEXTS[1]
    offsets = symbol_offsets(text, [0, 4, 10, 16], CLEANERS)
    cleaned = english_cleaners(text)
    assert offsets == [0, 7, 13, 19]
    assert [cleaned[i:].split()[0] for i in offsets] == ["doctor", "brown", "came.", "why?"]
    assert symbol_offsets("Rivers run.", [0, 7], ["basic_cleaners"]) == [0, 7]


def test_an_offset_inside_a_braced_group_is_not_trusted():
    # Cutting "{HH AH0} world" inside the braces cleans to something else: no symbol index is made up.
    assert symbol_offsets("{HH AH0} world", [3, 9], CLEANERS) == [-1, 3]


def test_attach_maps_words_onto_symbols_and_frames(timed_folder):
    items = checked(timed_folder)
    dataset = attach_word_timings(TextMelDataset(items, lambda item: torch.zeros(80, item.n_frames)),
                                  timed_folder, CLEANERS, AudioConfig())
    assert isinstance(dataset, TimedTextMelDataset) and dataset.items == items
    text, mel, timings = dataset[1]
    assert text.tolist() == text_to_sequence(TEXTS[1], CLEANERS)
    assert timings.tolist() == [[0, 1], [7, 16], [13, 31], [19, 59]]  # "Dr." -> "doctor"; frames at hop 256
    # At another hop and sampling rate the same samples land on other frames.
    audio = AudioConfig(sampling_rate=11025, hop_length=128, mel_fmax=5000.0)
    other = attach_word_timings(TextMelDataset(checked_at(timed_folder, audio), lambda item: torch.zeros(80, 1)),
                                timed_folder, CLEANERS, audio)
    assert other[1][2][:, 1].tolist() == [1, 16, 31, 59]


def checked_at(folder: Path, audio: AudioConfig):
    return inspect_utterances(read_ljspeech(folder), CLEANERS, audio, resample=True)


def test_frames_stay_inside_the_utterance(timed_folder):
    items = checked(timed_folder)
    dataset = attach_word_timings(TextMelDataset(items, lambda item: torch.zeros(80, 1)), timed_folder, CLEANERS,
                                  AudioConfig())
    for index, item in enumerate(items):
        assert int(dataset[index][2][:, 1].max()) < item.n_frames


def test_a_changed_text_gets_no_timings_and_no_file_changes_nothing(timed_folder, caplog):
    metadata = timed_folder / "metadata.csv"
    metadata.write_text(metadata.read_text(encoding="utf-8").replace("calm", "warm"), encoding="utf-8")
    base = TextMelDataset(checked(timed_folder), lambda item: torch.zeros(80, 1))
    dataset = attach_word_timings(base, timed_folder, CLEANERS, AudioConfig())
    assert dataset[0][2].shape == (0, 2) and dataset[1][2].size(0) == 4
    assert "1 utterance(s) have another text" in caplog.text
    (timed_folder / TIMINGS_FILE).unlink()
    assert attach_word_timings(base, timed_folder, CLEANERS, AudioConfig()) is base
    assert attach_word_timings(base, None, CLEANERS, AudioConfig()) is base


def test_collate_pads_the_timings_into_a_sixth_element_in_the_sorted_order():
    short = (torch.tensor([5, 6]), torch.ones(4, 3), torch.tensor([[0, 0]]))
    long = (torch.tensor([7, 8, 9]), torch.ones(4, 5), torch.tensor([[0, 0], [2, 3]]))
    batch = TextMelCollate()([short, long])
    assert len(batch) == 6
    text, lengths, _, _, _, timings = batch
    assert lengths.tolist() == [3, 2]  # longest text first, and its timings with it
    assert timings.tolist() == [[[0, 0], [2, 3]], [[0, 0], [-1, -1]]]
    assert len(TextMelCollate()([short[:2], long[:2]])) == 5  # NVIDIA's 5-tuple without timings


@pytest.mark.parametrize(("batch", "message"), [
    ([(torch.tensor([1]), torch.ones(4, 2), torch.zeros(1, 2)), (torch.tensor([1]), torch.ones(4, 2))],
     "batch item 1: expected a .* like item 0, got a tuple of 2"),
    ([(torch.tensor([1]), torch.ones(4, 2), torch.zeros(3))], "batch item 0: word_timings must be a"),
])
def test_collate_names_bad_timings(batch, message):
    with pytest.raises(ValueError, match=message):
        TextMelCollate()(batch)
