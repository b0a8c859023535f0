"""Spelling out numbers the way NVIDIA's Tacotron2 (after keithito/tacotron) does.

LJSpeech-trained checkpoints learned the readings produced by these exact rules (for instance
"1999" is read as a year, "nineteen ninety-nine", but "3000" as "three thousand"), so the rules and
their order are reproduced rather than improved.
"""

from __future__ import annotations

import functools
import re

_COMMA_NUMBER_RE = re.compile(r"([0-9][0-9,]+[0-9])")
_DECIMAL_NUMBER_RE = re.compile(r"([0-9]+\.[0-9]+)")
_POUNDS_RE = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_NUMBER_RE = re.compile(r"[0-9]+")


@functools.cache
def _engine():
    # inflect takes seconds to import; only text with digits pays for it.
    import inflect

    return inflect.engine()


def _number_to_words(number: int | str, **kwargs) -> str:
    """Calls inflect, turning its message-less range error into one that names the number."""
    import inflect

    try:
        return _engine().number_to_words(number, **kwargs)
    except inflect.NumOutOfRangeError as error:
        raise ValueError(f"number {str(number)!r} is too large to spell out") from error


def _remove_commas(match: re.Match[str]) -> str:
    return match.group(1).replace(",", "")


def _expand_decimal_point(match: re.Match[str]) -> str:
    # Only the point is spelled here; both halves are read as plain numbers by the last rule.
    return match.group(1).replace(".", " point ")


def _unit(count: int, singular: str) -> str:
    return singular if count == 1 else singular + "s"


def _expand_dollars(match: re.Match[str]) -> str:
    amount = match.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        # Not a price (e.g. "$1.2.3"); NVIDIA keeps the digits and just says "dollars".
        return amount + " dollars"
    dollars = int(parts[0]) if parts[0] else 0
    cents = int(parts[1]) if len(parts) > 1 and parts[1] else 0
    # The amounts stay digits; the plain-number rule that runs last spells them out.
    if dollars and cents:
        return f"{dollars} {_unit(dollars, 'dollar')}, {cents} {_unit(cents, 'cent')}"
    if dollars:
        return f"{dollars} {_unit(dollars, 'dollar')}"
    if cents:
        return f"{cents} {_unit(cents, 'cent')}"
    return "zero dollars"


def _expand_ordinal(match: re.Match[str]) -> str:
    # inflect reads the suffixed string ("3rd") as an ordinal ("third").
    return _number_to_words(match.group(0))


def _expand_number(match: re.Match[str]) -> str:
    number = int(match.group(0))
    if 1000 < number < 3000:
        # Read as a year: "nineteen ninety-nine", "nineteen hundred", "two thousand five".
        if number == 2000:
            return "two thousand"
        if 2000 < number < 2010:
            return "two thousand " + _number_to_words(number % 100)
        if number % 100 == 0:
            return _number_to_words(number // 100) + " hundred"
        return _number_to_words(number, andword="", zero="oh", group=2).replace(", ", " ")
    return _number_to_words(number, andword="")


def normalize_numbers(text: str) -> str:
    """Replaces every number in ``text`` with words.

    The rules run in a fixed order, each on the output of the previous one: commas inside numbers
    are removed, ``£N`` becomes ``N pounds``, ``$D.C`` becomes ``D dollars, C cents``, ``A.B``
    becomes ``A point B``, ordinals (``3rd``) are spelled, and finally every remaining digit run is
    spelled out (1001-2999 read as years).

    Args:
        text: Text that may contain digits.

    Returns:
        The text with every digit replaced by words.

    Raises:
        ValueError: If a number is too large for inflect to spell out (about 10**33 and up).
    """
    text = _COMMA_NUMBER_RE.sub(_remove_commas, text)
    text = _POUNDS_RE.sub(r"\1 pounds", text)
    text = _DOLLARS_RE.sub(_expand_dollars, text)
    text = _DECIMAL_NUMBER_RE.sub(_expand_decimal_point, text)
    text = _ORDINAL_RE.sub(_expand_ordinal, text)
    text = _NUMBER_RE.sub(_expand_number, text)
    return text
