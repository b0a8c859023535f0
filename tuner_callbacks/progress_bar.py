"""StepProgressBar: Lightning's RichProgressBar, with a train description that fits runs bounded in steps."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from tuner_callbacks.lightning_compat import lightning_bases, pl


class StepProgressBar(*lightning_bases("callbacks.RichProgressBar")):
    """A ``RichProgressBar`` whose train description reads ``Epoch 3 · step 1200/5000``.

    Lightning's bar writes ``Epoch N/<max_epochs - 1>``, which is ``Epoch 3/-2`` for the usual step-bounded run
    (``max_epochs=-1, max_steps=5000``). This one leaves the epoch total out when there is no epoch limit
    (``max_epochs`` -1 or None) and, when ``max_steps`` is set, adds the optimizer step against it, renewed at
    every batch: that limit is what ends such a run. Everything else is Lightning's (same arguments).

    Example:
        >>> trainer = pl.Trainer(max_epochs=-1, max_steps=5000, callbacks=[StepProgressBar(leave=True)])
    """

    def train_description(self, trainer: pl.Trainer) -> str:
        """The train bar's description for the trainer's epoch and step, e.g. ``Epoch 3 · step 1200/5000``."""
        description = f"Epoch {trainer.current_epoch}"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:  # -1 or None: no epoch limit to show
            description += f"/{trainer.max_epochs - 1}"  # Lightning's: epochs count from 0
        if trainer.max_steps is not None and trainer.max_steps > 0:  # -1: no step limit
            description += f" · step {trainer.global_step}/{trainer.max_steps}"
        # Padded as Lightning pads it, so the bar does not shift when the validation description takes its place.
        return f"{description:{len(self.validation_description)}}"

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._describe(trainer)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._describe(trainer)

    def _describe(self, trainer: pl.Trainer) -> None:
        # Replaces the description Lightning just set; the bar's next refresh (at the next batch) shows it.
        if self.is_disabled or self.progress is None or self.train_progress_bar_id is None:
            return
        text, style = self.train_description(trainer), self.theme.description
        self.progress.update(self.train_progress_bar_id, description=f"[{style}]{text}" if style else text)
