"""MetricHistory: every logged metric per step and per validation, with statistics, anomalies and exports.

One instance is the run's memory that other callbacks (alerts, early stopping, reports) query instead of keeping
their own: ``history.stats("val/loss", window=5)``, ``history.anomalies("train/loss")``,
``history.latest_anomalies()``. It reads ``trainer.callback_metrics`` only, so it works with any LightningModule.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from typing_extensions import override

from tuner_callbacks import options
from tuner_callbacks._anomalies import detect_anomalies
from tuner_callbacks.lightning_compat import lightning_bases, pl, rank_zero_warn
from tuner_callbacks.mlflow_utils import find_mlflow_logger
from tuner_callbacks.state_keys import adopt_older_state

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORMATS = ("csv", "parquet", "json")
BOUNDINGS = ("downsample", "window")
_FORKS = ("_step", "_epoch")  # Lightning's copies of a metric logged with on_step=True and on_epoch=True
# Device scalars wait here and are converted together: one copy per flush rather than one sync per value.
_FLUSH_ROWS = 1024


@dataclass(frozen=True)
class Anomaly:
    """Example: ``Anomaly(step=120, metric="train/loss", value=9.1, kind="spike", score=14.2)``."""

    step: int
    metric: str
    value: float
    kind: str  # "non_finite", "spike" (far from the trailing median) or "jump" (far bigger change than usual)
    score: float  # robust z-score (spike), change / typical change (jump), inf (non_finite)
    phase: str = "train"


class _Series:
    __slots__ = ("steps", "epochs", "values")

    def __init__(self, steps: list[int] | None = None, epochs: list[int] | None = None,
                 values: list[float] | None = None):
        self.steps, self.epochs, self.values = steps or [], epochs or [], values or []


class MetricHistory(*lightning_bases("Callback")):
    """Records every metric in ``trainer.callback_metrics`` per step, per epoch and per validation.

    Rows have a phase: ``"train"``, the metrics logged since the last recorded step (Lightning keeps the latest
    value of every metric; a new value is a new tensor), every ``every_n_steps`` optimizer steps;
    ``"train_epoch"``, the epoch aggregates of training metrics logged with ``on_epoch=True``; ``"val"``, the
    metrics a validation produced. A metric logged with ``on_step`` and ``on_epoch`` is recorded under its own
    name, not Lightning's ``_step``/``_epoch`` copies. Memory stays bounded at ``max_rows_per_metric`` rows per metric:
    ``"downsample"`` keeps every 2nd row of the oldest half (the whole run's shape, first and last rows kept),
    ``"window"`` keeps only the newest rows. At the end of training the history is written as CSV/Parquet/JSON
    and logged to every MLflow logger under ``metric_history/``. One per Trainer: every instance records every
    metric, so no setting identifies its state, which is checkpointed under the class name alone; a resumed run
    may change ``every_n_steps``, ``bounding`` or ``max_rows_per_metric`` and keeps its history.

    Anomalies: a value is ``non_finite`` (NaN/Inf), a ``spike`` when its robust z-score against the trailing
    ``anomaly_window`` values (median, 1.4826 * MAD) exceeds ``z_threshold``, or else a ``jump`` when its change
    from the previous value exceeds ``jump_factor`` times the typical (median) change in that window -- which
    catches breaks in trending series whose level spread hides them. Each value gets at most one kind, and the
    return from a spike is not a jump. New anomalies go to :meth:`on_anomaly` when values are converted (each
    validation and every ~1000 rows), which warns once per metric and kind.

    Args:
        every_n_steps: record train metrics every N optimizer steps.
        max_rows_per_metric: most rows kept per metric and phase.
        bounding: ``"downsample"`` or ``"window"``, what happens to rows beyond ``max_rows_per_metric``.
        anomaly_window: trailing values a value is judged against.
        min_history: finite trailing values needed before spikes and jumps are judged.
        z_threshold: robust z-score above which a value is a spike.
        jump_factor: change / typical change above which a value is a jump.
        warn_on_anomaly: warn (once per metric and kind) when an anomaly is recorded.
        export_dir: folder for the exports; None: ``<trainer.default_root_dir>/metric_history``.
        export_formats: any of ``"csv"``, ``"parquet"``, ``"json"``; empty: no export at the end.

    Example:
        >>> history = MetricHistory(every_n_steps=10, max_rows_per_metric=5000)
        >>> trainer = pl.Trainer(callbacks=[history])  # doctest: +SKIP
        >>> trainer.fit(model)  # doctest: +SKIP
        >>> history.stats("val/loss", window=5)["slope"]  # doctest: +SKIP
    """

    def __init__(self, every_n_steps: int = 1, max_rows_per_metric: int = 10_000, bounding: str = "downsample",
                 anomaly_window: int = 50, min_history: int = 10, z_threshold: float = 5.0,
                 jump_factor: float = 10.0, warn_on_anomaly: bool = True, export_dir: str | Path | None = None,
                 export_formats: Sequence[str] = FORMATS):
        self.every_n_steps = every_n_steps
        self.max_rows_per_metric = max_rows_per_metric
        self.bounding = bounding
        self.anomaly_window = anomaly_window
        self.min_history = min_history
        self.z_threshold = z_threshold
        self.jump_factor = jump_factor
        self.warn_on_anomaly = warn_on_anomaly
        self.export_dir = export_dir
        self.export_formats = _check_formats("export_formats", export_formats)
        for name, low in (("every_n_steps", 1), ("max_rows_per_metric", 2), ("anomaly_window", 2), ("min_history", 2)):
            options.integer(name, getattr(self, name), low=low)
        options.check("min_history", min_history, min_history <= anomaly_window, f"<= anomaly_window={anomaly_window}")
        options.choice("bounding", bounding, BOUNDINGS)
        for name in ("z_threshold", "jump_factor"):
            options.number(name, getattr(self, name), low=0, low_open=True)
        self._series: dict[tuple[str, str], _Series] = {}  # (phase, metric) -> rows
        self._pending: list[tuple[str, str, int, int, torch.Tensor]] = []  # rows whose value is still a tensor
        self._seen: dict[str, torch.Tensor] = {}  # the last tensor seen per name
        self._before_val: dict[str, torch.Tensor] = {}
        self._last_train_step = -1
        self._warned: set[tuple[str, str, str]] = set()

    # Recording ---------------------------------------------------------------------------------------------

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The first micro-batches of gradient accumulation end before any optimizer step: nothing new to record.
        self._last_train_step = trainer.global_step

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if _skip(trainer) or step == self._last_train_step or step % self.every_n_steps:
            return
        self._last_train_step = step
        self._collect(trainer, "train", self._seen)
        if len(self._pending) >= _FLUSH_ROWS:
            self._flush()

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning computes the epoch aggregates of training metrics (on_epoch=True) just before this hook and
        # overwrites them with step values at the next batch: they are only readable now.
        if not _skip(trainer):
            self._collect(trainer, "train_epoch", self._seen)

    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not _skip(trainer):
            self._before_val = dict(trainer.callback_metrics)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Against the metrics before this validation, not the last recorded ones: train metrics logged in
        # steps that every_n_steps skipped are no validation metrics.
        if not _skip(trainer):
            self._collect(trainer, "val", self._before_val)
            self._before_val = {}
            self._flush()

    def _collect(self, trainer: pl.Trainer, phase: str, reference: dict[str, torch.Tensor]) -> None:
        """Queues the metrics whose value differs from ``reference``'s: those logged since it was taken."""
        metrics, seen, pending = trainer.callback_metrics, self._seen, self._pending
        step, epoch = trainer.global_step, trainer.current_epoch
        for name, value in metrics.items():
            if not isinstance(value, torch.Tensor):  # Lightning stores tensors; another callback may not have
                continue
            old = reference.get(name)
            # data_ptr, not identity: each read of callback_metrics detaches the same stored value anew, while a
            # newly logged value is a new tensor (and ``seen`` holds the old one, so its memory isn't reused).
            if old is not None and old.data_ptr() == value.data_ptr():
                continue
            seen[name] = value
            if not name.endswith(_FORKS) or name.rpartition("_")[0] not in metrics:
                pending.append((phase, name, step, epoch, value))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._export_at_end(trainer)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._export_at_end(trainer)  # the history of a crashed run is what explains the crash

    def on_anomaly(self, anomaly: Anomaly) -> None:
        """Called once for each anomaly as values are recorded; override to react. Warns once per metric+kind."""
        key = (anomaly.phase, anomaly.metric, anomaly.kind)
        if self.warn_on_anomaly and key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(f"MetricHistory: {anomaly.kind} in {anomaly.metric} at step {anomaly.step}: "
                           f"{anomaly.value!r} (score {anomaly.score:.3g}); further ones are not warned about")

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        first_new: dict[tuple[str, str], int] = {}
        for (phase, name, step, epoch, _), value in zip(pending, _to_floats([row[4] for row in pending]), strict=True):
            series = self._series.setdefault((phase, name), _Series())
            first_new.setdefault((phase, name), len(series.values))
            series.steps.append(step)
            series.epochs.append(epoch)
            series.values.append(value)
        for (phase, name), start in first_new.items():
            series = self._series[(phase, name)]
            for anomaly in self._detect(phase, name, series, start, self.z_threshold, self.jump_factor,
                                        self.anomaly_window):
                self.on_anomaly(anomaly)
            self._bound(series)

    def _bound(self, series: _Series) -> None:
        excess = len(series.values) - self.max_rows_per_metric
        if excess <= 0:
            return
        if self.bounding == "window":
            for column in (series.steps, series.epochs, series.values):
                del column[:excess]
            return
        while len(series.values) > self.max_rows_per_metric:  # each pass drops a quarter: amortised O(1) a row
            half = len(series.values) // 2
            for column in (series.steps, series.epochs, series.values):
                column[:half] = column[:half:2]

    # Queries -----------------------------------------------------------------------------------------------

    def names(self, phase: str | None = None) -> list[str]:
        """The recorded metric names (of one phase, or all)."""
        self._flush()
        return sorted({name for p, name in self._series if phase is None or p == phase})

    def dataframe(self, metric: str | None = None, phase: str | None = None) -> pd.DataFrame:
        """Long format: one row per (step, epoch, phase, metric, value), sorted by step."""
        import pandas as pd

        frame = pd.DataFrame(self._columns(metric, phase)).astype({"step": "int64", "epoch": "int64",
                                                                    "value": "float64"})
        return frame.sort_values(["step", "phase", "metric"], kind="stable", ignore_index=True)

    def wide(self, phase: str | None = None) -> pd.DataFrame:
        """One row per step, one column per metric (the last value when one was recorded twice at a step)."""
        return self.dataframe(phase=phase).pivot_table(index="step", columns="metric", values="value",
                                                       aggfunc="last", dropna=False)

    def stats(self, metric: str, window: int | None = None, phase: str | None = None) -> dict[str, float]:
        """mean, median, std, min, max, least-squares slope per step, count of finite values and last value
        over the last ``window`` rows (all when None). Non-finite values are left out of all but ``last``."""
        options.integer("window", window, low=1, optional=True)
        _, series = self._find(metric, phase)
        steps = np.asarray(series.steps[-window:] if window else series.steps, dtype=float)
        values = np.asarray(series.values[-window:] if window else series.values, dtype=float)
        finite = np.isfinite(values)
        s, v = steps[finite], values[finite]
        result = dict.fromkeys(("mean", "median", "std", "min", "max", "slope"), float("nan"))
        if len(v):
            result.update(mean=float(v.mean()), median=float(np.median(v)), std=float(v.std()), min=float(v.min()),
                          max=float(v.max()))
            spread = ((s - s.mean()) ** 2).sum()
            if spread > 0:
                result["slope"] = float(((s - s.mean()) * (v - v.mean())).sum() / spread)
        return {**result, "count": int(len(v)), "last": float(values[-1])}

    def anomalies(self, metric: str, phase: str | None = None, z_threshold: float | None = None,
                  jump_factor: float | None = None, window: int | None = None,
                  since_step: int | None = None) -> list[Anomaly]:
        """The anomalies of one metric (from ``since_step`` on), thresholds defaulting to the constructor's."""
        phase, series = self._find(metric, phase)
        start = 0 if since_step is None else bisect.bisect_left(series.steps, since_step)
        return self._detect(phase, metric, series, start, self.z_threshold if z_threshold is None else z_threshold,
                            self.jump_factor if jump_factor is None else jump_factor, window or self.anomaly_window)

    def latest_anomalies(self) -> list[Anomaly]:
        """The anomalies among the values recorded at the last recorded step, of every metric and phase."""
        self._flush()
        if not self._series:
            return []
        last = max(series.steps[-1] for series in self._series.values())
        return [anomaly for (phase, name), series in self._series.items() if series.steps[-1] == last
                for anomaly in self._detect(phase, name, series, len(series.values) - 1, self.z_threshold,
                                            self.jump_factor, self.anomaly_window)]

    def export(self, folder: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
        """Writes ``metric_history.<format>`` files (long format; JSON is a list of records, NaN/Infinity
        written as such) and returns their paths."""
        formats = _check_formats("formats", formats)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"metric_history.{fmt}" for fmt in formats]
        frame = self.dataframe()
        for fmt, path in zip(formats, paths, strict=True):
            if fmt == "csv":
                frame.to_csv(path, index=False)
            elif fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:  # not pandas' to_json, which writes Inf as null
                path.write_text(json.dumps(frame.to_dict(orient="records")))
        return paths

    # Internals ---------------------------------------------------------------------------------------------

    def _columns(self, metric: str | None, phase: str | None) -> dict[str, list]:
        self._flush()
        columns: dict[str, list] = {"step": [], "epoch": [], "phase": [], "metric": [], "value": []}
        for (p, name), series in self._series.items():
            if (metric is None or name == metric) and (phase is None or p == phase):
                columns["step"] += series.steps
                columns["epoch"] += series.epochs
                columns["phase"] += [p] * len(series.steps)
                columns["metric"] += [name] * len(series.steps)
                columns["value"] += series.values
        return columns

    def _find(self, metric: str, phase: str | None) -> tuple[str, _Series]:
        self._flush()
        found = [(p, s) for (p, name), s in self._series.items() if name == metric and (phase is None or p == phase)]
        if not found:
            raise KeyError(f"MetricHistory has no metric {metric!r} (phase={phase!r}); recorded: {self.names()}")
        if len(found) > 1:
            raise ValueError(f"{metric!r} was recorded in phases {sorted(p for p, _ in found)}: pass `phase`")
        return found[0]

    def _detect(self, phase: str, metric: str, series: _Series, start: int, z_threshold: float,
                jump_factor: float, window: int) -> list[Anomaly]:
        tail = max(0, start - window - 1)  # only the window before start - 1 matters
        found = detect_anomalies(np.asarray(series.values[tail:], dtype=float), start - tail, window, self.min_history,
                        z_threshold, jump_factor)
        return [Anomaly(series.steps[tail + i], metric, series.values[tail + i], kind, score, phase)
                for i, kind, score in found]

    def _export_at_end(self, trainer: pl.Trainer) -> None:
        if _skip(trainer) or not trainer.is_global_zero or not self.export_formats:
            return
        folder = Path(self.export_dir) if self.export_dir else Path(trainer.default_root_dir) / "metric_history"
        try:
            paths = self.export(folder, self.export_formats)
            logger = find_mlflow_logger(trainer.loggers)
            if logger is not None:
                for path in paths:
                    logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="metric_history")
        except Exception:  # the history is a by-product: it must never end (or mask the end of) a run
            log.exception("MetricHistory could not export to %s", folder)

    @override
    def state_dict(self) -> dict[str, Any]:
        self._flush()
        return {"series": [{"phase": phase, "metric": name, "steps": list(s.steps), "epochs": list(s.epochs),
                            "values": list(s.values)} for (phase, name), s in self._series.items()],
                "warned": [list(key) for key in sorted(self._warned)]}

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        adopt_older_state(self, checkpoint)  # keys once held every_n_steps, bounding and max_rows_per_metric

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._series = {(row["phase"], row["metric"]): _Series(list(row["steps"]), list(row["epochs"]),
                                                               list(row["values"]))
                        for row in state_dict.get("series", [])}
        self._warned = {tuple(key) for key in state_dict.get("warned", [])}


def _skip(trainer: pl.Trainer) -> bool:
    return trainer.sanity_checking or bool(trainer.fast_dev_run)


def _check_formats(argument: str, formats: Sequence[str]) -> tuple[str, ...]:
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    for fmt in formats:
        options.choice(argument, fmt, FORMATS)
    return formats


def _to_floats(tensors: list[torch.Tensor]) -> list[float]:
    """One stacked copy per device and dtype instead of one ``.item()`` (and GPU sync) per value."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, tensor in enumerate(tensors):
        groups.setdefault((tensor.device, tensor.dtype), []).append(i)
    values = [0.0] * len(tensors)
    for indices in groups.values():
        stacked = torch.stack([tensors[i].reshape(()) if tensors[i].dim() else tensors[i] for i in indices])
        stacked = stacked.detach().tolist()
        for i, value in zip(indices, stacked, strict=True):
            values[i] = float(value)
    return values
