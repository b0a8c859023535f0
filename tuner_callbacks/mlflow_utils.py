"""MLflow helpers every part shares: which store, which logger, and what may be shown of a URL or a config.

- :func:`resolve_tracking_uri`: the store a command or callback uses when none is given.
- :func:`find_mlflow_logger`: a Trainer's MLflow logger, from ``pytorch_lightning`` or ``lightning.pytorch``.
- :func:`redact_url`: a URL with its password masked, for screens, logs, reports and tags.
- :func:`flatten_for_params`: a nested config as run parameters, secrets masked.
- :func:`mask_secrets`: a nested config with its secrets masked, nesting kept.
- :func:`prepare_sqlite_store`: a new SQLite store's tables, made once under a lock.

Nothing here imports MLflow or Lightning at import time: the watch and report commands start without them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Where a project run keeps its MLflow store (conf/paths/default.yaml) when started from the repository root.
DEFAULT_TRACKING_URI = "sqlite:///outputs/mlflow.db"

_USERINFO = re.compile(r"(?<=://)([^/\s]+)@")  # postgresql://USER:PASSWORD@host/db
_SECRET_KEY = re.compile(r"token|secret|password|api_key", re.IGNORECASE)
MASK = "***"


def prepare_sqlite_store(uri: str) -> None:
    """Creates the tables of a SQLite tracking store under a file lock; other URIs are left alone.

    MLflow creates a new SQLite store's tables when a client first opens it, without a lock: processes opening a
    new store together (the trials of a parallel sweep) race, and all but one fail with "table ... already
    exists". Opening it here first, one process at a time, leaves them nothing to create.
    """
    if not uri.startswith("sqlite:///"):
        return
    import fcntl  # POSIX; the project's machines are

    from mlflow.tracking import MlflowClient

    path = Path(uri.removeprefix("sqlite:///"))  # sqlite:////abs/x.db -> /abs/x.db; sqlite:///rel.db -> rel.db
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI given, else ``MLFLOW_TRACKING_URI``, else the project's default SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def redact_url(text: str) -> str:
    """Masks the credentials of every URL in ``text``: ``postgresql://user:pw@db/x`` -> ``postgresql://user:***@db/x``.

    A user name without a password is masked whole (``https://TOKEN@host``), as services put tokens there.
    """
    def mask(match: re.Match[str]) -> str:
        user, colon, _ = match[1].partition(":")
        return f"{user}:{MASK}@" if colon else f"{MASK}@"

    return _USERINFO.sub(mask, str(text))


def is_secret_key(key: object) -> bool:
    """Whether a config key names a secret (``token``, ``secret``, ``password``, ``api_key``)."""
    return bool(_SECRET_KEY.search(str(key)))


def flatten_for_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``, with secrets masked: what loggers record as run parameters."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_for_params(value, f"{name}/"))
        elif is_secret_key(key):
            flat[name] = MASK
        elif isinstance(value, str):
            flat[name] = redact_url(value)
        else:
            flat[name] = value
    return flat


def mask_secrets(config: Any) -> Any:
    """A copy of a nested config of plain values (dicts, lists) with secrets masked as in
    :func:`flatten_for_params`: the values of secret keys and the credentials of URLs.

    Example:
        >>> mask_secrets({"db": {"password": "pw", "url": "postgresql://u:pw@host/db"}, "size": 3})
        {'db': {'password': '***', 'url': 'postgresql://u:***@host/db'}, 'size': 3}
    """
    if isinstance(config, Mapping):
        return {key: MASK if is_secret_key(key) and not isinstance(value, Mapping) else mask_secrets(value)
                for key, value in config.items()}
    if isinstance(config, list | tuple):
        return [mask_secrets(value) for value in config]
    return redact_url(config) if isinstance(config, str) else config


def is_mlflow_logger(logger: object) -> bool:
    """Whether ``logger`` is Lightning's MLflow logger (or a subclass), from either Lightning package.

    Only packages already imported are asked: an instance of a class means its module is loaded, so this never
    imports a Lightning package just to say no.
    """
    from tuner_callbacks.lightning_compat import is_loaded_instance  # not at import: the CLI tools skip Lightning

    return is_loaded_instance(logger, "loggers.mlflow", "MLFlowLogger")


def find_mlflow_logger(loggers: Iterable[Any]) -> Any | None:
    """The first MLflow logger among ``loggers`` (``trainer.loggers``), or None."""
    return next((logger for logger in loggers if is_mlflow_logger(logger)), None)


def logger_tracking_uri(logger: Any) -> str | None:
    """The store an MLflow logger writes to. Lightning keeps it in a private attribute with no public accessor."""
    uri = getattr(logger, "_tracking_uri", None)
    return str(uri) if uri else None
