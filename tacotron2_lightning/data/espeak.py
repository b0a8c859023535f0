"""eSpeak NG, in-process through its C API with :mod:`ctypes`: offline English (and other) speech.

The library comes from the ``espeakng-loader`` wheel. eSpeak NG keeps synthesis state in C globals that no
API call resets (the pitch "flutter" phase, the glottal cycle counter, the gain control): the same text
spoken twice in one library instance sounds slightly different, and ``espeak_Terminate`` +
``espeak_Initialize`` do not help. Every synthesis therefore loads a private copy of the library,
initialises it, speaks, and unloads it again (about 8 ms), under one process-wide lock because the library
is not re-entrant. The result depends only on the arguments.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Literal, overload

import numpy as np

logger = logging.getLogger(__name__)

ESPEAK_SAMPLE_RATE = 22050
"""The only rate eSpeak NG synthesises at."""

RATE_RANGE = (80, 450)
"""Speaking rates eSpeak NG accepts, in words per minute (``espeakRATE_MINIMUM``, ``espeakRATE_MAXIMUM``)."""

# Trimming keeps this much audio before the first and after the last sample louder than the threshold.
_TRIM_MARGIN_S = 0.05
_TRIM_THRESHOLD = 164  # int16 units, about -46 dBFS: well below speech, above eSpeak's near-silent tails

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_EVENT_LIST_TERMINATED = 0
_ESPEAK_EVENT_WORD = 1
_EE_INTERNAL_ERROR = -1

_LOCK = threading.Lock()  # eSpeak NG is process-global, non-re-entrant state


def _reset_lock_in_child() -> None:
    # A fork taken while another thread synthesises copies the lock held, and nobody would release it.
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


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
    try:
        import espeakng_loader  # deferred: only needed when audio is actually made
    except ImportError as error:  # an optional extra: eSpeak NG is GPL-3.0
        raise ImportError("The built-in dataset is synthesised with eSpeak NG, and espeakng-loader is not installed: "
                          'pip install "smart-tuner[builtin-data]" (it bundles GPL-3.0 eSpeak NG), or train on '
                          "your own recordings (data=ljspeech data.path=... or data=filelist)") from error

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
                    f"eSpeak NG reports a sample rate of {rate} Hz; this binding expects {ESPEAK_SAMPLE_RATE}"
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


def voice_identifier(voice: str) -> str:
    """The eSpeak NG voice file that speaks ``voice``, a language code from :func:`available_voices`.

    Raises:
        ValueError: If the voice is unknown; the message lists the English voices.
    """
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
    if isinstance(rate, bool) or not isinstance(rate, int) or not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise ValueError(
            f"rate must be an integer from {RATE_RANGE[0]} to {RATE_RANGE[1]} words per minute, got {rate!r}"
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


def synthesize_int16(text: str, voice: str, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`synthesize`'s int16 samples, as eSpeak NG made them, and where each word starts.

    Datasets store these samples as they are; :func:`synthesize` scales them to float.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text to synthesise must be a non-empty string, got {text!r}")
    _check_rate(rate)
    samples, events = _speak(text, voice_identifier(voice), rate)
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
    samples, starts = synthesize_int16(text, voice, rate)
    audio = samples.astype(np.float32) / 32768.0
    return (audio, starts) if return_word_times else audio
