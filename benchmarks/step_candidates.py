"""Candidate speed-ups of a training step that change no maths (or only below 1e-38), each measured against the
step without it, interleaved in one process (A, B, A, B, ...): the median per-pair ratio is the figure.

Candidates (issue 24's list, those that are switches rather than rewrites):

* ``adam-fused``: ``torch.optim.Adam(fused=True)`` against PyTorch's default (``foreach``) implementation;
* ``flush-denormal``: ``torch.set_flush_denormal(True)`` (denormal floats, below ~1.2e-38, read as zero);
* ``threads-1``: one intra-op thread instead of the machine's, the step's small operators free of OpenMP's
  hand-offs (the 2-core machine's question: does the second core help this model at all?).

The step is ``benchmarks/throughput.py``'s (forward, NVIDIA's loss, backward, clipping, Adam) on ours, the
``small`` config (the default run's model) unless ``--config default``.

Example:
    python benchmarks/step_candidates.py --batch-size 16 --pairs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_batch, make_config  # noqa: E402  (a sibling script)

from tacotron2_lightning.loss import tacotron2_loss  # noqa: E402
from tacotron2_lightning.model import Tacotron2  # noqa: E402


def train_step_closure(model: Tacotron2, batch, optimizer: torch.optim.Optimizer, before=None, after=None):
    text, text_lengths, mel, gate, mel_lengths = batch

    def step() -> float:
        if before:
            before()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs = model(text, text_lengths, mel, mel_lengths)
        tacotron2_loss(*outputs[:3], mel, gate).total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        elapsed = time.perf_counter() - start
        if after:
            after()
        return elapsed

    return step


def arms(candidate: str, config_name: str, batch, threads: int):
    """(without, with) step closures for one candidate, on twin models with the same weights."""
    config = make_config(config_name)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(Tacotron2(config).train())

    def adam(model, **kwargs):
        return torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6, **kwargs)

    if candidate == "adam-fused":
        return (train_step_closure(models[0], batch, adam(models[0])),
                train_step_closure(models[1], batch, adam(models[1], fused=True)))
    if candidate == "flush-denormal":
        return (train_step_closure(models[0], batch, adam(models[0])),
                train_step_closure(models[1], batch, adam(models[1]), before=lambda: torch.set_flush_denormal(True),
                                   after=lambda: torch.set_flush_denormal(False)))
    if candidate == "threads-1":
        return (train_step_closure(models[0], batch, adam(models[0])),
                train_step_closure(models[1], batch, adam(models[1]), before=lambda: torch.set_num_threads(1),
                                   after=lambda: torch.set_num_threads(threads)))
    raise ValueError(f"unknown candidate {candidate!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", default=["adam-fused", "flush-denormal", "threads-1"],
                        choices=["adam-fused", "flush-denormal", "threads-1"])
    parser.add_argument("--config", choices=["small", "default"], default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--text-length", type=int, default=60)
    parser.add_argument("--mel-length", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    batch = make_batch(args.batch_size, args.text_length, args.mel_length, 80, torch.device("cpu"))
    print(f"{args.config} config, batch {args.batch_size}, {threads} threads; ratio = without / with (> 1: faster)")
    for candidate in args.candidates:
        without, with_candidate = arms(candidate, args.config, batch, threads)
        without(), with_candidate()  # warm-up
        times = {"without": [], "with": []}
        for _ in range(args.pairs):
            times["without"].append(without())
            times["with"].append(with_candidate())
        ratios = [a / b for a, b in zip(times["without"], times["with"], strict=True)]
        print(f"{candidate}: without {statistics.median(times['without']):.3f} s/step, with "
              f"{statistics.median(times['with']):.3f} s/step, per-pair ratios "
              f"{' '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f}x", flush=True)


if __name__ == "__main__":
    main()
