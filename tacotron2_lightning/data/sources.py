"""Reading utterance lists: LJSpeech folders (``metadata.csv`` + ``wavs/``) and NVIDIA filelists (``path|text``).

Every utterance remembers where it came from (``file:line``) so that any later problem with it -- a missing
wav, a wrong sample rate, text that cleans to nothing -- names the exact line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """Bad training data; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Utterance:
    audio_path: Path
    text: str
    origin: str  # "metadata.csv:12": where this utterance was declared, for error messages


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"File not found: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text: {error}") from error


def read_ljspeech(root: str | Path, use_normalized_text: bool = True) -> list[Utterance]:
    """Utterances of an LJSpeech-style folder: ``metadata.csv`` lines ``id|text|normalized_text``.

    Audio is ``wavs/<id>.wav``. The normalized column (numbers spelled out) is used when present and
    non-empty, as NVIDIA's LJSpeech filelists do; two-column lines ``id|text`` are accepted too.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"LJSpeech folder not found: {root}")
    metadata = root / "metadata.csv"
    utterances = []
    for number, line in enumerate(_read_lines(metadata), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) not in (2, 3) or not fields[0].strip():
            raise DataError(
                f"{metadata}:{number}: expected 'id|text|normalized_text' (or 'id|text'), got {line!r}"
            )
        text = fields[2] if use_normalized_text and len(fields) == 3 and fields[2].strip() else fields[1]
        utterances.append(Utterance(root / "wavs" / f"{fields[0].strip()}.wav", text, f"{metadata}:{number}"))
    if not utterances:
        raise DataError(f"{metadata} lists no utterances")
    return utterances


def read_filelist(path: str | Path, audio_root: str | Path | None = None) -> list[Utterance]:
    """Utterances of an NVIDIA-style filelist: lines ``path/to/file.wav|text`` (extra ``|`` fields ignored).

    Relative audio paths resolve against ``audio_root`` when given, else against the filelist's folder.
    """
    path = Path(path)
    base = Path(audio_root) if audio_root is not None else path.parent
    utterances = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0].strip():
            raise DataError(f"{path}:{number}: expected 'path/to/audio.wav|text', got {line!r}")
        audio = Path(fields[0].strip())
        utterances.append(Utterance(audio if audio.is_absolute() else base / audio, fields[1], f"{path}:{number}"))
    if not utterances:
        raise DataError(f"{path} lists no utterances")
    return utterances
