"""Tests for the text front end against NVIDIA Tacotron2's behaviour."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from tacotron2_lightning.text import (
    CMUDict,
    TextCleaningError,
    basic_cleaners,
    english_cleaners,
    sequence_to_text,
    symbols,
    text_to_sequence,
    transliteration_cleaners,
)
from tacotron2_lightning.text.numbers import normalize_numbers
from tacotron2_lightning.text.symbols import ARPABET
from tests.helpers.batches import DATA_DIR

VECTORS_PATH = DATA_DIR / "text_frontend_vectors.json"
REFERENCE = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def ids(*items: str) -> list[int]:
    """Symbol ids of the given symbols, looked up in NVIDIA's reference list (not our table)."""
    return [REFERENCE["symbols"].index(item) for item in items]


@pytest.fixture(scope="module")
def cmu() -> CMUDict:
    return CMUDict()


# --- symbols -----------------------------------------------------------------------------------------


def test_symbols_match_nvidia_order() -> None:
    assert symbols == REFERENCE["symbols"]
    assert len(symbols) == 148
    assert symbols[0] == "_"
    assert symbols[11] == " "
    assert len(ARPABET) == 84


# --- reference vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", REFERENCE["vectors"], ids=lambda v: v["text"][:30])
def test_reference_vectors(vector: dict) -> None:
    assert text_to_sequence(vector["text"], vector["cleaners"]) == vector["sequence"]


@pytest.mark.parametrize("vector", REFERENCE["vectors"], ids=lambda v: v["text"][:30])
def test_sequence_to_text_round_trip(vector: dict) -> None:
    text = sequence_to_text(vector["sequence"])
    assert text_to_sequence(text, vector["cleaners"]) == vector["sequence"]


# --- numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$5.50", "five dollars, fifty cents"),
        ("$1.01", "one dollar, one cent"),
        ("$2.01", "two dollars, one cent"),
        ("$1", "one dollar"),
        ("$0.05", "five cents"),
        ("$.01", "one cent"),
        ("$0", "zero dollars"),
        ("$1.2.3", "one point two.three dollars"),  # more than one '.': "X dollars", then decimals
        ("$1,000.50", "one thousand dollars, fifty cents"),
        ("£20", "twenty pounds"),
        ("3rd", "third"),
        ("21st", "twenty-first"),
        ("100th", "one hundredth"),
        ("1999", "nineteen ninety-nine"),
        ("2005", "two thousand five"),
        ("1900", "nineteen hundred"),
        ("2000", "two thousand"),
        ("1905", "nineteen oh five"),
        ("2009", "two thousand nine"),
        ("2010", "twenty ten"),
        ("1001", "ten oh one"),
        ("1000", "one thousand"),
        ("3000", "three thousand"),
        ("123", "one hundred twenty-three"),
        ("3.14", "three point fourteen"),
        ("1,000,000", "one million"),
        ("1,234", "twelve thirty-four"),  # commas go first, so this is read as a year, as NVIDIA does
    ],
)
def test_normalize_numbers(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


def test_english_cleaners_transliterate_pound_sign_before_number_rules() -> None:
    # unidecode turns "£" into "PS" before the pounds rule runs, exactly as in NVIDIA's pipeline.
    assert english_cleaners("£20") == "pstwenty"


def test_number_too_large_raises_naming_it() -> None:
    digits = "1" + "0" * 40
    with pytest.raises(TextCleaningError, match=digits):
        english_cleaners(f"about {digits} stars")


# --- cleaners ----------------------------------------------------------------------------------------


def test_abbreviations() -> None:
    text = "Mrs. Smith, Mr. Jones and Drs. Who met Dr. No at St. Paul's, Ft. Knox, for Co. Ltd."
    assert english_cleaners(text) == (
        "misess smith, mister jones and doctors who met doctor no at saint paul's, fort knox, "
        "for company limited"
    )


def test_abbreviations_need_period_and_word_boundary() -> None:
    assert english_cleaners("Mr Smith came first.") == "mr smith came first."


def test_whitespace_collapsed_but_not_stripped() -> None:
    assert english_cleaners("  Hello \t\n  world  ") == " hello world "
    assert basic_cleaners("A\n\nB ") == "a b "


def test_unicode_transliteration() -> None:
    assert english_cleaners("Ünïcödé café — naïve") == "unicode cafe -- naive"
    assert transliteration_cleaners("Straße  Ærø") == "strasse aero"
    # basic_cleaners does not transliterate.
    assert basic_cleaners("Café") == "café"


def test_unknown_cleaner_raises_naming_it_and_listing_valid() -> None:
    with pytest.raises(ValueError, match=r"'englsh_cleaners'.*english_cleaners"):
        text_to_sequence("hello", ["englsh_cleaners"])
    # Also for text that never reaches a cleaner.
    with pytest.raises(ValueError, match="nope"):
        text_to_sequence("", ["nope"])


def test_cleaner_name_as_string() -> None:
    assert text_to_sequence("Hi 2", "english_cleaners") == ids("h", "i", " ", "t", "w", "o")


def test_cleaners_applied_in_order() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # basic_cleaners neither spells numbers nor expands abbreviations; the digit is dropped.
        assert text_to_sequence("Dr. 5", ["basic_cleaners"]) == ids("d", "r", ".", " ")
        assert text_to_sequence("É", ["basic_cleaners", "transliteration_cleaners"]) == ids("e")


# --- sequences ---------------------------------------------------------------------------------------


def test_arpabet_in_braces() -> None:
    assert text_to_sequence("{HH AH0 L OW1}") == ids("@HH", "@AH0", "@L", "@OW1")
    # Text around the braces is cleaned, the phones are not.
    assert text_to_sequence("Say {T UW1} 2!") == ids(
        "s", "a", "y", " ", "@T", "@UW1", " ", "t", "w", "o", "!"
    )


def test_no_end_of_sequence_symbol_and_empty_text() -> None:
    assert text_to_sequence("a") == ids("a")
    assert text_to_sequence("") == []


def test_non_string_text_rejected() -> None:
    with pytest.raises(TypeError, match="NoneType"):
        text_to_sequence(None)  # type: ignore[arg-type]


def test_dropped_characters_warn_once_naming_them() -> None:
    with warnings.catch_warnings(record=True) as caught:
        # Changing the filters resets the warning registry; "default" shows each distinct warning once.
        warnings.simplefilter("default")
        # Different texts and call sites dropping the same characters: one warning in all.
        for text in ('a&b "c"', '"c"&', '&&"'):
            text_to_sequence(text)
        assert text_to_sequence('a&b "c"') == ids("a", "b", " ", "c")
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "'&'" in message and "'\"'" in message

        for _ in range(2):
            assert text_to_sequence("x_y") == ids("x", "y")  # the pad symbol never comes from text
        assert len(caught) == 2
        assert "'_'" in str(caught[1].message)


def test_invalid_arpabet_phone_dropped_with_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert text_to_sequence("{HH XX hh}") == ids("@HH")
    assert len(caught) == 1
    assert "{XX}" in str(caught[0].message) and "{hh}" in str(caught[0].message)


def test_clean_text_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text_to_sequence("Hello, world! (It's 5:30; ok?)")


def test_sequence_to_text_merges_adjacent_arpabet() -> None:
    sequence = ids("@HH", "@AH0", " ", "@L", "a", ".")
    assert sequence_to_text(sequence) == "{HH AH0} {L}a."


def test_sequence_to_text_rejects_bad_id() -> None:
    with pytest.raises(ValueError, match=r"148 at position 1"):
        sequence_to_text([1, 148])


# --- CMUdict -----------------------------------------------------------------------------------------


def test_cmudict_lookup(cmu: CMUDict) -> None:
    pronunciations = cmu.lookup("hello")
    assert pronunciations is not None
    assert pronunciations[0] == "HH AH0 L OW1"
    assert cmu.lookup("HeLLo") == pronunciations
    assert cmu.lookup("qzxqzxq") is None
    assert "world" in cmu and "qzxqzxq" not in cmu
    assert len(cmu) > 100_000
    assert all(phone in ARPABET for phone in " ".join(pronunciations).split())


def test_dictionary_driven_sequence(cmu: CMUDict) -> None:
    sequence = text_to_sequence("Hello, (world) zqx.", dictionary=cmu)
    assert sequence == ids(
        "@HH", "@AH0", "@L", "@OW1", ",", " ", "(", "@W", "@ER1", "@L", "@D", ")", " ", "z", "q", "x", "."
    )
    assert sequence_to_text(sequence) == "{HH AH0 L OW1}, ({W ER1 L D}) zqx."


def test_cmudict_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.dict"
    path.write_text(
        ";;; a classic-format comment\n"
        "READ  R IY1 D\n"
        "READ(2)  R EH1 D\n"
        "tomato T AH0 M EY1 T OW2 # a trailing comment\n"
        "\n",
        encoding="utf-8",
    )
    tiny = CMUDict(path)
    assert tiny.lookup("read") == ["R IY1 D", "R EH1 D"]
    assert tiny.lookup("Tomato") == ["T AH0 M EY1 T OW2"]
    assert tiny.lookup("hello") is None
    assert len(tiny) == 2
    assert text_to_sequence("Read!", dictionary=tiny) == ids("@R", "@IY1", "@D", "!")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("OK  OW1 K EY1\nBROKEN\n", r"bad\.dict:2: .*'BROKEN'"),
        ("OK  OW1 K EY1\nOK  OW1 Q\n", r"bad\.dict:2: .*\['Q'\]"),
    ],
)
def test_cmudict_malformed_file_names_file_and_line(tmp_path: Path, content: str, pattern: str) -> None:
    path = tmp_path / "bad.dict"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=pattern):
        CMUDict(path)
