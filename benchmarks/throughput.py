"""Training throughput of Tacotron2's decoder path against NVIDIA's per-step loop, in one process.

A training step is forward + NVIDIA's loss + backward + gradient clipping at 1.0 + Adam(lr 1e-3,
weight_decay 1e-6) on a synthetic padded batch in NVIDIA's collate layout, sorted by text length, the shortest
utterance 80% as long as the longest. Two models with the same weights take turns, baseline then ours
(A, B, A, B, ...): the baseline is ``ReferenceTacotron2`` (NVIDIA's loop, one ``decode_step`` per decoder
step), ours is ``Tacotron2``. Each pair gives a ratio baseline time / our time; the median ratio is the figure,
robust to other work on the machine. "mel frames/s" counts real (unpadded) frames, from each arm's median time.

``--peak-memory`` also runs one default-size step at batch 16 (``--memory-batch``) per arm, each in its own
subprocess, and prints its peak resident memory (CPU: VmHWM) or peak allocated GPU memory (cuda).

``--roofline`` puts each training figure against the machine's limit: it counts one step's FLOPs
(``torch.utils.flop_counter.FlopCounterMode``, forward, loss and backward), measures the sustained rate of a
large fp32 ``torch.mm`` on the same threads in the same run, prints each arm's achieved GFLOP/s and its fraction of
that rate, saves a ``torch.profiler`` table of each arm's top operators beside the output (``--profile-dir``),
and ends with one line per arm that begins with ``roofline:``.

``--inference`` times free-running synthesis instead (the encoder, the decoder loop until the step cap, the
postnet), ours against NVIDIA's per-step inference loop, at ``--inference-batch`` sizes, and prints the real-time
factor of each.

Examples:
    python benchmarks/throughput.py --configs small --batch-size 4 --pairs 3
    python benchmarks/throughput.py --configs default small --batch-size 4 16 64 --peak-memory
    python benchmarks/throughput.py --configs small default --batch-size 4 16 64 --roofline
    python benchmarks/throughput.py --configs small --inference --inference-batch 1 8
    python benchmarks/throughput.py --device cuda --precision bf16-mixed --batch-size 32 --mel-length 800
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.model import Tacotron2
from tacotron2_lightning.reference_decoder import ReferenceTacotron2

log = logging.getLogger("benchmarks.throughput")

ARMS = {"baseline": ReferenceTacotron2, "ours": Tacotron2}
# --precision: Lightning's names -> the autocast dtype (None: float32 throughout).
AUTOCAST_DTYPES = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def make_config(name: str) -> Tacotron2Config:
    if name == "default":
        return Tacotron2Config()  # NVIDIA's hparams: ~28M parameters
    # conf/model/small.yaml: the model every default run and sweep trial trains, two frames per decoder step.
    return Tacotron2Config(symbols_embedding_dim=128, encoder_embedding_dim=128, attention_rnn_dim=256,
                           decoder_rnn_dim=256, prenet_dim=128, attention_dim=64, postnet_embedding_dim=128,
                           n_frames_per_step=2)


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


def make_train_step(model: Tacotron2, batch, precision: str, device: torch.device):
    """A closure running one full training step of ``model`` on ``batch`` and returning its wall time (s).

    ``precision`` as Lightning names it: "32"; "bf16-mixed" (forward under bfloat16 autocast); "16-mixed"
    (float16 autocast and a gradient scaler, as Lightning's mixed precision does)."""
    text, text_lengths, mel, gate, mel_lengths = batch
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    dtype = AUTOCAST_DTYPES[precision]
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def train_step() -> float:
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            mel_out, mel_postnet, gate_out, _ = model(text, text_lengths, mel, mel_lengths)
        loss = tacotron2_loss(mel_out, mel_postnet, gate_out, mel, gate).total
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        sync()
        return time.perf_counter() - start

    return train_step


def twin_models(config: Tacotron2Config, device: torch.device) -> dict[str, Tacotron2]:
    """Baseline and ours with the same weights, in train() mode."""
    torch.manual_seed(0)
    ours = Tacotron2(config)
    baseline = ReferenceTacotron2(config)
    baseline.load_state_dict(ours.state_dict(), strict=True)
    return {"baseline": baseline.to(device).train(), "ours": ours.to(device).train()}


def compare(name: str, batch_size: int, args: argparse.Namespace, device: torch.device) -> dict:
    """Interleaved training steps of baseline and ours: per-pair ratios, their median, frames/s of each."""
    config = make_config(name)
    models = twin_models(config, device)
    torch.manual_seed(0)
    batch = make_batch(batch_size, args.text_length, args.mel_length, config.n_mel_channels, device)
    steps = {arm: make_train_step(model, batch, args.precision, device) for arm, model in models.items()}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {arm: [] for arm in steps}
    for pair in range(args.pairs):
        for arm, step in steps.items():  # baseline first, then ours: A, B, A, B, ...
            times[arm].append(step())
        log.info("%s batch %d pair %d: baseline %.3f s, ours %.3f s", name, batch_size, pair,
                 times["baseline"][-1], times["ours"][-1])
    ratios = [a / b for a, b in zip(times["baseline"], times["ours"], strict=True)]
    frames = int(batch[4].sum())
    return {
        "config": name, "batch": batch_size, "text_len": args.text_length, "mel_len": args.mel_length,
        "ratios": ratios, "median_ratio": statistics.median(ratios),
        **{f"{arm}_s_per_step": statistics.median(t) for arm, t in times.items()},
        **{f"{arm}_mel_frames_per_s": frames / statistics.median(t) for arm, t in times.items()},
    }


def compare_inference(name: str, batch_size: int, args: argparse.Namespace, device: torch.device) -> dict:
    """Interleaved free-running synthesis (encoder, decoder loop, postnet) of a text batch by baseline and ours.

    Both decode exactly ``--inference-steps`` steps: the gate's bias is set far negative in both (an untrained
    gate fires at random), so the two arms do the same work. The real-time factor is seconds of compute per
    second of audio (22.05 kHz, hop 256).
    """
    config = make_config(name)
    models = {arm: model.eval() for arm, model in twin_models(config, device).items()}
    for model in models.values():
        with torch.no_grad():
            model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    torch.manual_seed(0)
    text, text_lengths, *_ = make_batch(batch_size, args.text_length, 1, config.n_mel_channels, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def synthesize(model) -> float:
        sync()
        start = time.perf_counter()
        model.inference(text, text_lengths, max_decoder_steps=args.inference_steps, warn_at_cap=False)
        sync()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        for model in models.values():
            synthesize(model)
    times: dict[str, list[float]] = {arm: [] for arm in models}
    for _ in range(args.pairs):
        for arm, model in models.items():
            times[arm].append(synthesize(model))
    ratios = [a / b for a, b in zip(times["baseline"], times["ours"], strict=True)]
    audio_s = batch_size * args.inference_steps * config.n_frames_per_step * 256 / 22050
    return {
        "config": name, "batch": batch_size, "text_len": args.text_length, "steps": args.inference_steps,
        "ratios": ratios, "median_ratio": statistics.median(ratios), "audio_s": audio_s,
        **{f"{arm}_s": statistics.median(t) for arm, t in times.items()},
        **{f"{arm}_rtf": statistics.median(t) / audio_s for arm, t in times.items()},
        **{f"{arm}_ms_per_step": 1e3 * statistics.median(t) / args.inference_steps for arm, t in times.items()},
    }


def gemm_rate(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """The machine's sustained fp32 GEMM rate (GFLOP/s): the median of ``repeats`` ``size``-cubed ``torch.mm``."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def roofline(name: str, batch_size: int, result: dict, rate: float, args: argparse.Namespace,
             device: torch.device) -> list[dict]:
    """Each arm's FLOPs per training step, achieved GFLOP/s (from ``result``'s median step time) and fraction
    of the GEMM ``rate``; writes a profiler table of each arm's top operators into ``--profile-dir``."""
    config = make_config(name)
    models = twin_models(config, device)
    torch.manual_seed(0)
    batch = make_batch(batch_size, args.text_length, args.mel_length, config.n_mel_channels, device)
    rows = []
    for arm, model in models.items():
        step = make_train_step(model, batch, args.precision, device)
        with FlopCounterMode(display=False) as counter:
            step()
        gflop = counter.get_total_flops() / 1e9
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as profiler:
            step()
        sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        table = profiler.key_averages().table(sort_by=sort_by, row_limit=args.profile_rows)
        path = Path(args.profile_dir) / f"profile_{name}_b{batch_size}_{arm}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(table)
        seconds = result[f"{arm}_s_per_step"]
        rows.append({"config": name, "batch": batch_size, "arm": arm, "gflop_per_step": gflop, "s_per_step": seconds,
                     "achieved_gflops": gflop / seconds, "gemm_gflops": rate,
                     "fraction": gflop / seconds / rate, "profile": str(path)})
    return rows


def peak_memory_of_one_step(arm: str, config_name: str, batch_size: int, args: argparse.Namespace) -> float:
    """Peak memory (MiB) of one training step of ``arm`` (run in this process, meant to be a fresh one)."""
    device = torch.device(args.device)
    config = make_config(config_name)
    torch.manual_seed(0)
    model = ARMS[arm](config).to(device).train()
    batch = make_batch(batch_size, args.text_length, args.mel_length, config.n_mel_channels, device)
    make_train_step(model, batch, args.precision, device)()
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # VmHWM, not ru_maxrss: a child's ru_maxrss keeps the high-water mark of the parent it was forked from.
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def peak_memory(args: argparse.Namespace) -> dict[str, float]:
    """Each arm's peak memory for a default-size step at ``--memory-batch``, each in a fresh subprocess."""
    peaks = {}
    for arm in ARMS:
        command = [sys.executable, __file__, "--memory-arm", arm, "--device", args.device,
                   "--memory-batch", str(args.memory_batch), "--text-length", str(args.text_length),
                   "--mel-length", str(args.mel_length), "--precision", args.precision]
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        peaks[arm] = float(result.stdout.strip().splitlines()[-1])
    return peaks


def print_pairs(label: str, result: dict) -> dict:
    """Print one comparison's per-pair ratios and their median as they come; returns ``result``."""
    print(f"{label} batch {result['batch']}: baseline/ours per pair "
          f"{' '.join(f'{r:.2f}' for r in result['ratios'])}, median {result['median_ratio']:.2f}x", flush=True)
    return result


def print_table(results: list[dict]) -> None:
    columns = [("config", "config", "{}"), ("batch", "batch", "{}"), ("text len", "text_len", "{}"),
               ("mel len", "mel_len", "{}"),
               ("baseline s/step", "baseline_s_per_step", "{:.3f}"), ("ours s/step", "ours_s_per_step", "{:.3f}"),
               ("baseline mel frames/s", "baseline_mel_frames_per_s", "{:.0f}"),
               ("ours mel frames/s", "ours_mel_frames_per_s", "{:.0f}"),
               ("median ratio", "median_ratio", "{:.2f}x")]
    print_rows(columns, results)


def print_inference_table(results: list[dict]) -> None:
    columns = [("config", "config", "{}"), ("batch", "batch", "{}"), ("steps", "steps", "{}"),
               ("audio s", "audio_s", "{:.1f}"),
               ("baseline ms/step", "baseline_ms_per_step", "{:.2f}"), ("ours ms/step", "ours_ms_per_step", "{:.2f}"),
               ("baseline RTF", "baseline_rtf", "{:.3f}"), ("ours RTF", "ours_rtf", "{:.3f}"),
               ("median ratio", "median_ratio", "{:.2f}x")]
    print_rows(columns, results)


def print_rows(columns: list[tuple[str, str, str]], results: list[dict]) -> None:
    rows = [[title for title, _, _ in columns]]
    rows += [[fmt.format(r[key]) for _, key, fmt in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=["default", "small"], default=["default", "small"])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[4])
    parser.add_argument("--text-length", type=int, default=60)
    parser.add_argument("--mel-length", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=5, help="timed (baseline, ours) pairs; the median ratio counts")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--precision", choices=list(AUTOCAST_DTYPES), default="32",
                        help="32, or autocast the forward: bf16-mixed, 16-mixed (with a gradient scaler)")
    parser.add_argument("--roofline", action="store_true",
                        help="also count FLOPs, measure the GEMM rate, profile each arm; 'roofline:' lines at the end")
    parser.add_argument("--profile-dir", default="benchmark-profiles", help="where --roofline writes its tables")
    parser.add_argument("--profile-rows", type=int, default=25, help="operators per --roofline profile table")
    parser.add_argument("--inference", action="store_true",
                        help="time free-running synthesis (ours against NVIDIA's inference loop) instead of training")
    parser.add_argument("--inference-batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--inference-steps", type=int, default=200, help="decoder steps per synthesis")
    parser.add_argument("--peak-memory", action="store_true",
                        help="also measure each arm's peak memory, default config at --memory-batch")
    parser.add_argument("--memory-batch", type=int, default=16)
    parser.add_argument("--memory-arm", choices=list(ARMS), help=argparse.SUPPRESS)  # the subprocess's job
    parser.add_argument("--json", metavar="PATH", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.pairs < 1 or args.warmup < 0:
        parser.error(f"--pairs must be >= 1 and --warmup >= 0, got {args.pairs} and {args.warmup}")
    if min(args.batch_size) < 1 or min(args.inference_batch) < 1:
        parser.error(f"--batch-size and --inference-batch values must be >= 1, got {args.batch_size} and "
                     f"{args.inference_batch}")
    if args.inference_steps < 1:
        parser.error(f"--inference-steps must be >= 1, got {args.inference_steps}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.memory_arm:
        print(peak_memory_of_one_step(args.memory_arm, "default", args.memory_batch, args))
        return

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)
    log.info("device %s, %d threads, precision %s", device, torch.get_num_threads(), args.precision)
    if args.inference:
        inference = []
        for name in dict.fromkeys(args.configs):
            for batch_size in args.inference_batch:
                inference.append(print_pairs(f"{name} synthesis", compare_inference(name, batch_size, args, device)))
        print_inference_table(inference)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "threads": torch.get_num_threads(), "inference": inference}, f,
                          indent=2)
        return
    rate = gemm_rate(device) if args.roofline else None
    results, roofline_rows = [], []
    for name in dict.fromkeys(args.configs):
        for batch_size in args.batch_size:
            result = print_pairs(name, compare(name, batch_size, args, device))
            results.append(result)
            if args.roofline:
                roofline_rows += roofline(name, batch_size, result, rate, args, device)
    print_table(results)
    peaks = None
    if args.peak_memory:
        peaks = peak_memory(args)
        unit = "allocated GPU MiB" if device.type == "cuda" else "MiB peak RSS"
        print(f"peak memory, default config, batch {args.memory_batch}, one step per fresh process: "
              + ", ".join(f"{arm} {mib:.0f} {unit}" for arm, mib in peaks.items()))
    if args.roofline:
        rate_now = gemm_rate(device)  # again at the end: how steady the machine was
        print(f"GEMM rate: {rate:.0f} GFLOP/s before the steps, {rate_now:.0f} after (2048^3 fp32 torch.mm, "
              f"{torch.get_num_threads()} threads); profiles in {args.profile_dir}/")
        for row in roofline_rows:
            print(f"roofline: config={row['config']} batch={row['batch']} arm={row['arm']} "
                  f"gflop_per_step={row['gflop_per_step']:.1f} achieved_gflops={row['achieved_gflops']:.1f} "
                  f"fraction={row['fraction']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "threads": torch.get_num_threads(), "results": results,
                       "peak_memory_mib": peaks, "roofline": roofline_rows}, f, indent=2)


if __name__ == "__main__":
    main()
