"""LJSpeech and filelist readers, and the pre-training check that names every bad utterance."""

from __future__ import annotations

import logging

import pytest

from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.data.dataset import inspect_utterances
from tacotron2_lightning.data.sources import DataError, read_filelist, read_ljspeech
from tests.helpers.data_factory import write_ljspeech, write_tone

CLEANERS = ["english_cleaners"]


def test_ljspeech_reads_normalized_text_and_pairs_wavs(tmp_path):
    write_ljspeech(tmp_path, ["one", "two"])
    (tmp_path / "metadata.csv").write_text("UT-0000|Dr. Who 3|Doctor Who three\nUT-0001|plain|\n")
    utterances = read_ljspeech(tmp_path)
    assert [u.text for u in utterances] == ["Doctor Who three", "plain"]
    assert utterances[0].audio_path == tmp_path / "wavs" / "UT-0000.wav"
    assert utterances[1].origin == f"{tmp_path / 'metadata.csv'}:2"


def test_malformed_metadata_line_is_named(tmp_path):
    write_ljspeech(tmp_path, ["one"])
    (tmp_path / "metadata.csv").write_text("UT-0000|one|one\nno separator here\n")
    with pytest.raises(DataError, match="metadata.csv:2: expected 'id\\|text\\|normalized_text'"):
        read_ljspeech(tmp_path)


def test_missing_ljspeech_folder_and_metadata_are_named(tmp_path):
    with pytest.raises(DataError, match="LJSpeech folder not found: .*nowhere"):
        read_ljspeech(tmp_path / "nowhere")
    with pytest.raises(DataError, match="File not found: .*metadata.csv"):
        read_ljspeech(tmp_path)


def test_filelist_resolves_relative_paths_against_audio_root(tmp_path):
    write_tone(tmp_path / "audio" / "a.wav", 0.3)
    filelist = tmp_path / "lists" / "train.txt"
    filelist.parent.mkdir()
    filelist.write_text("a.wav|Hello there.|speaker0\n/abs/b.wav|Second.\n")
    utterances = read_filelist(filelist, audio_root=tmp_path / "audio")
    assert utterances[0].audio_path == tmp_path / "audio" / "a.wav"
    assert utterances[0].text == "Hello there."
    assert str(utterances[1].audio_path) == "/abs/b.wav"
    with pytest.raises(DataError, match="train.txt:1: expected 'path/to/audio.wav\\|text'"):
        filelist.write_text("just-a-path.wav\n")
        read_filelist(filelist)


@pytest.fixture
def mixed_dataset(tmp_path):
    """Line 1 good, 2 missing wav, 3 at 16 kHz, 4 stereo, 5 empty text, 6 text that cleans to nothing."""
    root = write_ljspeech(tmp_path / "lj", ["good one"])
    write_tone(root / "wavs" / "UT-0002.wav", 0.4, sampling_rate=16000)
    write_tone(root / "wavs" / "UT-0003.wav", 0.4, channels=2)
    write_tone(root / "wavs" / "UT-0004.wav", 0.4)
    write_tone(root / "wavs" / "UT-0005.wav", 0.4)
    (root / "metadata.csv").write_text(
        "UT-0000|good one|good one\nUT-0001|missing|missing\nUT-0002|low rate|low rate\n"
        "UT-0003|stereo|stereo\nUT-0004| |\nUT-0005|~~~|~~~\n"
    )
    return read_ljspeech(root)


def test_every_bad_utterance_is_named_with_file_and_line(mixed_dataset):
    with pytest.raises(DataError) as error:
        inspect_utterances(mixed_dataset, CLEANERS, AudioConfig())
    message = str(error.value)
    assert "5 bad utterance(s) of 6" in message
    assert "metadata.csv:2 " in message and "is missing" in message
    assert "metadata.csv:3 " in message and "16000 Hz, expected 22050 Hz" in message
    assert "metadata.csv:4 " in message and "2 channels" in message
    assert "metadata.csv:5 " in message and "text is empty" in message
    assert "metadata.csv:6 " in message and "cleans to nothing" in message
    assert "metadata.csv:1 " not in message


def test_skip_bad_keeps_the_good_ones_and_logs_the_rest(mixed_dataset, caplog):
    with caplog.at_level(logging.WARNING):
        kept = inspect_utterances(mixed_dataset, CLEANERS, AudioConfig(), skip_bad=True)
    assert [item.utterance.text for item in kept] == ["good one"]
    assert "Skipping 5 bad utterance(s) of 6" in caplog.text
    assert "metadata.csv:3" in caplog.text


def test_resample_accepts_other_rates_with_the_right_frame_count(mixed_dataset):
    kept = inspect_utterances(mixed_dataset, CLEANERS, AudioConfig(), resample=True, skip_bad=True)
    low_rate = next(item for item in kept if item.utterance.text == "low rate")
    assert low_rate.sampling_rate == 16000
    assert low_rate.n_frames == 1 + round(0.4 * 22050) // 256
    assert low_rate.seconds == pytest.approx(0.4, abs=1e-3)


def test_length_filters_count_what_they_remove(tmp_path, caplog):
    root = write_ljspeech(tmp_path, ["a", "a much longer text here", "medium text"], seconds=[0.3, 0.5, 2.0])
    with caplog.at_level(logging.INFO):
        kept = inspect_utterances(read_ljspeech(root), CLEANERS, AudioConfig(), min_text_length=2,
                                  max_seconds=1.0)
    assert [item.utterance.text for item in kept] == ["a much longer text here"]
    assert "removed 2 of 3" in caplog.text and "1 text too short" in caplog.text and "1 audio too long" in caplog.text


def test_nothing_left_after_filters_is_an_error(tmp_path):
    root = write_ljspeech(tmp_path, ["a"])
    with pytest.raises(DataError, match="No utterance is left"):
        inspect_utterances(read_ljspeech(root), CLEANERS, AudioConfig(), min_text_length=5)
