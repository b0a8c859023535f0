"""Text <-> symbol-id sequences, as fed to Tacotron2's embedding layer."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable

from .cleaners import clean_text, get_cleaner
from .cmudict import CMUDict
from .symbols import ARPABET_PREFIX, PAD, symbol_to_id, symbols

logger = logging.getLogger(__name__)

# "before {ARPABET} after". DOTALL is a deliberate fix over NVIDIA, whose pattern stops at a newline
# and so silently loses everything after a newline that follows a brace group.
_CURLY_RE = re.compile(r"(.*?)\{(.+?)\}(.*)", re.DOTALL)
# Splits a word from the punctuation around it, which stays as characters ("(hello," -> "(", "hello", ",").
_WORD_RE = re.compile(r"(\W*)(.*?)(\W*)", re.DOTALL)
# NVIDIA never emits the pad symbol from text, and "~" (its old end-of-sequence marker) is not a symbol.
_NEVER_FROM_TEXT = frozenset({PAD, "~"})
_SPACE_ID = symbol_to_id[" "]


def _symbols_to_ids(items: Iterable[str], dropped: set[str]) -> list[int]:
    ids = []
    for item in items:
        symbol_id = symbol_to_id.get(item)
        if symbol_id is None or item in _NEVER_FROM_TEXT:
            dropped.add(item)
        else:
            ids.append(symbol_id)
    return ids


def _arpabet_to_ids(arpabet: str, dropped: set[str]) -> list[int]:
    return _symbols_to_ids((ARPABET_PREFIX + phone for phone in arpabet.split()), dropped)


def _cleaned_to_ids(text: str, dictionary: CMUDict | None, dropped: set[str]) -> list[int]:
    if dictionary is None:
        return _symbols_to_ids(text, dropped)
    ids: list[int] = []
    # Splitting on single spaces (not any whitespace) keeps every space of the cleaned text.
    for index, token in enumerate(text.split(" ")):
        if index:
            ids.append(_SPACE_ID)
        leading, word, trailing = _WORD_RE.fullmatch(token).groups()
        pronunciations = dictionary.lookup(word) if word else None
        if pronunciations is None:
            ids += _symbols_to_ids(token, dropped)
        else:
            ids += _symbols_to_ids(leading, dropped)
            ids += _arpabet_to_ids(pronunciations[0], dropped)
            ids += _symbols_to_ids(trailing, dropped)
    return ids


def _describe(item: str) -> str:
    if len(item) > 1 and item.startswith(ARPABET_PREFIX):
        return "{" + item[len(ARPABET_PREFIX) :] + "}"
    return repr(item)


def text_to_sequence(
    text: str,
    cleaner_names: str | Iterable[str] = ("english_cleaners",),
    dictionary: CMUDict | None = None,
) -> list[int]:
    """Converts text to symbol ids, as NVIDIA's ``text.text_to_sequence`` does.

    Text inside curly braces is ARPAbet, e.g. ``"Turn left on {HH AW1 S S T AH0 N} Street."``: each
    space-separated phone becomes its ``@``-prefixed symbol and no cleaner touches it. Everything
    else is cleaned with ``cleaner_names`` (each brace-free stretch separately) and mapped character
    by character. Characters and phones outside the symbol set are dropped, as NVIDIA drops them;
    a ``UserWarning`` names them. The warning text depends only on what was dropped, so under
    Python's default warning filter each distinct set is reported once per process. No
    end-of-sequence symbol is appended, and the result may be empty.

    Args:
        text: Raw text, optionally with ``{ARPAbet}`` groups.
        cleaner_names: Cleaners applied in order; a single name may be given as a string.
        dictionary: When given, each cleaned word found in it is replaced by its first pronunciation
            (punctuation around the word is kept as characters); other words are spelled out.

    Returns:
        Symbol ids, indices into :data:`~tacotron2_lightning.text.symbols.symbols`.

    Raises:
        TypeError: If ``text`` is not a string.
        ValueError: If a cleaner name is unknown; the message lists the valid names.
        TextCleaningError: If a cleaner cannot clean the text.
    """
    if not isinstance(text, str):
        # Checked because None or bytes would otherwise quietly produce an empty or wrong sequence.
        raise TypeError(f"text_to_sequence expects str, got {type(text).__name__}: {text!r}")
    if isinstance(cleaner_names, str):
        cleaner_names = [cleaner_names]
    cleaner_names = list(cleaner_names)
    for name in cleaner_names:
        get_cleaner(name)  # report a misspelt cleaner even for text that is all ARPAbet or empty

    sequence: list[int] = []
    dropped: set[str] = set()
    remaining = text
    while remaining:
        match = _CURLY_RE.match(remaining)
        if match is None:
            sequence += _cleaned_to_ids(clean_text(remaining, cleaner_names), dictionary, dropped)
            break
        before, arpabet, remaining = match.groups()
        sequence += _cleaned_to_ids(clean_text(before, cleaner_names), dictionary, dropped)
        sequence += _arpabet_to_ids(arpabet, dropped)

    if dropped:
        names = ", ".join(_describe(item) for item in sorted(dropped))
        logger.debug("Dropped %s from %r", names, text)
        # The message omits the text and the warning is attributed to this line (stacklevel 1), so
        # Python's warning registry reports each distinct set once per process, whatever the caller;
        # a data loader would otherwise repeat it for every utterance. The text goes to the debug log.
        warnings.warn(f"text_to_sequence dropped symbols not in the symbol set: {names}", stacklevel=1)
    return sequence


def sequence_to_text(sequence: Iterable[int]) -> str:
    """Converts symbol ids back to text; ARPAbet comes back inside braces, one group per run.

    Args:
        sequence: Symbol ids (ints, or anything ``int()`` accepts, such as 0-d tensors).

    Returns:
        The text, e.g. ``"{HH AH0 L OW1} world."``. Pad ids show as ``"_"``.

    Raises:
        ValueError: If an id is not a valid symbol id; the message names the id and its position.
    """
    pieces = []
    for position, symbol_id in enumerate(sequence):
        index = int(symbol_id)
        if not 0 <= index < len(symbols):
            raise ValueError(
                f"symbol id {index} at position {position} is not in the symbol table (0..{len(symbols) - 1})"
            )
        symbol = symbols[index]
        if len(symbol) > 1 and symbol.startswith(ARPABET_PREFIX):
            symbol = "{" + symbol[len(ARPABET_PREFIX) :] + "}"
        pieces.append(symbol)
    # Adjacent phones "{HH}{AH0}" merge into one group "{HH AH0}".
    return "".join(pieces).replace("}{", " ")
