"""Word timings: where each word of an utterance starts, in its text and in its audio (``timings.json``).

An LJSpeech-style folder may hold ``timings.json`` beside ``metadata.csv``; the built-in eSpeak dataset writes one
from the word events eSpeak NG reports while it speaks. With it, validation measures how well the attention finds
the words (``val/alignment_error``, see :func:`tacotron2_lightning.health.word_position_errors`). The file::

    {"format": 1,
     "sampling_rate": 22050,          # of every "sample" below
     "hop_length": 256,               # of every "frame" below
     "utterances": {
       "ESPK-0001": {"text": "Rivers run, the sea is calm.",       # metadata.csv's normalized text
                     "words": [{"word": "Rivers", "char": 0, "sample": 1102, "frame": 4},
                               {"word": "run,", "char": 7, "sample": 9350, "frame": 37}, ...]}}}

``char`` is the offset of the word's first character in ``text``; ``sample`` the first sample eSpeak spoke it at,
in the wav as stored (after the dataset's trimming); ``frame`` the mel frame centred nearest to that sample at
``hop_length`` (frame ``t`` is centred on sample ``t * hop_length``). Words eSpeak reported no event for (a lone
punctuation mark) are left out.

The model reads neither characters nor that hop: it reads the symbols of the cleaned text, at the datamodule's own
audio settings. :func:`attach_word_timings` maps each word onto both: its symbol index is the number of symbols
the text before it cleans to (so a cleaner that expands "dr." or spells a number moves the words after it), and
its frame is its sample at the configured sampling rate and hop.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tacotron2_lightning.audio import AudioConfig
from tacotron2_lightning.data.dataset import CheckedUtterance, TextMelDataset
from tacotron2_lightning.data.sources import DataError
from tacotron2_lightning.text import text_to_sequence

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"
_FORMAT = 1


@dataclass(frozen=True)
class WordTiming:
    """One word: its text, the offset of its first character and the first sample it is spoken at."""

    word: str
    char: int
    sample: int


@dataclass(frozen=True)
class UtteranceTimings:
    """The text the timings refer to and its words in order."""

    text: str
    words: tuple[WordTiming, ...]


def frame_of(sample: int, hop_length: int) -> int:
    """The mel frame centred nearest to ``sample`` (frame ``t`` is centred on sample ``t * hop_length``)."""
    return (sample + hop_length // 2) // hop_length


def write_timings(path: str | Path, utterances: Mapping[str, UtteranceTimings], sampling_rate: int,
                  hop_length: int) -> None:
    """Writes ``utterances`` (utterance id -> timings, in the order given) as a ``timings.json`` file."""
    document = {
        "format": _FORMAT, "sampling_rate": sampling_rate, "hop_length": hop_length,
        "utterances": {
            utterance_id: {"text": timings.text,
                           "words": [{"word": w.word, "char": w.char, "sample": w.sample,
                                      "frame": frame_of(w.sample, hop_length)} for w in timings.words]}
            for utterance_id, timings in utterances.items()
        },
    }
    with open(path, "w", encoding="utf-8", newline="\n") as file:
        json.dump(document, file, ensure_ascii=False, separators=(",", ":"))
        file.write("\n")


def read_timings(path: str | Path) -> tuple[int, dict[str, UtteranceTimings]]:
    """Reads a ``timings.json`` file: (the sampling rate of its samples, utterance id -> timings).

    Raises:
        DataError: If the file is not valid JSON of this format; the message names the file and the problem.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _FORMAT:
            raise ValueError(f"format must be {_FORMAT}, got {document.get('format')!r}")
        sampling_rate = int(document["sampling_rate"])
        utterances = {
            str(utterance_id): UtteranceTimings(
                str(entry["text"]),
                tuple(WordTiming(str(w["word"]), int(w["char"]), int(w["sample"])) for w in entry["words"]))
            for utterance_id, entry in document["utterances"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: not a readable word-timings file ({type(error).__name__}: {error})") from error
    if sampling_rate <= 0:
        raise DataError(f"{path}: sampling_rate must be positive, got {sampling_rate}")
    for utterance_id, timings in utterances.items():
        for word in timings.words:
            if not (0 <= word.char < len(timings.text) and word.sample >= 0):
                raise DataError(f"{path}: utterance {utterance_id}: word {word.word!r} has char {word.char} (text of "
                                f"{len(timings.text)} characters) and sample {word.sample}; both must be inside")
    return sampling_rate, utterances


def symbol_offsets(text: str, chars: Sequence[int], cleaners: Sequence[str]) -> list[int]:
    """The index, in ``text``'s symbol sequence, of the symbol each character offset starts, or -1.

    A word's symbol index is the length of the sequence the text before it cleans to. It is trusted only where
    that sequence is a prefix of the whole text's and shorter than it, i.e. where cleaning is local there (it is
    for every cleaner of this project outside ``{ARPAbet}`` groups); -1 elsewhere.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped characters were reported when the whole text was checked
        whole = text_to_sequence(text, list(cleaners))
        offsets = []
        for char in chars:
            try:
                before = text_to_sequence(text[:char], list(cleaners))
            except ValueError:  # a cleaner that cannot clean the cut text
                offsets.append(-1)
                continue
            prefix = len(before) < len(whole) and whole[: len(before)] == before
            offsets.append(len(before) if prefix else -1)
    return offsets


def word_timing_tensor(item: CheckedUtterance, timings: UtteranceTimings, sampling_rate: int,
                       cleaners: Sequence[str], audio: AudioConfig) -> torch.Tensor:
    """(W, 2) long: for each word that maps onto the model's input, its symbol index and its first mel frame at
    ``audio``'s rate and hop (``sampling_rate`` is that of the timings' samples)."""
    offsets = symbol_offsets(timings.text, [w.char for w in timings.words], cleaners)
    denominator = 2 * sampling_rate * audio.hop_length  # frame = sample * rate / sampling_rate / hop, rounded
    rows = []
    for word, symbol in zip(timings.words, offsets, strict=True):
        if symbol >= 0:
            frame = (2 * word.sample * audio.sampling_rate + sampling_rate * audio.hop_length) // denominator
            rows.append((symbol, min(frame, item.n_frames - 1)))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 2)


class TimedTextMelDataset(TextMelDataset):
    """A :class:`TextMelDataset` whose items carry their word timings: (text ids (N,), mel (C, T), timings (W, 2)).

    Each timings row is (symbol index of the word's first symbol, the word's first mel frame); an utterance
    without timings has W = 0. :class:`~tacotron2_lightning.data.collate.TextMelCollate` pads them into a sixth
    batch element.
    """

    def __init__(self, items, mel_of, word_timings: Sequence[torch.Tensor]):
        super().__init__(items, mel_of)
        if len(word_timings) != len(self.items):
            raise ValueError(f"{len(word_timings)} word timings for {len(self.items)} utterances")
        self.word_timings = list(word_timings)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        text, mel = super().__getitem__(index)
        return text, mel, self.word_timings[index]


def attach_word_timings(dataset: TextMelDataset, folder: Path | None, cleaners: Sequence[str],
                        audio: AudioConfig) -> TextMelDataset:
    """``dataset`` with the word timings of ``folder/timings.json`` (a :class:`TimedTextMelDataset`), or as it is
    when there is no such file or it times none of the dataset's utterances.

    Utterances are matched by id (the wav's name without ``.wav``) and text; one whose text differs from the
    timed text gets no timings (counted in the log), so a stale file cannot mislead the metric.
    """
    path = folder / TIMINGS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return dataset
    sampling_rate, utterances = read_timings(path)
    tensors, timed, stale = [], 0, 0
    for item in dataset.items:
        timings = utterances.get(item.utterance.audio_path.stem)
        if timings is not None and timings.text != item.utterance.text:
            timings, stale = None, stale + 1
        tensor = (word_timing_tensor(item, timings, sampling_rate, cleaners, audio) if timings is not None
                  else torch.zeros(0, 2, dtype=torch.long))
        timed += tensor.size(0) > 0
        tensors.append(tensor)
    if stale:
        log.warning("%s: %d utterance(s) have another text than the timings'; they get no word timings", path, stale)
    if not timed:
        return dataset
    log.info("Word timings for %d of %d utterances (%s)", timed, len(dataset), path)
    return TimedTextMelDataset(dataset.items, dataset.mel_of, tensors)
