"""Two CPU processes under DDP; SIGTERM reaches rank 1 alone, in the middle of step 5.

Run by tests/tuner_callbacks/test_preemption.py. Each rank writes OUT_DIR/rank<N>.json with the step its
PreemptionCheckpoint saved at and the last step it finished; the checkpoint is OUT_DIR/ckpt/last.ckpt.
"""

import json
import os
import signal
import sys
from pathlib import Path

import pytorch_lightning as pl

from tests.helpers.toy_module import ToyRegression, toy_loader
from tuner_callbacks.preemption import PreemptionCheckpoint


class SignalRankOne(pl.Callback):
    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_rank == 1 and trainer.global_step == 4:
            os.kill(os.getpid(), signal.SIGTERM)


class Report(pl.Callback):
    def __init__(self):
        self.stopped_at = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.stopped_at = trainer.global_step

    def on_exception(self, trainer, pl_module, exception):
        preemption = next(c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint))
        (OUT_DIR / f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"last_saved_step": preemption.last_saved_step, "stopped_at": self.stopped_at}))


if __name__ == "__main__":
    OUT_DIR = Path(sys.argv[1])
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=50, logger=False, enable_progress_bar=False,
        enable_model_summary=False, val_check_interval=3, check_val_every_n_epoch=None, limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[SignalRankOne(), Report(), pl.callbacks.ModelCheckpoint(dirpath=OUT_DIR / "ckpt", save_last=True),
                   PreemptionCheckpoint()],
    )
    trainer.fit(ToyRegression(), toy_loader(n=64), toy_loader(n=16))
