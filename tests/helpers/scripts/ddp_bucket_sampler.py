"""Two epochs under DDP on 2 CPU processes with a LengthBucketBatchSampler.

Run by tests/tacotron2_lightning/test_sampler.py.

The DataLoader is built before ``trainer.fit`` (so before the process group exists) and passed directly,
the case where Lightning cannot capture the batch sampler's arguments itself. Each rank writes the
indices of every batch it trained on, per epoch, and the sampler's arguments to OUT_DIR/rank<N>.json.
"""

import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from tacotron2_lightning.data.sampler import LengthBucketBatchSampler

N_ITEMS = 64
BATCH_SIZE = 4
BUCKET_SIZE = 16
SEED = 7


def lengths() -> list[int]:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(1, 200, (N_ITEMS,), generator=generator).tolist()


class Items(torch.utils.data.Dataset):
    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, index):
        return {"index": index, "length": float(self.values[index])}


class Recorder(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(batch["index"].tolist())
        return self.layer(batch["length"].float().unsqueeze(1) / 200).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self):
        batch_sampler = self.trainer.train_dataloader.batch_sampler
        (OUT_DIR / f"rank{self.global_rank}.json").write_text(json.dumps({
            "world_size": self.trainer.world_size,
            "lengths": lengths(), "batch_size": BATCH_SIZE, "bucket_size": BUCKET_SIZE, "seed": SEED,
            "sampler_world": list(batch_sampler.world()),
            "sampler_type": type(batch_sampler).__name__,
            "seen": {str(epoch): batches for epoch, batches in self.seen.items()},
        }))


if __name__ == "__main__":
    OUT_DIR = Path(sys.argv[1])
    sampler = LengthBucketBatchSampler(lengths(), BATCH_SIZE, bucket_size=BUCKET_SIZE, seed=SEED)
    loader = torch.utils.data.DataLoader(Items(lengths()), batch_sampler=sampler)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Recorder(), train_dataloaders=loader)
