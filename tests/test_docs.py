"""The README stays a front door, and the manual under docs/ keeps every page in its navigation."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# .ci/run and users run these two lines as they are.
QUICK_START = (
    'python3.11 -m venv .venv && .venv/bin/pip install -e ".[builtin-data]" && .venv/bin/python train.py',
    '.venv/bin/pip install -e ".[dev]" && .venv/bin/python -m pytest',
)


def test_the_readme_is_short_and_holds_the_quick_start_lines_verbatim():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move reference material into docs/"
    for line in QUICK_START:
        assert line in lines, line


def _nav_pages(node) -> set[str]:
    if isinstance(node, str):
        return {node}
    if isinstance(node, list):
        return set().union(*(_nav_pages(item) for item in node))
    if isinstance(node, dict):
        return set().union(*(_nav_pages(value) for value in node.values()))
    return set()


def test_every_page_of_the_manual_is_in_its_navigation_and_the_readme_links_into_it():
    # mkdocs.yml uses the `!relative` tag, which yaml.safe_load does not know; read the nav only.
    text = (ROOT / "mkdocs.yml").read_text()
    nav = yaml.safe_load(text[text.index("\nnav:") :])["nav"]
    pages = {path.relative_to(ROOT / "docs").as_posix() for path in (ROOT / "docs").rglob("*.md")}
    assert pages == _nav_pages(nav)

    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\(docs/([^)#]+)", readme))
    assert linked <= pages, f"README.md links to missing pages: {sorted(linked - pages)}"
    chapters = {page for page in pages if not page.startswith("api/")} | {"api/index.md"}
    assert chapters <= linked, f"README.md does not link to: {sorted(chapters - linked)}"
