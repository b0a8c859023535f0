"""One way to open an Optuna storage from a URL, shared by the sweeper and the jobs it launches.

``sqlite:///path.db`` and other SQLAlchemy URLs (``postgresql://user@host/db``) open an ``RDBStorage``;
``journal:/path/to/file`` opens Optuna's journal file storage (safe on network file systems without a
database server). SQLite gets a generous lock timeout: a sweep's parallel jobs write to one file; PostgreSQL a
connect timeout, so an unreachable server fails in seconds rather than at the TCP timeout.

A URL with a password reaches jobs masked (:func:`masked_for_jobs`): Hydra logs and saves every job's overrides.
The sweeper exports the full URL in :data:`STORAGE_ENV`, which the jobs it launches inherit; :func:`open_storage`
given the masked URL takes the password from there.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from tuner_callbacks.mlflow_utils import MASK, redact_url

JOURNAL_PREFIX = "journal:"
STORAGE_ENV = "SMART_TUNER_OPTUNA_STORAGE"  # the full storage URL of the sweep, for the jobs it launches
_SQLITE_LOCK_TIMEOUT_S = 60
_CONNECT_TIMEOUT_S = 10
_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]*@")  # scheme://user:PASSWORD@host


# Storages opened with shared=True, by (process, URL): the jobs a sweeper runs in its own process (Hydra's basic
# launcher) reuse the sweeper's connection pool instead of opening a new engine per trial, which costs a schema check
# of a few dozen round trips and leaves a connection open per trial until the process ends.
_SHARED: dict[tuple[int, str], Any] = {}
_SHARED_LOCK = threading.Lock()


def open_storage(url: str, shared: bool = False) -> Any:
    """An Optuna storage object for ``url``; raises ``ValueError`` naming the URL when it is not one. ``shared``: the
    one storage of this process for ``url`` (a database URL), opened on first use."""
    if shared and isinstance(url, str) and "://" in url:
        key = (os.getpid(), _unmasked(url))
        with _SHARED_LOCK:
            if key not in _SHARED:
                _SHARED[key] = _open(url)
            return _SHARED[key]
    return _open(url)


def _open(url: str) -> Any:
    import optuna

    if not isinstance(url, str) or not url:
        raise ValueError(f"an Optuna storage URL must be a non-empty string, got {url!r}")
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len(JOURNAL_PREFIX):]))
    if "://" not in url:
        raise ValueError(f"storage {redact_url(url)!r} is neither a database URL (sqlite:///file.db, "
                         f"postgresql://...) nor {JOURNAL_PREFIX}<file>")
    url = _unmasked(url)
    engine_kwargs = {}
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": _SQLITE_LOCK_TIMEOUT_S}}
    elif url.startswith("postgresql") and "connect_timeout" not in url:
        engine_kwargs = {"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}}
    from sqlalchemy.exc import DBAPIError, IntegrityError

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except DBAPIError as error:
            # Workers creating Optuna's tables in a new database together: one of them won, the others retry.
            racing = isinstance(error, IntegrityError) or "already exists" in str(error)
            if not racing or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def masked_for_jobs(url: str) -> str:
    """``url`` as jobs get it: with its password masked, the full URL exported in :data:`STORAGE_ENV` (inherited
    by the jobs a launcher starts from this process; set it yourself on machines that do not inherit it). A URL
    without a password (``postgresql://user@db/optuna`` with PGPASSWORD or ~/.pgpass) is passed as it is."""
    if not _PASSWORD.search(url):
        return url
    os.environ[STORAGE_ENV] = url
    return redact_url(url)


def _unmasked(url: str) -> str:
    if MASK not in url:
        return url
    full = os.environ.get(STORAGE_ENV, "")
    if full and redact_url(full) == url:
        return full
    raise ValueError(f"storage {url!r} has its password masked, and {STORAGE_ENV} does not hold the full URL: a "
                     "sweeper exports it for the jobs it launches; on a machine that does not inherit the "
                     "sweeper's environment, set it there (or use a URL without a password and PGPASSWORD/.pgpass)")


# Optuna keeps no pruner in the storage: a job loading the study would get the default MedianPruner, not the one
# the sweep was configured with. The sweeper records its pruner's config here; TrialPruning rebuilds it.
PRUNER_ATTR = "smart_tuner:pruner"
# Class names that studies recorded by older versions hold -> the public name of the class now. They are mapped
# here, by name, so that a job reads such a study without importing the sweeper's package.
RENAMED_TARGETS = {
    "hydra_plugins.smart_optuna_sweeper._pruners.WarmupPruner": "tuner_callbacks.warmup_pruner.WarmupPruner",
}
# Older versions stored a record with inner pruners as {"_target_": this, "config": record}.
_NESTED_RECORD = "hydra.utils.instantiate"


def record_pruner(study: Any, pruner_config: dict[str, Any]) -> None:
    """Stores a pruner's record (see :func:`pruner_from_record`) in the study's system attributes."""
    study._storage.set_study_system_attr(study._study_id, PRUNER_ATTR, pruner_config)


def pruner_from_record(record: Mapping[str, Any]) -> Any:
    """The pruner a record describes: ``{"_target_": "package.module.Class", **kwargs}``, where a keyword argument
    that is a record itself (a wrapped pruner) is built first. Records hold public names (``optuna.pruners...``,
    ``tuner_callbacks...``); the old names in :data:`RENAMED_TARGETS` are read as the classes they became.

    Raises:
        ValueError: naming the ``_target_`` when the record has none or it names no importable class.

    Example:
        >>> pruner_from_record({"_target_": "tuner_callbacks.warmup_pruner.WarmupPruner", "n_warmup_steps": 300,
        ...                     "wrapped_pruner": {"_target_": "optuna.pruners.WilcoxonPruner"}})  # doctest: +ELLIPSIS
        <tuner_callbacks.warmup_pruner.WarmupPruner object at ...>
    """
    config = dict(record)
    if config.get("_target_") == _NESTED_RECORD and set(config) == {"_target_", "config"}:
        config = dict(config["config"])
    target = config.pop("_target_", None)
    if not isinstance(target, str) or "." not in target:
        raise ValueError(f"a pruner record needs a _target_ naming a class (module.Class), got {record!r}")
    target = RENAMED_TARGETS.get(target, target)
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"pruner record: _target_ {target!r} cannot be imported: {error}") from error
    arguments = {key: pruner_from_record(value) if isinstance(value, Mapping) and "_target_" in value else value
                 for key, value in config.items()}
    return cls(**arguments)


def load_study_with_pruner(study_name: str, storage_url: str) -> Any:
    """The study, with the pruner its sweep recorded (Optuna's default when none was)."""
    import optuna

    storage = open_storage(storage_url, shared=True)
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError as error:
        raise ValueError(f"no study {study_name!r} in {storage_url}") from error
    record = storage.get_study_system_attrs(study_id).get(PRUNER_ATTR)
    pruner = pruner_from_record(record) if record else None
    return optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)


def load_trial(study_name: str, storage_url: str, number: int) -> Any:
    """Trial ``number`` of a study, as an ``optuna.trial.Trial`` that reports to the sweep's pruner: what a job
    launched by the sweeper uses to report, to be pruned, and to record its run."""
    import optuna

    study = load_study_with_pruner(study_name, storage_url)
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(number))
    return optuna.trial.Trial(study, trial_id)
