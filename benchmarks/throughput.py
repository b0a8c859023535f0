"""Training and inference throughput of Tacotron2 on synthetic data, for NVIDIA's default size and a small one.

Training: one step is forward + NVIDIA's loss + backward + gradient clipping at 1.0 + Adam(lr 1e-3,
weight_decay 1e-6) on a synthetic padded batch in NVIDIA's collate layout, sorted by text length, the
shortest utterance 80% as long as the longest. "mel frames/s" counts real (unpadded) frames.
Inference: free-running ``model.inference`` in eval() on one utterance, run for a fixed number of decoder
steps (random weights give no reliable stop gate); frames/s counts the frames produced.
Every figure is the median over the timed steps, after the warm-up ones.

Examples:
    python benchmarks/throughput.py --configs small --steps 3
    python benchmarks/throughput.py --configs default small --steps 2 --warmup 1 --json results.json
    python benchmarks/throughput.py --device cuda --precision bf16 --batch-size 32 --mel-length 800
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Callable

import torch

from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.model import Tacotron2

log = logging.getLogger("benchmarks.throughput")

# Recorded reference, not measured here: NVIDIA/tacotron2 (commit 185cd24e) itself, timed by the project on the
# 2-core CPU machines it is developed on (the same batch and lengths as this script's defaults).
# 158 = 4 * 300 / 7.6 counts padded frames, so it is not strictly comparable with "train mel frames/s" below.
NVIDIA_REFERENCE = ("NVIDIA/tacotron2, default model, batch 4, text 60, mel 300, 2 CPU cores: "
                    "~7.6 s/step (158 mel frames/s)")


def make_config(name: str) -> Tacotron2Config:
    if name == "default":
        return Tacotron2Config()  # NVIDIA's hparams: ~28M parameters
    # The size the project's notes say aligns on CPU.
    return Tacotron2Config(symbols_embedding_dim=128, encoder_embedding_dim=128, attention_rnn_dim=256,
                           decoder_rnn_dim=256, prenet_dim=128, attention_dim=64, postnet_embedding_dim=128)


def make_batch(batch_size: int, text_length: int, mel_length: int, n_mel_channels: int, device: torch.device):
    """NVIDIA's padded layout: (text (B, N), input_lengths, mel (B, C, T), gate (B, T), output_lengths)."""
    shrink = torch.linspace(1.0, 0.8, batch_size)  # sorted, longest first, shortest at 80%
    text_lengths = (shrink * text_length).round().long().clamp(min=1)
    mel_lengths = (shrink * mel_length).round().long().clamp(min=1)
    text = torch.zeros(batch_size, text_length, dtype=torch.long)
    mel = torch.zeros(batch_size, n_mel_channels, mel_length)
    gate = torch.zeros(batch_size, mel_length)
    for i, (n_text, n_mel) in enumerate(zip(text_lengths.tolist(), mel_lengths.tolist(), strict=True)):
        text[i, :n_text] = torch.randint(12, 64, (n_text,))
        mel[i, :, :n_mel] = torch.randn(n_mel_channels, n_mel)
        gate[i, n_mel - 1:] = 1.0
    return tuple(t.to(device) for t in (text, text_lengths, mel, gate, mel_lengths))


def median_seconds(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``steps`` calls of fn after ``warmup`` untimed ones."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    config = make_config(name)
    model = Tacotron2(config).to(device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    text, text_lengths, mel, gate, mel_lengths = make_batch(
        args.batch_size, args.text_length, args.mel_length, config.n_mel_channels, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            mel_out, mel_postnet, gate_out, _ = model(text, text_lengths, mel, mel_lengths)
        tacotron2_loss(mel_out, mel_postnet, gate_out, mel, gate).total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    model.train()
    train_s = median_seconds(train_step, args.steps, args.warmup, device)

    sequence = torch.randint(12, 64, (1, args.text_length), device=device)
    produced = []

    def inference_step() -> None:
        with autocast:
            lengths = model.inference(sequence, max_decoder_steps=args.inference_steps).lengths
        produced.append(int(lengths.sum()))

    model.eval()
    inference_s = median_seconds(inference_step, args.steps, args.warmup, device)
    frames = statistics.median(produced)  # the gate may fire early with random weights
    if frames < args.inference_steps:
        log.info("%s: the random gate stopped inference at %s of %d frames", name, frames, args.inference_steps)
    return {
        "config": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "batch": args.batch_size, "text_len": args.text_length, "mel_len": args.mel_length,
        "train_s_per_step": train_s, "train_steps_per_s": 1.0 / train_s,
        "train_mel_frames_per_s": int(mel_lengths.sum()) / train_s,
        "inference_frames": frames, "inference_frames_per_s": frames / inference_s,
    }


def print_table(results: list[dict]) -> None:
    columns = [("config", "config", "{}"), ("params (M)", "params_m", "{:.2f}"), ("batch", "batch", "{}"),
               ("text len", "text_len", "{}"), ("mel len", "mel_len", "{}"),
               ("train s/step", "train_s_per_step", "{:.3f}"), ("train steps/s", "train_steps_per_s", "{:.3f}"),
               ("train mel frames/s", "train_mel_frames_per_s", "{:.0f}"),
               ("inference frames/s", "inference_frames_per_s", "{:.0f}")]
    rows = [[title for title, _, _ in columns]]
    rows += [[fmt.format(r[key]) for _, key, fmt in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=["default", "small"], default=["default", "small"])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--text-length", type=int, default=60)
    parser.add_argument("--mel-length", type=int, default=300)
    parser.add_argument("--inference-steps", type=int, default=200, help="max_decoder_steps at inference")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32", help="bf16: autocast the forward")
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tacotron2_lightning.model").setLevel(logging.ERROR)  # "Reached max_decoder_steps"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    log.info("device %s, %d threads, precision %s", device, torch.get_num_threads(), args.precision)

    results = [benchmark(name, args, device) for name in dict.fromkeys(args.configs)]
    print_table(results)
    by_name = {r["config"]: r for r in results}
    if {"default", "small"} <= by_name.keys():
        small, default = by_name["small"], by_name["default"]
        print(f"small/default speed ratio (same run): train "
              f"{default['train_s_per_step'] / small['train_s_per_step']:.2f}x, inference "
              f"{small['inference_frames_per_s'] / default['inference_frames_per_s']:.2f}x")
    print(f"Recorded reference figure (not measured in this run): {NVIDIA_REFERENCE}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "threads": torch.get_num_threads(), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
