"""One Tacotron2Module training step under DDP on 2 CPU processes (gloo).

Run by tests/tacotron2_lightning/test_module.py.

Each rank trains on a different batch; after the step every rank writes a checksum of its weights to
OUT_DIR/rank<N>.json so the test can check gradients were averaged (the weights agree).
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import repeated_loader, synthetic_batch, tiny_config


class PerRankData(pl.LightningDataModule):
    def train_dataloader(self):
        return repeated_loader(synthetic_batch(seed=self.trainer.global_rank), length=1)


class WriteChecksum(pl.Callback):
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module):
        total = sum(float(p.detach().double().sum()) for p in pl_module.parameters())
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps({
            "checksum": total, "world_size": trainer.world_size, "step": trainer.global_step,
        }))


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    torch.manual_seed(0)
    module = Tacotron2Module(tiny_config(), health_utterances=0)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[WriteChecksum(out_dir)],
    )
    trainer.fit(module, datamodule=PerRankData())
