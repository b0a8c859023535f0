"""Small datasets written on the fly: LJSpeech folders and filelists of tone 'utterances'."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile


def write_tone(path: Path, seconds: float, sampling_rate: int = 22050, frequency: float = 220.0,
               channels: int = 1) -> Path:
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    wave = (0.3 * np.sin(2 * math.pi * frequency * t)).astype(np.float32)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data, sampling_rate, subtype="PCM_16")
    return path


def write_ljspeech(root: Path, texts: list[str], seconds: list[float] | None = None) -> Path:
    """An LJSpeech folder whose utterance i lasts seconds[i] (default 0.3 + 0.1 i) and says texts[i]."""
    seconds = seconds or [0.3 + 0.1 * i for i in range(len(texts))]
    lines = []
    for i, (text, duration) in enumerate(zip(texts, seconds, strict=True)):
        utterance_id = f"UT-{i:04d}"
        write_tone(root / "wavs" / f"{utterance_id}.wav", duration, frequency=200.0 + 20 * i)
        lines.append(f"{utterance_id}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
