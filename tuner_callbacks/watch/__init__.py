"""``python -m tuner_callbacks.watch``: a live terminal table of MLflow runs while they train.

- :mod:`~tuner_callbacks.watch.cli`: the command, and the functions it is made of (``snapshot``, ``render``,
  ``watch``), for notebooks and tests.
- :mod:`~tuner_callbacks.watch.rows`: one run's row: state in words, step rate, trends.
- :mod:`~tuner_callbacks.watch.store`: connecting to an MLflow store, failing fast when it is not there.
"""

from __future__ import annotations

from tuner_callbacks._lazy import lazy_exports

_WHERE = {name: "tuner_callbacks.watch.cli" for name in ("DEFAULT_METRICS", "main", "render", "snapshot", "watch")}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
