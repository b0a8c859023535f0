"""Whole files for readers and for writers that share a folder (sweep workers, threads of one sweeper process):
each writer writes a temporary file of its own beside the target and renames it over the target, so a reader sees
the old file or the new one, never a part, and the last writer's file is kept."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` in one rename; the folder must exist. The file gets the permissions of
    any new file (the umask's), as a plain write would give it."""
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")  # one per writer, thread or process
    try:
        with open(partial, "x", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
