"""HTML pieces of the sweep report: one self-contained page (images and audio as data URIs, inline CSS, no
scripts), so the file can be mailed, attached to an MLflow run or opened offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.COMPLETE td.state { color: #1a7f37; } tr.PRUNED td.state { color: #8250df; } tr.FAIL td.state { color: #cf222e; }
tr.GIVEN_BACK td.state, tr.INTERRUPTED td.state { color: #6e7781; }
tr.infeasible td.state { color: #bc4c00; font-weight: bold; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: 0.85em; color: #555; }
p.note { color: #555; font-style: italic; } nav a { display: inline-block; margin-right: 1em; }
div.wide { overflow-x: auto; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image(png: bytes, caption: str) -> str:
    return (f'<figure><img src="{data_uri("image/png", png)}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def audio(wav: bytes, caption: str) -> str:
    return (f'<figure><audio controls src="{data_uri("audio/wav", wav)}"></audio>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] = (),
          row_classes: Sequence[str] = (), cell_classes: Sequence[str] = ()) -> str:
    """An HTML table; cells are escaped. ``numeric[i]`` right-aligns column i, ``row_classes[j]`` styles row j,
    ``cell_classes[i]`` adds a class to column i's cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column, cell in enumerate(row):
            classes = " ".join(filter(None, ["num" if column < len(numeric) and numeric[column] else "",
                                             cell_classes[column] if column < len(cell_classes) else ""]))
            cells.append(f'<td class="{classes}">{esc(cell)}</td>' if classes else f"<td>{esc(cell)}</td>")
        row_class = f' class="{esc(row_classes[index])}"' if index < len(row_classes) else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


@dataclass(frozen=True)
class Section:
    id: str  # the anchor, also what tests look for
    title: str
    body: str  # HTML, already escaped


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    parts = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{s.body}</section>' for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1><p>{esc(subtitle)}</p><nav>{nav}</nav>"
            f"{parts}</body></html>\n")
