"""One asker at a time on a SQLite study.

Optuna pops an enqueued (WAITING) trial by reading it and then setting it RUNNING "for update". PostgreSQL locks
the row and a journal file orders the writes, so only one worker gets it; SQLite ignores ``FOR UPDATE`` and runs
the read outside the write's transaction, so two workers sharing one SQLite file could both pop the same trial and
run it twice. Workers on one SQLite file are on one host, so an ``flock`` on a file beside the database (taken
per open file, so threads of one process exclude each other too) makes asking one at a time there.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url


def sqlite_database(storage_url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for any other storage or an in-memory database."""
    if not storage_url.startswith("sqlite:"):
        return None
    database = make_url(storage_url).database
    return Path(database).absolute() if database and database != ":memory:" else None


def ask_lock_path(storage_url: str) -> Path | None:
    """The lock file of the study at ``storage_url``; None where the storage orders pops itself."""
    database = sqlite_database(storage_url)
    return database.with_name(f"{database.name}.ask-lock") if database else None


@contextmanager
def asking_alone(lock_path: Path | None) -> Iterator[None]:
    """Exclusive among the sweepers that ask under ``lock_path`` (from :func:`ask_lock_path`); nothing when None."""
    if lock_path is None:
        yield
        return
    with open(lock_path, "a") as handle:  # closing it releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
