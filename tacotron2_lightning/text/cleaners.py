"""Text cleaners, selected by name as in NVIDIA's ``hparams.text_cleaners``.

A cleaner maps raw transcript text to text written only with characters the model knows. Which
cleaner a checkpoint was trained with is part of its contract: NVIDIA's LJSpeech model expects
``english_cleaners``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from unidecode import unidecode

from .numbers import normalize_numbers


class TextCleaningError(ValueError):
    """Raised when a cleaner cannot clean a piece of text (e.g. a number too large to spell)."""


_WHITESPACE_RE = re.compile(r"\s+")

# Order matters: "mrs" must be tried before "mr". The pattern requires the period, so "st" in "first"
# or a bare "co" is left alone.
_ABBREVIATIONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"\b{abbreviation}\.", re.IGNORECASE), expansion)
    for abbreviation, expansion in [
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
    ]
]


def expand_abbreviations(text: str) -> str:
    """Expands the abbreviations NVIDIA's cleaner knows ("dr." -> "doctor"), in lower case."""
    for pattern, expansion in _ABBREVIATIONS:
        text = pattern.sub(expansion, text)
    return text


def collapse_whitespace(text: str) -> str:
    """Replaces each whitespace run with one space; leading/trailing space is kept, as NVIDIA does."""
    return _WHITESPACE_RE.sub(" ", text)


def expand_numbers(text: str) -> str:
    """Spells out numbers (see :func:`~tacotron2_lightning.text.numbers.normalize_numbers`).

    Raises:
        TextCleaningError: If a number in ``text`` cannot be spelled out.
    """
    try:
        return normalize_numbers(text)
    except ValueError as error:
        raise TextCleaningError(f"cannot expand numbers in {text!r}: {error}") from error


def convert_to_ascii(text: str) -> str:
    """Transliterates to ASCII ("café" -> "cafe", "—" -> "--", "£" -> "PS")."""
    return unidecode(text)


def basic_cleaners(text: str) -> str:
    """Lowercases and collapses whitespace; for languages that need no transliteration."""
    return collapse_whitespace(text.lower())


def transliteration_cleaners(text: str) -> str:
    """Transliterates to ASCII, lowercases and collapses whitespace; for non-English text."""
    return collapse_whitespace(convert_to_ascii(text).lower())


def english_cleaners(text: str) -> str:
    """NVIDIA's English pipeline: transliterate, lowercase, spell numbers, expand abbreviations.

    Transliteration runs first, so "£5" has become "ps5" before the pounds rule could see it and
    is read "ps five"; this is NVIDIA's behaviour and is kept.

    Raises:
        TextCleaningError: If a number in ``text`` cannot be spelled out.
    """
    text = convert_to_ascii(text)
    text = text.lower()
    text = expand_numbers(text)
    text = expand_abbreviations(text)
    return collapse_whitespace(text)


CLEANERS: dict[str, Callable[[str], str]] = {
    "basic_cleaners": basic_cleaners,
    "transliteration_cleaners": transliteration_cleaners,
    "english_cleaners": english_cleaners,
}
"""Cleaners by the names configs use."""


def get_cleaner(name: str) -> Callable[[str], str]:
    """Returns the cleaner registered as ``name``.

    Raises:
        ValueError: If no cleaner has that name; the message lists the valid names.
    """
    try:
        return CLEANERS[name]
    except KeyError:
        raise ValueError(f"unknown text cleaner {name!r}; valid cleaners are {sorted(CLEANERS)}") from None


def clean_text(text: str, cleaner_names: str | Iterable[str]) -> str:
    """Runs ``text`` through the named cleaners, in order.

    Args:
        text: Raw text.
        cleaner_names: Cleaner names, applied left to right; a single name may be given as a string.

    Raises:
        ValueError: If a name is not a known cleaner.
        TextCleaningError: If a cleaner cannot clean ``text``.
    """
    if isinstance(cleaner_names, str):
        # A bare string would otherwise be iterated character by character ("e", "n", ...).
        cleaner_names = [cleaner_names]
    # Resolve every name before cleaning so a typo is reported even for empty text.
    cleaners = [get_cleaner(name) for name in cleaner_names]
    for cleaner in cleaners:
        text = cleaner(text)
    return text
