"""Reading utterance lists: LJSpeech folders (``metadata.csv`` + ``wavs/``) and NVIDIA filelists (``path|text``).

Every utterance remembers where it came from (``file:line``) so that any later problem with it -- a missing
wav, a wrong sample rate, text that cleans to nothing -- names the exact line to fix.

Files are UTF-8, with or without the byte-order mark that Windows editors and spreadsheet programs write, and
with ``\\n`` or ``\\r\\n`` line ends. Lines are split on ``\\n`` only, so line numbers are the ones an editor shows
even when a text holds another Unicode line separator.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_MAX_LISTED = 20  # problems quoted in an error; the log lists them all


class DataError(ValueError):
    """Bad training data; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Utterance:
    audio_path: Path
    text: str
    origin: str  # "metadata.csv:12": where this utterance was declared, for error messages


def settle_problems(problems: Sequence[str], total: int, what: str, skip_bad: bool) -> None:
    """Refuses the data over ``problems`` (each naming its file and line), or with ``skip_bad`` logs their count
    and every one of them; ``what`` names one problem in the messages ("bad utterance", "malformed line").

    Raises:
        DataError: when there are problems and ``skip_bad`` is false; it quotes the first 20 of them.
    """
    if not problems:
        return
    if not skip_bad:
        listing = "\n  ".join(problems[:_MAX_LISTED])
        if len(problems) > _MAX_LISTED:
            listing += f"\n  ... and {len(problems) - _MAX_LISTED} more"
        raise DataError(f"{len(problems)} {what}(s) of {total} (set skip_bad=true to skip them):\n  {listing}")
    log.warning("Skipping %d %s(s) of %d:\n  %s", len(problems), what, total, "\n  ".join(problems))


def _read_lines(path: Path) -> list[str | UnicodeDecodeError]:
    """The lines of ``path`` without their ``\\n``/``\\r\\n`` ends and the file's UTF-8 BOM; a line that is not
    UTF-8 is the error decoding it, so that it can be named by its number and skipped like any other bad line."""
    if not path.is_file():
        raise DataError(f"File not found: {path}")
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path} is UTF-16 text; save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines: list[str | UnicodeDecodeError] = []
    for raw in data.split(b"\n"):
        try:
            lines.append(raw.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as error:
            lines.append(error)
    if lines and lines[-1] == "":  # the newline ending the last line starts no line of its own
        lines.pop()
    return lines


def _undecodable(where: str, error: UnicodeDecodeError) -> str:
    return f"{where}: not UTF-8 text ({error.reason} at byte {error.start} of the line)"


def _read_table(path: Path, utterance: Callable[[list[str], str], Utterance | None], expected: str,
                skip_bad: bool) -> list[Utterance]:
    """The utterances of a ``|``-separated file, one a line: ``utterance(fields, "file:line")`` makes one, or None
    for a line that is not as ``expected`` describes; blank lines are skipped, malformed ones settled as
    :func:`settle_problems` says. Raises DataError naming the file when it lists no utterance."""
    utterances, malformed = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        where = f"{path}:{number}"
        if isinstance(line, UnicodeDecodeError):
            malformed.append(_undecodable(where, line))
            continue
        if not line.strip():
            continue
        made = utterance(line.split("|"), where)
        if made is None:
            malformed.append(f"{where}: expected {expected}, got {line!r}")
            continue
        utterances.append(made)
    settle_problems(malformed, len(utterances) + len(malformed), "malformed line", skip_bad)
    if not utterances:
        raise DataError(f"{path} lists no utterances" + (f" ({len(malformed)} malformed line(s) skipped)"
                                                         if malformed else ""))
    return utterances


def read_ljspeech(root: str | Path, use_normalized_text: bool = True, *, skip_bad: bool = False) -> list[Utterance]:
    """Utterances of an LJSpeech-style folder: ``metadata.csv`` lines ``id|text|normalized_text``.

    Audio is ``wavs/<id>.wav``. The normalized column (numbers spelled out) is used when present and
    non-empty, as NVIDIA's LJSpeech filelists do; two-column lines ``id|text`` are accepted too.

    Raises:
        DataError: naming the folder or file when it is missing or lists no utterance, and naming every
            malformed line (wrong field count, empty id, not UTF-8) unless ``skip_bad``, which logs and skips them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"LJSpeech folder not found: {root}")

    def utterance(fields: list[str], where: str) -> Utterance | None:
        if len(fields) not in (2, 3) or not fields[0].strip():
            return None
        text = fields[2] if use_normalized_text and len(fields) == 3 and fields[2].strip() else fields[1]
        return Utterance(root / "wavs" / f"{fields[0].strip()}.wav", text, where)

    return _read_table(root / "metadata.csv", utterance, "'id|text|normalized_text' (or 'id|text')",
                       skip_bad)


def read_filelist(path: str | Path, audio_root: str | Path | None = None, *,
                  skip_bad: bool = False) -> list[Utterance]:
    """Utterances of an NVIDIA-style filelist: lines ``path/to/file.wav|text`` (extra ``|`` fields ignored).

    Relative audio paths resolve against ``audio_root`` when given, else against the filelist's folder.

    Raises:
        DataError: naming the file when it is missing or lists no utterance, and naming every malformed line
            (no ``|``, empty path, not UTF-8) unless ``skip_bad``, which logs and skips them.
    """
    path = Path(path)
    base = Path(audio_root) if audio_root is not None else path.parent

    def utterance(fields: list[str], where: str) -> Utterance | None:
        if len(fields) < 2 or not fields[0].strip():
            return None
        audio = Path(fields[0].strip())
        return Utterance(audio if audio.is_absolute() else base / audio, fields[1], where)

    return _read_table(path, utterance, "'path/to/audio.wav|text'", skip_bad)
