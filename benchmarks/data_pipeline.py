"""Data pipeline speed and padding on the built-in eSpeak dataset.

Measures one pass over the training loader of :class:`Tacotron2DataModule` twice: cold (an empty mel cache:
every wav is read and its mel computed) and warm (every mel read from the cache), and prints batches/s with
the warm/cold ratio. Then the padding fraction of the batches -- the share of padded mel frames the model
computes for nothing -- with length bucketing and with plain shuffled batches, over the same epoch.

Run:
    python benchmarks/data_pipeline.py                      # built-in dataset, 300 utterances
    python benchmarks/data_pipeline.py --size 100 --batch-size 16 --num-workers 2
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from tacotron2_lightning.data.builtin import default_cache_root
from tacotron2_lightning.data.datamodule import Tacotron2DataModule
from tacotron2_lightning.data.sampler import LengthBucketBatchSampler, padding_fraction


def one_epoch(data: Tacotron2DataModule) -> tuple[int, float]:
    start = time.perf_counter()
    batches = sum(1 for _ in data.train_dataloader())
    return batches, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=300, help="built-in dataset size (default 300)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--dataset-cache", type=Path, default=default_cache_root(),
                        help="where the built-in dataset is generated once (default: the user cache)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as mel_cache:
        def datamodule() -> Tacotron2DataModule:
            # Mels go to a fresh folder so that the cold pass really computes them all.
            data = Tacotron2DataModule(cache_dir=args.dataset_cache, mel_cache_dir=mel_cache, val_size=0.05,
                                       batch_size=args.batch_size, num_workers=args.num_workers,
                                       builtin={"size": args.size})
            data.prepare_data()
            data.setup("fit")
            return data

        cold_batches, cold_seconds = one_epoch(datamodule())
        warm_batches, warm_seconds = one_epoch(datamodule())

    data = datamodule()
    lengths = [item.n_frames for item in data.train_set.items]
    bucketed = list(LengthBucketBatchSampler(lengths, args.batch_size, seed=0))
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()
    plain = [shuffled[i: i + args.batch_size] for i in range(0, len(shuffled), args.batch_size)]

    print(f"built-in dataset: {len(lengths)} training utterances, batch {args.batch_size}, "
          f"{args.num_workers} worker(s), {torch.get_num_threads()} torch thread(s)")
    print(f"{'pass':<22}{'batches':>9}{'seconds':>10}{'batches/s':>12}")
    print(f"{'cold (no mel cache)':<22}{cold_batches:>9}{cold_seconds:>10.2f}{cold_batches / cold_seconds:>12.1f}")
    print(f"{'warm (mel cache)':<22}{warm_batches:>9}{warm_seconds:>10.2f}{warm_batches / warm_seconds:>12.1f}")
    print(f"warm/cold speed ratio: {cold_seconds / warm_seconds:.2f}x")
    print(f"{'batching':<22}{'padding fraction':>18}")
    bucketed_padding, plain_padding = padding_fraction(lengths, bucketed), padding_fraction(lengths, plain)
    print(f"{'length buckets':<22}{bucketed_padding:>18.3f}")
    print(f"{'random batches':<22}{plain_padding:>18.3f}")
    print(f"padding ratio (random/bucketed): {plain_padding / max(bucketed_padding, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
