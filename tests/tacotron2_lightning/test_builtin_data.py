"""The built-in eSpeak NG dataset: speech audio, LJSpeech layout, determinism, caching and errors."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tacotron2_lightning.data import builtin
from tacotron2_lightning.data.builtin import BuiltinDatasetConfig, default_cache_root, ensure_builtin_dataset
from tacotron2_lightning.data.espeak import ESPEAK_SAMPLE_RATE, available_voices, synthesize
from tacotron2_lightning.data.sentences import generate_sentences
from tacotron2_lightning.text.numbers import normalize_numbers

SR = ESPEAK_SAMPLE_RATE
# Seed 38 gives "Break my but." (13 characters) and a 57-character normalized sentence with a full stop inside:
# lengths differ enough for duration checks, and two of the four sentences hold numbers, so normalization is
# exercised.
SMALL = BuiltinDatasetConfig(size=4, seed=38)
SIX_WORDS = "Quiet rivers carry heavy stones onward."


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return ensure_builtin_dataset(tmp_path_factory.mktemp("cache"), SMALL, progress=False)


def _metadata(folder: Path) -> list[list[str]]:
    return [line.split("|") for line in (folder / "metadata.csv").read_text(encoding="utf-8").splitlines()]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ---------------------------------------------------------------------------------------------------------------
# synthesize
# ---------------------------------------------------------------------------------------------------------------


def test_synthesize_gives_plausible_speech_that_grows_with_text():
    one = synthesize("Hello.")
    six = synthesize(SIX_WORDS)
    for audio in (one, six):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert 0.2 < len(audio) / SR < 5.0
        assert 0.1 < np.abs(audio).max() <= 1.0
    assert len(six) > 2 * len(one)


def test_synthesize_output_does_not_depend_on_history_or_threads():
    # eSpeak keeps pitch state in C globals; without a fresh library per call the second result would differ.
    reference = synthesize(SIX_WORDS)
    results: list[np.ndarray] = []

    def work():
        synthesize("Something else first, with other words.")
        results.append(synthesize(SIX_WORDS))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for audio in results:
        np.testing.assert_array_equal(audio, reference)


def test_rate_changes_duration():
    assert len(synthesize(SIX_WORDS, rate=350)) < 0.7 * len(synthesize(SIX_WORDS, rate=175))


def test_another_english_voice_sounds_different():
    voices = available_voices()
    assert "en-us" in voices and "en-gb" in voices
    american, british = synthesize(SIX_WORDS, voice="en-us"), synthesize(SIX_WORDS, voice="en-gb")
    assert len(american) != len(british) or not np.array_equal(american, british)
    np.testing.assert_array_equal(synthesize(SIX_WORDS, voice="EN-GB"), british)  # names are case-insensitive


def test_unknown_voice_is_named(tmp_path):
    with pytest.raises(ValueError, match="xx-nope.*en-us"):
        synthesize("Hello.", voice="xx-nope")
    with pytest.raises(ValueError, match="xx-nope"):
        ensure_builtin_dataset(tmp_path / "cache", BuiltinDatasetConfig(size=1, voice="xx-nope"), progress=False)
    assert not (tmp_path / "cache").exists()  # nothing is created for a dataset that cannot be made


def test_empty_text_and_bad_rate_are_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        synthesize("   ")
    with pytest.raises(ValueError, match="1000"):
        synthesize("Hello.", rate=1000)


def test_word_times_mark_where_each_word_starts():
    audio, starts = synthesize(SIX_WORDS, return_word_times=True)
    words = SIX_WORDS.split()
    assert starts.dtype == np.int64 and len(starts) == len(words)
    assert starts[0] < 0.1 * SR
    assert np.all(np.diff(starts) > 0) and starts[-1] < len(audio)
    for count in range(1, len(words)):
        # The first `count` words alone end a little after the next word starts in the full sentence (eSpeak
        # lengthens a phrase-final word); a start off by a word or in the wrong unit lands far outside.
        prefix = synthesize(" ".join(words[:count]))
        assert 0 < len(prefix) - starts[count] < 0.25 * SR, (count, len(prefix), starts[count])


def test_word_times_cover_spelled_out_numbers():
    _, starts = synthesize("Nineteen ninety-nine, forty-two apples.", return_word_times=True)
    assert len(starts) == 4 and np.all(starts >= 0) and np.all(np.diff(starts) > 0)


# ---------------------------------------------------------------------------------------------------------------
# Sentences and configuration
# ---------------------------------------------------------------------------------------------------------------


def test_generate_sentences_is_seeded_and_well_formed():
    sentences = generate_sentences(size=60, seed=7, min_words=2, max_words=5)
    assert sentences == generate_sentences(size=60, seed=7, min_words=2, max_words=5)
    assert generate_sentences(size=10, seed=7, min_words=2, max_words=5) == sentences[:10]
    assert generate_sentences(size=60, seed=8, min_words=2, max_words=5) != sentences
    assert any(any(c.isdigit() for c in s) for s in sentences)
    # Pauses and changes of pace, so that the true alignment is not a straight line: commas, full stops and
    # questions inside sentences, questions at the end, short function words and long words.
    for mark in (",", ".", "?"):
        assert any(mark in s[:-1] for s in sentences), mark
    assert any(s.endswith("?") for s in sentences)
    words = [w for s in sentences for w in re.sub(r"[,.?!]", "", s).lower().split()]
    assert any(w in ("the", "of", "a", "and", "to", "in", "is", "it") for w in words)
    assert any(len(w) >= 10 for w in words)
    for sentence in sentences:
        assert sentence[-1] in ".?!" and "|" not in sentence
        assert sentence[0].isupper() or sentence[0].isdigit(), sentence
        for stop in re.finditer(r"[.?] (\S)", sentence):  # a sentence inside starts with a capital
            assert stop.group(1).isupper() or stop.group(1).isdigit(), sentence
        tokens = re.sub(r"[,.?!]", "", sentence).split()
        assert 2 <= len(tokens) <= 5, sentence
        assert all(token.isalpha() or token[:1].isdigit() for token in tokens), sentence
        assert not any(c.isdigit() for c in normalize_numbers(sentence))


@pytest.mark.parametrize(("min_words", "max_words"), [(0, 3), (4, 3)])
def test_generate_sentences_names_a_bad_word_range(min_words, max_words):
    with pytest.raises(ValueError, match=f"min_words={min_words}, max_words={max_words}"):
        generate_sentences(size=1, seed=0, min_words=min_words, max_words=max_words)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 0),
        ("size", True),
        ("seed", "1234"),
        ("voice", ""),
        ("voice", "../en-us"),
        ("min_words", 0),
        ("max_words", 1),
        ("rate", 50),
        ("rate", 451),
        ("sampling_rate", 16000),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"BuiltinDatasetConfig\.{field} .*{value!r}"):
        BuiltinDatasetConfig(**{field: value})


def test_default_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SMART_TUNER_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("SMART_TUNER_CACHE")
    assert default_cache_root() == tmp_path / "xdg" / "smart-tuner"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "smart-tuner"


# ---------------------------------------------------------------------------------------------------------------
# ensure_builtin_dataset
# ---------------------------------------------------------------------------------------------------------------


def test_dataset_has_ljspeech_layout(dataset):
    assert dataset.name == "espeak-v2-en-us-n4-s38-w2-6-r175"
    rows = _metadata(dataset)
    assert len(rows) == 4 and all(len(row) == 3 for row in rows)
    ids = [row[0] for row in rows]
    assert ids == ["ESPK-0001", "ESPK-0002", "ESPK-0003", "ESPK-0004"]
    assert sorted(path.stem for path in (dataset / "wavs").iterdir()) == ids
    assert [row[1] for row in rows] == generate_sentences(
        size=SMALL.size, seed=SMALL.seed, min_words=SMALL.min_words, max_words=SMALL.max_words
    )
    assert [row[2] for row in rows] == [normalize_numbers(row[1]) for row in rows]
    assert sum(row[1] != row[2] for row in rows) >= 2  # numbers were spelled out
    for utterance_id in ids:
        info = soundfile.info(str(dataset / "wavs" / f"{utterance_id}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
        assert 0.2 < info.duration < 6.0


def test_wavs_pair_with_their_text(dataset):
    rows = _metadata(dataset)
    durations = {row[0]: soundfile.info(str(dataset / "wavs" / f"{row[0]}.wav")).frames for row in rows}
    shortest = min(rows, key=lambda row: len(row[2]))
    longest = max(rows, key=lambda row: len(row[2]))
    assert len(longest[2]) >= 3 * len(shortest[2])  # the seed makes this comparison meaningful
    assert durations[longest[0]] > 2 * durations[shortest[0]]
    # The audio says the normalized text: re-synthesising it reproduces the stored wav sample for sample.
    stored, rate = soundfile.read(str(dataset / "wavs" / "ESPK-0002.wav"), dtype="int16")
    assert rate == SR
    again = synthesize(rows[1][2], voice=SMALL.voice, rate=SMALL.rate)
    np.testing.assert_array_equal(stored, np.round(again * 32768).astype(np.int16))


def test_timings_give_each_word_its_offset_and_first_frame(dataset):
    rows = _metadata(dataset)
    document = json.loads((dataset / "timings.json").read_text(encoding="utf-8"))
    assert (document["sampling_rate"], document["hop_length"]) == (SR, 256)
    assert list(document["utterances"]) == [row[0] for row in rows]
    for utterance_id, _, normalized in rows:
        entry = document["utterances"][utterance_id]
        assert entry["text"] == normalized  # offsets into the text eSpeak read and the datamodule reads
        tokens = list(re.finditer(r"\S+", normalized))
        assert [(w["word"], w["char"]) for w in entry["words"]] == [(t.group(), t.start()) for t in tokens]
        samples = [w["sample"] for w in entry["words"]]
        wav, _ = soundfile.read(str(dataset / "wavs" / f"{utterance_id}.wav"), dtype="int16")
        assert samples == sorted(set(samples)) and samples[-1] < len(wav)
        assert [w["frame"] for w in entry["words"]] == [(sample + 128) // 256 for sample in samples]
        for sample in samples[1:]:  # each onset is in the trimmed wav as stored: speech follows at once
            assert np.abs(wav[sample: sample + 2205].astype(np.int32)).max() > 1000, (utterance_id, sample)
    # At the full stop inside "... eighty-four. Snicker." eSpeak pauses: the onset of "Snicker." follows silence.
    words = document["utterances"]["ESPK-0002"]["words"]
    assert words[-1]["word"] == "Snicker."
    wav, _ = soundfile.read(str(dataset / "wavs" / "ESPK-0002.wav"), dtype="int16")
    onset = words[-1]["sample"]
    assert np.abs(wav[onset - 2205: onset].astype(np.int32)).max() < 300


def test_generation_is_deterministic(dataset, tmp_path):
    other = ensure_builtin_dataset(tmp_path, SMALL, progress=False)
    assert other != dataset
    assert _files(other) == _files(dataset)  # metadata, every wav and the COMPLETE marker, byte for byte


def test_second_call_reuses_the_dataset(dataset, monkeypatch):
    mtimes = {path: path.stat().st_mtime_ns for path in dataset.rglob("*")}

    def fail(*args, **kwargs):
        raise AssertionError("a complete dataset was synthesised again")

    monkeypatch.setattr(builtin, "synthesize_int16", fail)
    started = time.perf_counter()
    assert ensure_builtin_dataset(dataset.parent, SMALL, progress=True) == dataset
    assert time.perf_counter() - started < 0.5
    assert {path: path.stat().st_mtime_ns for path in dataset.rglob("*")} == mtimes


def test_incomplete_folder_is_regenerated(dataset, tmp_path):
    expected = _files(dataset)
    leftover = tmp_path / dataset.name
    (leftover / "wavs").mkdir(parents=True)
    (leftover / "metadata.csv").write_text("ESPK-0001|half|written\n", encoding="utf-8")  # no COMPLETE marker
    assert ensure_builtin_dataset(tmp_path, SMALL, progress=False) == leftover
    assert _files(leftover) == expected
    assert os.listdir(tmp_path) == [dataset.name]  # no temporary or stale folders left behind


def test_marker_for_another_config_is_not_trusted(dataset, tmp_path):
    folder = ensure_builtin_dataset(tmp_path, SMALL, progress=False)
    (folder / "metadata.csv").write_text("garbage\n", encoding="utf-8")
    (folder / "COMPLETE").write_text('{"size": 5}\n', encoding="utf-8")
    ensure_builtin_dataset(tmp_path, SMALL, progress=False)
    assert _files(folder) == _files(dataset)


def test_concurrent_generation_publishes_one_complete_dataset(dataset, tmp_path):
    results: list[Path] = []
    errors: list[BaseException] = []

    def work():
        try:
            results.append(ensure_builtin_dataset(tmp_path, SMALL, progress=False))
        except BaseException as error:  # surfaced by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [tmp_path / dataset.name] * 3
    assert _files(tmp_path / dataset.name) == _files(dataset)
    assert os.listdir(tmp_path) == [dataset.name]


def test_without_espeakng_loader_the_error_names_the_extra_and_the_alternatives():
    """eSpeak NG (GPL-3.0) is an optional extra: without it, making the built-in data says what to install."""
    import subprocess
    import sys

    blocked = ("import sys; sys.modules['espeakng_loader'] = None\n"
               "from tacotron2_lightning.data.espeak import synthesize\nsynthesize('hello')")
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert 'pip install "smart-tuner[builtin-data]"' in result.stderr and "data=ljspeech" in result.stderr
