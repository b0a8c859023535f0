"""An on-disk cache of mel spectrograms shared by every run, trial, worker and process.

An entry's name hashes everything the mel depends on: the audio settings and the source file's resolved
path, size and modification time. A changed wav therefore never hits an old entry. Entries are ``.npz``
files, whose zip CRC catches corruption on read; each also stores the fields it was made from, which are
compared on read. Writes go to a temporary file in the same folder and are renamed into place, so readers
in other workers or processes see a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


class MelCache:
    """Mel spectrograms keyed by audio settings and source file, computed once by ``compute``.

    Args:
        folder: where entries live (created on first write).
        settings: everything besides the file that the mel depends on (the audio config, resampling).
        compute: ``compute(path) -> mel (C, T)``, called on a miss.

    Example:
        >>> cache = MelCache(Path("~/.cache/smart-tuner/mels").expanduser(), {"hop_length": 256}, wav_to_mel)
        >>> mel = cache.get(Path("wavs/LJ001-0001.wav"))
    """

    def __init__(self, folder: str | Path, settings: dict[str, Any], compute: Callable[[Path], torch.Tensor]):
        self.folder = Path(folder)
        self.settings_json = json.dumps(settings, sort_keys=True, default=str)
        self.compute = compute
        self.hits = 0
        self.misses = 0

    def _fields(self, path: Path) -> dict[str, Any]:
        resolved = path.resolve()
        stat = resolved.stat()
        return {"path": str(resolved), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "settings": self.settings_json}

    def entry_path(self, path: str | Path) -> Path:
        digest = hashlib.sha256(json.dumps(self._fields(Path(path)), sort_keys=True).encode()).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npz"

    def get(self, path: str | Path) -> torch.Tensor:
        path = Path(path)
        fields = self._fields(path)
        entry = self.entry_path(path)
        cached = self._read(entry, fields)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        mel = self.compute(path)
        self._write(entry, fields, mel)
        return mel

    def _read(self, entry: Path, fields: dict[str, Any]) -> torch.Tensor | None:
        try:
            with np.load(entry, allow_pickle=False) as stored:
                if json.loads(str(stored["fields"])) != fields:
                    log.warning("Mel cache entry %s was made from other inputs; recomputing", entry)
                    return None
                return torch.from_numpy(stored["mel"].copy())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            log.warning("Mel cache entry %s is unreadable (%s); recomputing", entry, error)
            return None

    def _write(self, entry: Path, fields: dict[str, Any], mel: torch.Tensor) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, mel=mel.detach().cpu().numpy(), fields=np.array(json.dumps(fields, sort_keys=True)))
            os.replace(temporary, entry)  # atomic: a concurrent reader sees the old state or the whole entry
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
