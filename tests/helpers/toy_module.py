"""A tiny non-Tacotron LightningModule, to show the tuner callbacks work in anyone's Trainer.

``ToyRegression`` fits y = 3x + 1. It logs ``train/loss`` every step and ``val/loss`` every validation and
has plain attributes a scheduler can drive (``loss_weight``, ``dropout``). With ``scripted`` it logs given
values instead of its real validation metrics: ``scripted={"val/loss": [1.0, 0.9, ...]}`` logs the i-th value
at the i-th validation, which turns an early-stopping rule into a table of sequences and expected stops.
"""

from __future__ import annotations

import importlib

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset


class ToyRegressionBase:
    """The toy's steps, with no Lightning base: :class:`ToyRegression` and :func:`toy_regression_on` add one."""

    def __init__(self, learning_rate: float = 0.05, scripted: dict[str, list[float]] | None = None):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.learning_rate = learning_rate
        self.loss_weight = 1.0
        self.dropout = 0.0
        self.scripted = scripted or {}
        self.validations = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        prediction = torch.nn.functional.dropout(self.layer(x), self.dropout, self.training)
        loss = self.loss_weight * torch.nn.functional.mse_loss(prediction, y)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        if not self.scripted:
            self.log("val/loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or not self.scripted:
            return
        for name, values in self.scripted.items():
            self.log(name, float(values[min(self.validations, len(values) - 1)]))
        self.validations += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate, weight_decay=0.0)


class ToyRegression(ToyRegressionBase, pl.LightningModule):
    """The toy on ``pytorch_lightning``."""


def toy_regression_on(package: str) -> type:
    """The toy's class on ``package`` (``"pytorch_lightning"`` or ``"lightning.pytorch"``)."""
    if package == "pytorch_lightning":
        return ToyRegression
    return type("ToyRegression", (ToyRegressionBase, importlib.import_module(package).LightningModule), {})


def toy_loader(n: int = 32, batch_size: int = 8, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, 3 * x + 1), batch_size=batch_size)


def toy_trainer(tmp_path, callbacks, package: str = "pytorch_lightning", **kwargs) -> pl.Trainer:
    """A quiet CPU trainer of ``package`` that validates every ``val_check_interval`` steps (default: every step)."""
    defaults = dict(accelerator="cpu", default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, max_steps=20, val_check_interval=1,
                    check_val_every_n_epoch=None, num_sanity_val_steps=0, limit_val_batches=1)
    return importlib.import_module(package).Trainer(callbacks=callbacks, **{**defaults, **kwargs})


class CollectingLogger(Logger):
    """A logger that keeps every ``log_metrics`` call as ``(step, metrics)``, for asserting what callbacks log."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self):
        return "collecting"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.calls.append((step, dict(metrics)))
