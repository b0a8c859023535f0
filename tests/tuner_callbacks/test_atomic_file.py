"""Writers sharing a folder, threads of one process included, each leave a whole file: the last one's."""

from __future__ import annotations

import pytest

from tests.helpers.threads import run_in_threads
from tuner_callbacks.atomic_file import write_text_atomically


def test_threads_writing_one_file_leave_one_writers_whole_text_and_no_partial_files(tmp_path):
    path, texts = tmp_path / "optimization_results.yaml", [f"{n}\n" * 20000 for n in range(8)]

    def write(text):
        for _ in range(5):  # one pid for all: a pid-named partial file would be renamed away by another thread
            write_text_atomically(path, text)

    run_in_threads([lambda text=text: write(text) for text in texts])
    assert path.read_text(encoding="utf-8") in texts
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "report.html"
    write_text_atomically(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(path, "bad \udc00 surrogate")
    assert path.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_the_file_has_the_permissions_a_plain_write_gives(tmp_path):
    # Others on a shared folder (optuna-dashboard, a colleague) read the report as they read any file written there.
    plain, atomic = tmp_path / "plain.html", tmp_path / "report.html"
    plain.write_text("x", encoding="utf-8")
    write_text_atomically(atomic, "x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
