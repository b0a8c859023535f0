"""Text front end of NVIDIA's Tacotron2: symbols, cleaners, CMUdict and text <-> id sequences."""

from .cleaners import (
    TextCleaningError,
    basic_cleaners,
    clean_text,
    english_cleaners,
    transliteration_cleaners,
)
from .cmudict import CMUDict
from .sequence import sequence_to_text, text_to_sequence
from .symbols import symbols

__all__ = [
    "CMUDict",
    "TextCleaningError",
    "basic_cleaners",
    "clean_text",
    "english_cleaners",
    "sequence_to_text",
    "symbols",
    "text_to_sequence",
    "transliteration_cleaners",
]
