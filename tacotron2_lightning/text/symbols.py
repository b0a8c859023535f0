"""The symbol inventory of NVIDIA's Tacotron2, in embedding-id order.

The order is part of the checkpoint format: NVIDIA's published ``tacotron2_statedict.pt`` has a
148-row embedding table whose row ``i`` belongs to ``symbols[i]``. Changing anything here silently
scrambles every pretrained model, so the list is pinned by a test against NVIDIA's own list.
"""

from __future__ import annotations

PAD = "_"
"""Padding symbol; id 0 so that zero-padded batches are padded with it."""

_SPECIAL = "-"
_PUNCTUATION = "!'(),.:;? "
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# CMUdict's phone set: vowels carry a lexical-stress digit (0 none, 1 primary, 2 secondary) and also
# appear bare; consonants never carry stress.
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG",
    "P", "R", "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip

ARPABET: tuple[str, ...] = tuple(
    sorted([*_CONSONANTS, *(vowel + stress for vowel in _VOWELS for stress in ("", "0", "1", "2"))])
)
"""The 84 CMUdict ARPAbet phones, sorted as CMUdict (and therefore NVIDIA) lists them."""

ARPABET_PREFIX = "@"
"""Prefix that keeps ARPAbet symbols distinct from letters in the symbol table (``@AA`` vs ``A``)."""

symbols: list[str] = [
    PAD,
    *_SPECIAL,
    *_PUNCTUATION,
    *_LETTERS,
    *(ARPABET_PREFIX + phone for phone in ARPABET),
]
"""All 148 symbols; ``symbols[i]`` is the symbol with id ``i``."""

symbol_to_id: dict[str, int] = {symbol: index for index, symbol in enumerate(symbols)}
"""Inverse of :data:`symbols`."""
