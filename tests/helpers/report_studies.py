"""Studies and report pages for the sweep report's tests: finished trials as the sweeper leaves them, validation
media where ``ValidationMedia`` writes them, and a parser that reads a written ``report.html`` back by section."""

from __future__ import annotations

import base64
import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

START = dt.datetime(2026, 1, 1, 12, 0, 0)
SPACE = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "batch_size": IntDistribution(8, 64)}


def frozen(number: int, state: TrialState, values=None, params=None, seconds: float = 60.0, steps=None,
           user_attrs=None) -> FrozenTrial:
    """A finished trial as the sweeper leaves it: values reported by global step, attributes set."""
    params = params if params is not None else {"lr": 1e-3 * (number + 1), "batch_size": 8 + 8 * number}
    intermediate = {step: 1.0 / (step + number) for step in (steps or [])}
    return FrozenTrial(number=number, state=state, value=None, values=values, datetime_start=START,
                       datetime_complete=START + dt.timedelta(seconds=seconds), params=params,
                       distributions={k: SPACE[k] for k in params}, user_attrs=user_attrs or {}, system_attrs={},
                       intermediate_values=intermediate, trial_id=number)


def write_media(folder: Path, step: int, shade: float) -> dict[str, bytes]:
    """Real small PNGs and a WAV where ValidationMedia puts them; returns their bytes by report key."""
    import soundfile
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    step_dir = folder / "media" / f"step_{step:06d}"
    step_dir.mkdir(parents=True)
    for name in ("alignment", "mel", "inference_alignment"):
        figure = Figure(figsize=(1, 1))
        FigureCanvasAgg(figure)
        figure.add_subplot().imshow(np.full((4, 4), shade) + np.eye(4))
        figure.savefig(step_dir / f"{name}.png")
    soundfile.write(step_dir / "sample.wav", 0.1 * np.sin(np.linspace(0, 200 * shade, 800)), 8000)
    files = {"alignment": "alignment.png", "mel": "mel.png", "inference_alignment": "inference_alignment.png",
             "audio": "sample.wav"}
    return {key: (step_dir / name).read_bytes() for key, name in files.items()}


class Sections(HTMLParser):
    """Per ``<section id=...>``: its heading, text, decoded ``<img>``/``<audio>`` data URIs, the images' alt texts and
    table rows (class, cells)."""

    def __init__(self, html: str):
        super().__init__()
        self.found: dict[str, dict] = {}
        self.order: list[str] = []
        self._current: dict | None = None
        self._row: tuple[str, list[str]] | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._current = self.found.setdefault(attrs["id"], {"title": "", "text": "", "images": [], "alts": [],
                                                                  "audio": [], "rows": []})
            self.order.append(attrs["id"])
        elif self._current is None:
            return
        elif tag in ("img", "audio"):
            mime, payload = attrs["src"].removeprefix("data:").split(";base64,")
            self._current["images" if tag == "img" else "audio"].append((mime, base64.b64decode(payload)))
            if tag == "img":
                self._current["alts"].append(attrs.get("alt", ""))
        elif tag == "h2":
            self._heading = []
        elif tag == "tr":
            self._row = (attrs.get("class", ""), [])
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "section":
            self._current = None
        elif tag == "h2" and self._heading is not None and self._current is not None:
            self._current["title"] = "".join(self._heading)
            self._heading = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._current is not None:
            if self._row[1]:
                self._current["rows"].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"] += data
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


