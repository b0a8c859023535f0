"""One way to open an Optuna storage from a URL, shared by the sweeper and the jobs it launches.

``sqlite:///path.db`` and other SQLAlchemy URLs (``postgresql://user@host/db``) open an ``RDBStorage``;
``journal:/path/to/file`` opens Optuna's journal file storage (safe on network file systems without a
database server). SQLite gets a generous lock timeout: a sweep's parallel jobs write to one file.
"""

from __future__ import annotations

from typing import Any

JOURNAL_PREFIX = "journal:"
_SQLITE_LOCK_TIMEOUT_S = 60


def open_storage(url: str) -> Any:
    """An Optuna storage object for ``url``; raises ``ValueError`` naming the URL when it is not one."""
    import optuna

    if not isinstance(url, str) or not url:
        raise ValueError(f"an Optuna storage URL must be a non-empty string, got {url!r}")
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX):]))
    if "://" not in url:
        raise ValueError(f"storage {url!r} is neither a database URL (sqlite:///file.db, postgresql://...) nor "
                         f"{JOURNAL_PREFIX}<file>")
    engine_kwargs = {"connect_args": {"timeout": _SQLITE_LOCK_TIMEOUT_S}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
