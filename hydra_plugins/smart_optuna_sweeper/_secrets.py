"""No secret typed on the command line reaches a file: Hydra saves every override of a sweep in each trial's
``.hydra/hydra.yaml`` (and the task's in ``config.yaml`` and ``overrides.yaml``), and its launchers log them.

The sweeper's own options (``hydra.sweeper.storage``, ``hydra.sweeper.tracking_uri``, ``hydra.sweeper.alerts.token``)
are read once, when the sweeper is built; their secrets are then masked in Hydra's record of the command line before
any job is composed from it, so every file Hydra writes holds the masked value. The sweeper keeps the real values,
and hands jobs the storage URL through :data:`~tuner_callbacks.optuna_storage.STORAGE_ENV`.

Any other override holding a secret (``logger.mlflow.tracking_uri=postgresql://u:pw@db/mlflow``,
``callbacks.telegram_alerts.token=123:abc``, ``hydra.launcher...``) is something a job or a launcher needs in clear:
it is refused before anything is written, with the ways to pass it that keep it off the disk (``PGPASSWORD`` or
``~/.pgpass`` for a database, an environment variable read with ``${oc.env:NAME}``).

A secret is a URL with a password (``scheme://user:PASSWORD@``), a URL with a bare token as its user
(``https://TOKEN@host``), or any literal value of a key named like a secret (``token``, ``secret``, ``password``,
``api_key``). Interpolations (``${oc.env:DB_URL}``) are not secrets: Hydra saves them unresolved.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.smart_optuna_sweeper._errors import SweepError
from tuner_callbacks.mlflow_utils import is_secret_key, redact_url

_SWEEPER = "hydra.sweeper."
_INTERPOLATION = re.compile(r"\$\{[^}]*\}")
_PASSWORD_URL = re.compile(r"://[^/@\s:]*:[^/@\s]+@")  # scheme://user:PASSWORD@host
_TOKEN_URL = re.compile(r"https?://[^/@\s:]+@")  # https://TOKEN@host (a database's user@host is no secret)
_EMPTY = ("", "null", "None", "''", '""')
# A secret key inside a dict value: hydra.sweeper.alerts={token: abc}
_NESTED_SECRET = re.compile(r"(token|secret|password|api_key)\w*['\"]?\s*:\s*(?!null\b|None\b)['\"]?[^\s,}'\"]",
                            re.IGNORECASE)


def _split(override: str) -> tuple[str, str, str] | None:
    """``(prefix, key, value)`` of ``[+|++|~]key=value``; None for an override without a value (``~key``)."""
    match = re.fullmatch(r"(\+\+|\+|~)?([^=]+)=(.*)", override, flags=re.DOTALL)
    return (match[1] or "", match[2].strip(), match[3]) if match else None


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def holds_secret(key: str, value: str) -> bool:
    """Whether the override ``key=value`` puts a secret into the config in clear."""
    literal = _INTERPOLATION.sub("", _unquoted(value))
    if _PASSWORD_URL.search(literal) or _TOKEN_URL.search(literal) or _NESTED_SECRET.search(literal):
        return True
    return is_secret_key(key.rsplit(".", 1)[-1]) and literal.strip() not in _EMPTY and literal == _unquoted(value)


def _masked(value: str) -> str:
    literal = _unquoted(value)
    if redact_url(literal) != literal:
        return redact_url(literal)
    return "***"


def _refusal(where: str, key: str) -> SweepError:
    return SweepError(
        f"{where} override {key}=... holds a secret (a password in a URL, or a token), which Hydra would save in "
        "clear in every trial's .hydra/ files and its launcher would log. Pass it through the environment instead: "
        "for a database, a URL without the password (postgresql+psycopg://user@host/db) and PGPASSWORD or "
        f"~/.pgpass; otherwise put the value in an environment variable and write '{key}=${{oc.env:NAME}}' "
        "(quoted, so that the shell leaves it alone), which Hydra saves as written")


def guard_secrets(config: DictConfig) -> list[str]:
    """Masks the secrets of ``hydra.sweeper.*`` overrides in ``config`` (Hydra's record of the command line and the
    sweeper's node), so that no job composed from it holds them; refuses any other override holding a secret with a
    :class:`SweepError` saying how to pass it. Returns the keys masked. Call it once the sweeper has read its options
    and before any job is composed."""
    hydra_overrides = list(OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False))
    task_overrides = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    for override in task_overrides:
        parts = _split(str(override))
        if parts and holds_secret(parts[1], parts[2]):
            raise _refusal("The", parts[1])
    masked, rewritten = [], []
    for override in hydra_overrides:
        parts = _split(str(override))
        if parts is None or not holds_secret(parts[1], parts[2]):
            rewritten.append(override)
            continue
        prefix, key, value = parts
        if not key.startswith(_SWEEPER) or _NESTED_SECRET.search(_INTERPOLATION.sub("", value)):
            raise _refusal("The Hydra", key)
        shown = _masked(value)
        rewritten.append(f"{prefix}{key}='{shown}'")
        masked.append(key)
        with read_write(config), open_dict(config):
            OmegaConf.update(config, key, shown, merge=False, force_add=True)
    if masked:
        with read_write(config.hydra.overrides):
            config.hydra.overrides.hydra = rewritten
    return masked

