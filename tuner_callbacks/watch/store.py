"""Which MLflow store a CLI reads, and a connection that fails with a clear message instead of creating one.

Shared by ``python -m tuner_callbacks.watch`` and the sweep report. MLflow creates an empty database when it
connects to a SQLite path that does not exist, so the path is checked before connecting: a typo in
``--tracking-uri`` must say "not found", not show an empty store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tuner_callbacks.mlflow_utils import redact_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# Where `python train.py` keeps runs (conf/paths: sqlite:///${paths.log_dir}/mlflow.db), relative to its cwd.
# A tracking server that does not answer should be reported within seconds, not after MLflow's default
# minutes of retries. CLIs set these for their own process; a variable the user set wins.
HTTP_FAIL_FAST_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class StoreUnavailableError(RuntimeError):
    """The MLflow store named by a tracking URI does not exist or does not answer."""


def local_store_path(uri: str) -> Path | None:
    """The file or folder a local store lives in (SQLite file, ``file:`` folder, plain path); None for servers."""
    if uri.startswith("sqlite:"):
        # sqlite:///relative/path and sqlite:////absolute/path; an in-memory database has no file.
        path = uri.split("?", 1)[0].removeprefix("sqlite:///")
        return None if path in ("", ":memory:") or path.startswith("sqlite:") else Path(path)
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:"))
    if "://" not in uri and uri not in ("databricks", "databricks-uc", "uc"):
        return Path(uri)
    return None


def connect(uri: str) -> MlflowClient:
    """An ``MlflowClient`` for ``uri`` that has answered one query.

    Raises:
        StoreUnavailableError: the local store does not exist (nothing is created), or the store refused or did
            not answer the query; the message names the URI and says what to do.
    """
    path = local_store_path(uri)
    if path is not None and not path.exists():
        raise StoreUnavailableError(
            f"No MLflow store at {path} (tracking URI {redact_url(uri)!r}): the file does not exist. Train a run "
            f"first, or point --tracking-uri (or MLFLOW_TRACKING_URI) at an existing store.")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:  # MLflow raises several types (MlflowException, requests', SQLAlchemy's)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        kind = "unreachable" if path is None else "unreadable"
        raise StoreUnavailableError(f"MLflow store {redact_url(uri)!r} is {kind}: {first_line}") from error
    return client
