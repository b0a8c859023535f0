"""What the alignment prior and the forward-sum loss cost per training step, as a ratio measured in one run.

Two ``Tacotron2Module``s of the default recipe's model (``conf/model/small.yaml``: sizes, r=2, guided attention,
weighted gate) with the same weights take turns on the same padded batch (A, B, A, B, ...): A without the prior and
the forward-sum loss (the recipe before issue 22), B with both at weight 1. A step is the module's
``training_step`` (prior look-up, forward, every loss term) + backward + clipping at 1.0 + Adam. Each pair gives a
ratio B time / A time; the median ratio is the figure, robust to other work on the machine. The first pair (which
also fills the prior's cache) is left out.

Example:
    python benchmarks/alignment_cost.py --batch-size 16 --pairs 15
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks.throughput import make_batch  # noqa: E402
from tacotron2_lightning.module import Tacotron2Module  # noqa: E402


def small_module(**options) -> Tacotron2Module:
    recipe = OmegaConf.load(ROOT / "conf/model/small.yaml")
    keys = ("learning_rate", "weight_decay", "guided_attention_weight", "guided_attention_sigma",
            "gate_positive_weight", "attention_prior_scaling", "align_loss_start_step")
    module = Tacotron2Module(OmegaConf.to_container(recipe.model_config), health_utterances=0,
                             **{key: recipe[key] for key in keys}, **options)
    module.log = lambda *args, **kwargs: None  # no Trainer: logging is not what is measured
    return module


def make_step(module: Tacotron2Module, batch):
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, weight_decay=1e-6)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        module.training_step(batch, 0).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--text-length", type=int, default=60)
    parser.add_argument("--mel-length", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    without = small_module(attention_prior_weight=0.0, align_loss_weight=0.0)
    with_both = small_module(attention_prior_weight=1.0, align_loss_weight=1.0)
    with_both.load_state_dict(without.state_dict())
    batch = make_batch(args.batch_size, args.text_length, args.mel_length, without.config.n_mel_channels,
                       torch.device("cpu"))
    steps = {"without": make_step(without.train(), batch), "with": make_step(with_both.train(), batch)}
    ratios, times = [], {"without": [], "with": []}
    for pair in range(args.pairs + 1):
        torch.manual_seed(pair)
        a = steps["without"]()
        torch.manual_seed(pair)
        b = steps["with"]()
        if pair == 0:
            continue
        times["without"].append(a)
        times["with"].append(b)
        ratios.append(b / a)
    print(f"small model, batch {args.batch_size}, text {args.text_length}, mel {args.mel_length}, "
          f"{args.threads} threads, {args.pairs} interleaved pairs")
    print(f"  without prior and loss: median {statistics.median(times['without']):.3f} s/step")
    print(f"  with prior and loss:    median {statistics.median(times['with']):.3f} s/step")
    print(f"alignment_cost: ratio={statistics.median(ratios):.3f} (with / without, median of per-pair ratios; "
          f"min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
