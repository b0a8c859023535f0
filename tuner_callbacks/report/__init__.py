"""The sweep report: one self-contained HTML file about an Optuna study (``python -m tuner_callbacks.report``).

- :mod:`~tuner_callbacks.report.build`: :func:`build_report` and the command.
- :mod:`~tuner_callbacks.report.data`: trial rows and the training pruning saved, from the study alone.
- :mod:`~tuner_callbacks.report.plots`: Optuna's plots as embedded images.
- :mod:`~tuner_callbacks.report.media`: the best trial's alignment plots, mel plot and audio.
- :mod:`~tuner_callbacks.report.html`: the page's building blocks.
"""

from __future__ import annotations

from tuner_callbacks._lazy import lazy_exports

_WHERE = {name: "tuner_callbacks.report.build" for name in ("REPORT_TAG", "build_report", "load_study",
                                                             "log_report", "main")}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
