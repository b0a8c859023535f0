"""What the tuner callbacks cost a Tacotron2 training step: all of them on versus none, in one run.

Both arms train the same ``Tacotron2Module`` in a Lightning ``Trainer`` on a repeated synthetic batch in
NVIDIA's collate layout (batch 4, text 60, mel 300 by default, as ``throughput.py``), with a CSV logger and
a validation every ``--val-every`` steps. The "on" arm adds every tuner callback, each with its rules
switched on: ``ParamScheduler`` (guided-attention decay and an lr warm-up), ``SmartEarlyStopping``
(patience, gradient, plateau, overfitting, divergence, alignment; warm-up long enough that none stops
the run), ``MetricHistory`` (anomaly detection) and ``TrialPruning`` against an in-memory Optuna study
(a pruner that never prunes, so both arms train the same number of steps) and ``AlignmentGuard`` (every
validation healthy: its snapshot, in memory and on disk, is taken at each).

Arms alternate in rounds (off, on, on, off, ...) so that drift in the machine's load hits both alike.
Two figures are printed:

* end to end: median wall time of a training step (time between consecutive batch starts, so every
  callback's batch hooks are in it) on / off, and the mean time per step including validations;
* in hooks: the time spent inside the tuner callbacks' own hooks, measured around each hook call, per
  training step and per validation, as a fraction of the "off" step time. On a noisy shared machine this is
  the figure to trust: the end-to-end ratio swings by a few percent from one run to the next.

With ``--alerts-delay SECONDS`` the "on" arm also sends ``TelegramAlerts`` (a summary with a photo at every
validation, new bests, start and end) to the test Bot API server (``tests/bot_api_server.py``, in a process
of its own) answering each request that many seconds late; the photo is a ready-made PNG handed over as
``ValidationMedia`` hands its plots. The one-off waits outside training steps are printed too: the token
check at start and the flush at the end (bounded by ``--flush-timeout``).

With ``--health-decoding`` the script measures, instead, what a validation's free-running health decoding costs
against the training between two validations (``--health-val-every`` steps), for an untrained model of
``conf/model/small.yaml``'s sizes (r=2; prenet dropout on, as in validation; its gate set never to fire, as early
in training). ``--health-utterances`` texts of a validation batch shaped like the built-in data (text 40-80
symbols, mel 150-300 frames, sorted longest text first as the collate function sorts) are decoded the old way (one
int cap, 2 x the longest target, every step decoding the whole batch: the decoder loop of commit 58acca8) and the
new way (per-utterance caps, 2 x each utterance's own target, finished utterances dropped from the batch); the int
cap with that compaction is timed too, to show what each part buys. Training steps (forward, NVIDIA's loss,
backward, clipping, Adam) on a batch of ``--health-batch-size`` such utterances run in the same rounds, on a copy
of the model so that the decoded one stays untrained.

Examples:
    python benchmarks/callback_overhead.py --configs small
    python benchmarks/callback_overhead.py --health-decoding --rounds 5 --steps-per-round 4
    python benchmarks/callback_overhead.py --configs small --alerts-delay 2
    python benchmarks/callback_overhead.py --configs default small --rounds 2 --steps-per-round 4
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
import pytorch_lightning as pl
import torch
import yaml
from throughput import make_batch, make_config

from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.loss import tacotron2_loss
from tacotron2_lightning.model import Tacotron2, decoder_steps
from tacotron2_lightning.module import Tacotron2Module
from tacotron2_lightning.reference_decoder import ReferenceTacotron2
from tuner_callbacks import MetricHistory, ParamScheduler, SmartEarlyStopping
from tuner_callbacks.alignment_guard import AlignmentGuard
from tuner_callbacks.pruning import TrialPruning

log = logging.getLogger("benchmarks.callback_overhead")

_HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_validation_end", "on_validation_epoch_end",
          "on_train_epoch_end", "on_fit_start", "on_train_start", "on_train_end", "on_before_optimizer_step")


class StepTimer(pl.Callback):
    """Wall time between consecutive training batch starts: one full step, every callback's hooks included."""

    def __init__(self) -> None:
        self.intervals: list[float] = []
        self._last: float | None = None
        self.validations = 0
        self.total_s = 0.0  # the whole fit, set by run_arm

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.intervals.append(now - self._last)
        self._last = now

    def on_validation_end(self, trainer, pl_module) -> None:
        self.validations += 1


class HookClock:
    """Accumulates the time spent in the hooks of the callbacks it wraps, split by training vs validation."""

    def __init__(self) -> None:
        self.seconds = {"train": 0.0, "validation": 0.0, "other": 0.0}

    def wrap(self, callback: pl.Callback) -> pl.Callback:
        for name in _HOOKS:
            hook = getattr(callback, name)
            # Only hooks the callback overrides: the base class's empty ones cost nothing to measure.
            if getattr(type(callback), name) is getattr(pl.Callback, name):
                continue
            kind = "train" if "batch" in name or "optimizer" in name else (
                "validation" if "validation" in name else "other")
            setattr(callback, name, self._timed(hook, kind))
        return callback

    def _timed(self, hook: Callable, kind: str) -> Callable:
        @functools.wraps(hook)
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                self.seconds[kind] += time.perf_counter() - start

        return timed


class StaticMedia(pl.Callback):
    """Hands the same PNG to alerts at every validation, as ValidationMedia hands its fresh plot."""

    def __init__(self, png: Path):
        self.png, self.latest = png, {}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.latest = {"step": trainer.global_step, "alignment": self.png}


def timed_alerts(base_url: str, token: str, chat_id: int, delay: float, flush_timeout: float) -> pl.Callback:
    """TelegramAlerts whose setup (the token check) and teardown (the flush) are timed: they run once, outside
    the training steps, so HookClock does not count them."""
    from tuner_callbacks.alerts import TelegramAlerts

    class TimedAlerts(TelegramAlerts):
        def setup(self, trainer, pl_module, stage) -> None:
            started = time.perf_counter()
            super().setup(trainer, pl_module, stage)
            self.setup_s = time.perf_counter() - started

        def teardown(self, trainer, pl_module, stage) -> None:
            started = time.perf_counter()
            super().teardown(trainer, pl_module, stage)
            self.teardown_s = time.perf_counter() - started

    return TimedAlerts(token=token, chat_id=chat_id, base_url=base_url, every_n_validations=1,
                       check_timeout_s=delay + 5, timeout_s=delay + 5, flush_timeout_s=flush_timeout)


def png_file(folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.imshow(torch.rand(80, 120).numpy(), aspect="auto", origin="lower")
    path = folder / "alignment.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


@contextlib.contextmanager
def bot_api_server(delay: float):
    """The test Bot API server in a process of its own (Telegram is another machine: parsing the uploads must not
    take the training process's time), answering each request ``delay`` seconds late; yields
    (base_url, token, chat_id)."""
    code = ("import sys, time; from tests.bot_api_server import CHAT_ID, TOKEN, FakeBotApi\n"
            f"api = FakeBotApi().start(); api.delay_s = {delay!r}\n"
            "print(api.base_url, TOKEN, CHAT_ID, flush=True); sys.stdin.read()")
    root = Path(__file__).resolve().parents[1]
    server = subprocess.Popen([sys.executable, "-c", code], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        base_url, token, chat_id = server.stdout.readline().split()
        yield base_url, token, int(chat_id)
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def tuner_callbacks(max_steps: int, root: Path) -> list[pl.Callback]:
    """Every tuner callback with its rules on, none of them stopping the run within ``max_steps``.

    ``AlignmentGuard`` is told every validation is healthy (threshold 0), so it takes its snapshot, in memory and
    on disk under ``root``, at each one: what it costs a healthy run."""
    callbacks: list[pl.Callback] = [
        ParamScheduler({
            "guided_attention": {"target": "module.guided_attention_weight", "strategy": "cosine", "start": 5.0,
                                 "end": 0.0, "delay_steps": 2, "total_steps": 10 * max_steps},
            "lr": {"target": "optimizer.lr", "strategy": "warmup", "warmup_start": 0.0, "warmup_steps": 2,
                   "total_steps": 10 * max_steps, "end": 1e-5},
        }),
        SmartEarlyStopping(
            monitor="val/loss", patience=1000, min_steps=10 * max_steps,
            gradient={"window": 3, "min_slope": 1e-9}, plateau={"window": 3, "min_relative_spread": 1e-9},
            overfitting={"train_monitor": "train/loss", "growing_checks": 1000},
            divergence={"factor": 1e9},
            floor={"monitor": "val/alignment_score", "min_value": 0.0, "after_steps": 10 * max_steps}),
        MetricHistory(export_formats=[]),
        AlignmentGuard("val/alignment_score", threshold=0.0, snapshot_dir=root / "alignment_guard"),
    ]
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    callbacks.append(TrialPruning(monitor="val/loss", trial=study.ask()))
    return callbacks


def run_arm(module: Tacotron2Module, batch: tuple, steps: int, val_every: int, extra: list[pl.Callback],
            root: Path) -> StepTimer:
    timer = StepTimer()
    loader = torch.utils.data.DataLoader([batch] * (steps + 1), batch_size=None)
    val_loader = torch.utils.data.DataLoader([batch], batch_size=None)
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=steps, val_check_interval=val_every, limit_val_batches=1,
        num_sanity_val_steps=0, callbacks=[timer, *extra], logger=pl.loggers.CSVLogger(root),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        gradient_clip_val=1.0, default_root_dir=root, log_every_n_steps=1)
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=val_loader)
    timer.total_s = time.perf_counter() - started
    return timer


def benchmark(name: str, args: argparse.Namespace, root: Path, bot_api: tuple[str, str, int] | None) -> dict:
    torch.manual_seed(0)
    config = make_config(name)
    batch = make_batch(args.batch_size, args.text_length, args.mel_length, config.n_mel_channels,
                       torch.device("cpu"))
    # Health metrics decode a little at each validation; capped short, as they are the same in both arms.
    module = Tacotron2Module(model_config=config, guided_attention_weight=5.0, health_utterances=1,
                             health_cap_ratio=0.2)
    steps = args.steps_per_round
    timers: dict[str, list[StepTimer]] = {"off": [], "on": []}
    clock = HookClock()
    png = png_file(root) if bot_api else None
    alerts: list[pl.Callback] = []
    for round_index in range(args.rounds):
        order = ("off", "on") if round_index % 2 == 0 else ("on", "off")
        for arm in order:
            extra = [clock.wrap(c) for c in tuner_callbacks(steps, root)] if arm == "on" else []
            if arm == "on" and bot_api:
                alerts.append(timed_alerts(*bot_api, args.alerts_delay, args.flush_timeout))
                extra += [StaticMedia(png), clock.wrap(alerts[-1])]
            timers[arm].append(run_arm(module, batch, steps, args.val_every, extra,
                                       root / f"{name}-{arm}-{round_index}"))
            log.info("%s round %d %s: %.2f s", name, round_index, arm, timers[arm][-1].total_s)

    def step_median(arm: str) -> float:
        # The first interval of each fit holds Lightning's start-up work: left out of the step figures.
        return statistics.median(t for timer in timers[arm] for t in timer.intervals[1:])

    def per_step_total(arm: str) -> float:
        return sum(timer.total_s for timer in timers[arm]) / (steps * len(timers[arm]))

    on_steps = steps * len(timers["on"])
    validations = sum(timer.validations for timer in timers["on"])
    off = step_median("off")
    hooks_per_step = clock.seconds["train"] / on_steps
    hooks_per_validation = clock.seconds["validation"] / max(validations, 1)
    # What the hooks add to one step, validations spread over the steps between them.
    hooks_amortised = hooks_per_step + clock.seconds["validation"] / on_steps + clock.seconds["other"] / on_steps
    return {
        "config": name, "off_step_s": off, "on_step_s": step_median("on"),
        "end_to_end_ratio": step_median("on") / off,
        "with_validation_ratio": per_step_total("on") / per_step_total("off"),
        "hooks_ms_per_step": 1e3 * hooks_per_step, "hooks_ms_per_validation": 1e3 * hooks_per_validation,
        "hooks_ratio": (off + hooks_amortised) / off,
        "alerts_setup_s": statistics.median(a.setup_s for a in alerts) if alerts else None,
        "alerts_flush_s": statistics.median(a.teardown_s for a in alerts) if alerts else None,
    }


def builtin_like_batch(batch_size: int, n_mel_channels: int, r: int, generator: torch.Generator) -> tuple:
    """NVIDIA's padded layout with the built-in data's spread of lengths: text 40-80 symbols, mel ~3.75 frames per
    symbol (150-300), sorted longest text first; mel padded to a multiple of r."""
    text_lengths = torch.randint(40, 81, (batch_size,), generator=generator).sort(descending=True).values
    spread = 1.0 + 0.1 * (2 * torch.rand(batch_size, generator=generator) - 1)
    mel_lengths = (text_lengths * 3.75 * spread).round().long().clamp(150, 300)
    max_mel = int(decoder_steps(int(mel_lengths.max()), r)) * r
    text = torch.zeros(batch_size, int(text_lengths.max()), dtype=torch.long)
    mel = torch.zeros(batch_size, n_mel_channels, max_mel)
    gate = torch.zeros(batch_size, max_mel)
    for i, (n_text, n_mel) in enumerate(zip(text_lengths.tolist(), mel_lengths.tolist(), strict=True)):
        text[i, :n_text] = torch.randint(12, 64, (n_text,), generator=generator)
        mel[i, :, :n_mel] = torch.randn(n_mel_channels, n_mel, generator=generator)
        gate[i, n_mel - 1:] = 1.0
    return text, text_lengths, mel, gate, mel_lengths


def health_decoding(args: argparse.Namespace) -> dict:
    """Seconds of one validation's free-running decoding per arm, and of one training step (medians)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    small = Path(__file__).resolve().parents[1] / "conf" / "model" / "small.yaml"
    settings = yaml.safe_load(small.read_text())
    config = Tacotron2Config.from_dict(settings["model_config"])
    r = config.n_frames_per_step
    model = Tacotron2(config).eval()  # validation decodes in eval(); the prenet's dropout stays on
    # Random weights may fire the gate at the first step; early in training it learns "go on" long before "stop",
    # so every utterance runs to its cap: the case this measures.
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    # Decoding before per-utterance caps and compaction: NVIDIA's loop, one int cap, the whole batch every step.
    old_model = ReferenceTacotron2(config).eval()
    old_model.load_state_dict(model.state_dict())

    train_model = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(train_model.parameters(), lr=1e-3, weight_decay=1e-6)
    train_batch = builtin_like_batch(args.health_batch_size, config.n_mel_channels, r, generator)
    # The module decodes the first texts of the first validation batch, trimmed to their longest.
    text, text_lengths, _, _, mel_lengths = builtin_like_batch(args.health_batch_size, config.n_mel_channels, r,
                                                               generator)
    count = args.health_utterances
    text_lengths, mel_lengths = text_lengths[:count], mel_lengths[:count]
    text = text[:count, : int(text_lengths.max())]
    # The module's cap: health_cap_ratio x the longest target, at most max_decoder_steps; or per utterance.
    ratio = settings["health_cap_ratio"]
    int_cap = min(config.max_decoder_steps, decoder_steps(math.ceil(ratio * int(mel_lengths.max())), r))
    caps = decoder_steps(torch.ceil(ratio * mel_lengths).long(), r).clamp(max=config.max_decoder_steps)

    def train_step() -> None:
        mel_text, mel_text_lengths, mel, gate, mel_out_lengths = train_batch
        optimizer.zero_grad(set_to_none=True)
        mel_out, mel_postnet, gate_out, _ = train_model(mel_text, mel_text_lengths, mel, mel_out_lengths)
        tacotron2_loss(mel_out, mel_postnet, gate_out, mel, gate).total.backward()
        torch.nn.utils.clip_grad_norm_(train_model.parameters(), 1.0)
        optimizer.step()

    arms: dict[str, Callable[[], torch.Tensor]] = {
        "old": lambda: old_model.inference(text, text_lengths, max_decoder_steps=int_cap, warn_at_cap=False).lengths,
        "int_compacted": lambda: model.inference(text, text_lengths, max_decoder_steps=int_cap,
                                                 warn_at_cap=False).lengths,
        "new": lambda: model.inference(text, text_lengths, max_decoder_steps=caps, warn_at_cap=False).lengths,
    }
    seconds: dict[str, list[float]] = {name: [] for name in (*arms, "train_step")}
    frames: dict[str, list[int]] = {name: [] for name in arms}
    capped: dict[str, list[int]] = {name: [] for name in arms}
    train_step()  # warm-up, untimed
    for decode in arms.values():
        decode()
    for round_index in range(args.rounds):
        order = [*arms, "train_step"]
        for name in order if round_index % 2 == 0 else reversed(order):
            if name == "train_step":
                for _ in range(args.steps_per_round):
                    started = time.perf_counter()
                    train_step()
                    seconds[name].append(time.perf_counter() - started)
                continue
            started = time.perf_counter()
            lengths = arms[name]()
            seconds[name].append(time.perf_counter() - started)
            frames[name].append(int(lengths.sum()))
            arm_caps = torch.full_like(caps, int_cap) if name != "new" else caps
            capped[name].append(int((lengths == arm_caps * r).sum()))
        log.info("health decoding round %d: %s", round_index,
                 ", ".join(f"{name} {values[-1]:.3f} s" for name, values in seconds.items()))
    result = {name: statistics.median(values) for name, values in seconds.items()}
    # Each round's arms ran back to back: their ratio within a round shrugs off the load that shifts between rounds.
    result["paired"] = {name: statistics.median(a / b for a, b in zip(seconds[name], seconds["old"], strict=True))
                        for name in ("int_compacted", "new")}
    result.update(int_cap=int_cap, caps=caps.tolist(), mel_lengths=mel_lengths.tolist(),
                  frames={name: statistics.median(v) for name, v in frames.items()},
                  capped={name: statistics.median(v) for name, v in capped.items()})
    return result


def print_health_decoding(r: dict, args: argparse.Namespace) -> None:
    between = args.health_val_every * r["train_step"]
    count = args.health_utterances
    print(f"health decoding, model=small (untrained, gate never firing), {count} utterances (mel {r['mel_lengths']}) "
          f"from a batch of {args.health_batch_size}; medians of {args.rounds} interleaved rounds")
    print(f"training: {r['train_step']:.3f} s/step -> {args.health_val_every} steps between validations "
          f"{between:.1f} s")
    labels = {"old": f"old: int cap {r['int_cap']} steps, no compaction",
              "int_compacted": f"int cap {r['int_cap']} steps, compaction",
              "new": f"new: per-utterance caps {r['caps']} steps, compaction"}
    for name, label in labels.items():
        print(f"  {label}: {r[name]:.3f} s per validation = {100 * r[name] / between:.2f}% of "
              f"{args.health_val_every} training steps ({r['frames'][name]:.0f} frames, {r['capped'][name]:.0f}/"
              f"{count} at their cap)")
    print(f"new / old: {r['new'] / r['old']:.3f} ({r['old'] / r['new']:.2f}x faster), median of per-round ratios "
          f"{r['paired']['new']:.3f}; int cap with compaction / old: {r['int_compacted'] / r['old']:.3f}, per round "
          f"{r['paired']['int_compacted']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=["default", "small"], default=["default", "small"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--text-length", type=int, default=60)
    parser.add_argument("--mel-length", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternating order")
    parser.add_argument("--steps-per-round", type=int, default=6, help="training steps per arm and round")
    parser.add_argument("--val-every", type=int, default=3, help="validate every N training steps")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--alerts-delay", type=float, default=None,
                        help="also send Telegram alerts to a test Bot API server answering this many seconds late")
    parser.add_argument("--flush-timeout", type=float, default=5.0, help="TelegramAlerts.flush_timeout_s")
    parser.add_argument("--health-decoding", action="store_true",
                        help="measure the validation's free-running health decoding instead (see above)")
    parser.add_argument("--health-batch-size", type=int, default=16, help="training and validation batch size")
    parser.add_argument("--health-utterances", type=int, default=8, help="texts decoded free-running per validation")
    parser.add_argument("--health-val-every", type=int, default=50, help="training steps between two validations")
    args = parser.parse_args()
    if args.health_decoding:
        if args.rounds < 1 or args.steps_per_round < 1 or not 1 <= args.health_utterances <= args.health_batch_size:
            parser.error("need --rounds >= 1, --steps-per-round >= 1 and 1 <= --health-utterances <= "
                         "--health-batch-size")
    elif args.rounds < 1 or args.steps_per_round < 2 or not 1 <= args.val_every <= args.steps_per_round:
        parser.error("need --rounds >= 1, --steps-per-round >= 2 and 1 <= --val-every <= --steps-per-round")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("pytorch_lightning", "lightning.pytorch", "tacotron2_lightning.model"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.health_decoding:
        log.info("%d torch threads", torch.get_num_threads())
        print_health_decoding(health_decoding(args), args)
        return
    log.info("%d torch threads; batch %d, text %d, mel %d", torch.get_num_threads(), args.batch_size,
             args.text_length, args.mel_length)

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        bot_api = None
        if args.alerts_delay is not None:
            bot_api = stack.enter_context(bot_api_server(args.alerts_delay))
            for noisy in ("httpx", "tuner_callbacks.alerts"):
                logging.getLogger(noisy).setLevel(logging.ERROR)
        results = [benchmark(name, args, tmp, bot_api) for name in dict.fromkeys(args.configs)]
    for r in results:
        print(f"{r['config']}: step {r['off_step_s']:.3f} s off, {r['on_step_s']:.3f} s on; "
              f"end-to-end ratio {r['end_to_end_ratio']:.3f} (steps), {r['with_validation_ratio']:.3f} "
              f"(with validations); in tuner hooks {r['hooks_ms_per_step']:.2f} ms/step + "
              f"{r['hooks_ms_per_validation']:.1f} ms/validation -> hooks ratio {r['hooks_ratio']:.4f} "
              f"(target <= 1.01)")
        if r["alerts_setup_s"] is not None:
            print(f"{r['config']}: with alerts to a server answering in {args.alerts_delay:g} s; once per run: token "
                  f"check {r['alerts_setup_s']:.2f} s, final flush {r['alerts_flush_s']:.2f} s (limit "
                  f"{args.flush_timeout:g} s)")


if __name__ == "__main__":
    main()
