"""What Telegram alerts cost a Tacotron2 training step when Telegram answers slowly: alerts on versus off.

The "on" arm adds ``TelegramAlerts`` (a summary with a photo at every validation, new-best alerts, start and
end) pointed at the test Bot API server (``tests/bot_api_server.py``) answering each request ``--delay``
seconds late, so every send is slow and the queue backs up. The photo is a ready-made PNG handed over the way
``ValidationMedia`` does (its ``latest`` dict): drawing is the media callback's cost, not the alerts'. Arms
alternate in rounds, training steps are timed between consecutive batch starts, and the alerts' hooks are
timed around each call -- the machinery of ``callback_overhead.py``, reused.

Printed: the median step on/off, the time inside the alerts' hooks per step and per validation (the figure
to trust on a noisy machine), and the one-off waits outside training steps: the token check at start (one
slow getMe/getChat) and the flush at the end (bounded by ``--flush-timeout``).

Run from the repository root (the test server lives in ``tests/``):
    PYTHONPATH=. python benchmarks/alerts_overhead.py --configs small --delay 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from callback_overhead import HookClock, run_arm
from throughput import make_batch, make_config

from tacotron2_lightning.module import Tacotron2Module
from tuner_callbacks.alerts import TelegramAlerts

log = logging.getLogger("benchmarks.alerts_overhead")


class StaticMedia(pl.Callback):
    """Hands the same PNG to alerts at every validation, as ValidationMedia hands its fresh plot."""

    def __init__(self, png: Path):
        self.png, self.latest = png, {}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self.latest = {"step": trainer.global_step, "alignment": self.png}


class TimedAlerts(TelegramAlerts):
    """TelegramAlerts whose setup (the token check) and teardown (the flush) are timed: they run once, outside
    the training steps, so HookClock does not count them."""

    def setup(self, trainer, pl_module, stage) -> None:
        started = time.perf_counter()
        super().setup(trainer, pl_module, stage)
        self.setup_s = time.perf_counter() - started

    def teardown(self, trainer, pl_module, stage) -> None:
        started = time.perf_counter()
        super().teardown(trainer, pl_module, stage)
        self.teardown_s = time.perf_counter() - started


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


def benchmark(name: str, args: argparse.Namespace, base_url: str, token: str, chat_id: int, root: Path) -> dict:
    torch.manual_seed(0)
    config = make_config(name)
    batch = make_batch(args.batch_size, args.text_length, args.mel_length, config.n_mel_channels, torch.device("cpu"))
    module = Tacotron2Module(model_config=config, guided_attention_weight=5.0, health_utterances=1,
                             health_cap_ratio=0.2)
    png = png_file(root)
    steps, clock = args.steps_per_round, HookClock()
    timers: dict[str, list] = {"off": [], "on": []}
    setups, teardowns = [], []
    for round_index in range(args.rounds):
        for arm in ("off", "on") if round_index % 2 == 0 else ("on", "off"):
            extra: list[pl.Callback] = []
            if arm == "on":
                alerts = TimedAlerts(token=token, chat_id=chat_id, base_url=base_url, every_n_validations=1,
                                     check_timeout_s=args.delay + 5, timeout_s=args.delay + 5,
                                     flush_timeout_s=args.flush_timeout)
                extra = [StaticMedia(png), clock.wrap(alerts)]
            folder = root / f"{name}-{arm}-{round_index}"
            timers[arm].append(run_arm(module, batch, steps, args.val_every, extra, folder))
            if arm == "on":
                setups.append(alerts.setup_s)
                teardowns.append(alerts.teardown_s)
            log.info("%s round %d %s: %.2f s", name, round_index, arm, timers[arm][-1].total_s)

    def step_median(arm: str) -> float:
        return statistics.median(t for timer in timers[arm] for t in timer.intervals[1:])

    on_steps = steps * len(timers["on"])
    validations = sum(timer.validations for timer in timers["on"])
    off = step_median("off")
    return {
        "config": name, "off_step_s": off, "on_step_s": step_median("on"), "ratio": step_median("on") / off,
        "hooks_ms_per_step": 1e3 * clock.seconds["train"] / on_steps,
        "hooks_ms_per_validation": 1e3 * clock.seconds["validation"] / max(validations, 1),
        "hooks_ratio": (off + (clock.seconds["train"] + clock.seconds["validation"]) / on_steps) / off,
        "setup_s": statistics.median(setups), "teardown_s": statistics.median(teardowns),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=["default", "small"], default=["small"])
    parser.add_argument("--delay", type=float, default=2.0, help="seconds the Bot API server takes per request")
    parser.add_argument("--flush-timeout", type=float, default=5.0, help="TelegramAlerts.flush_timeout_s")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--text-length", type=int, default=60)
    parser.add_argument("--mel-length", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs, alternating order")
    parser.add_argument("--steps-per-round", type=int, default=6, help="training steps per arm and round")
    parser.add_argument("--val-every", type=int, default=2, help="validate (and alert) every N training steps")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.rounds < 1 or args.steps_per_round < 2 or not 1 <= args.val_every <= args.steps_per_round:
        parser.error("need --rounds >= 1, --steps-per-round >= 2 and 1 <= --val-every <= --steps-per-round")
    try:
        from tests.bot_api_server import CHAT_ID, TOKEN, FakeBotApi
    except ImportError:
        parser.error("run from the repository root with PYTHONPATH=. (the Bot API server is tests/bot_api_server.py)")

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("pytorch_lightning", "lightning.pytorch", "tacotron2_lightning.model", "httpx",
                  "tuner_callbacks.alerts"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    log.info("%d torch threads; Bot API answers after %.1f s", torch.get_num_threads(), args.delay)

    with FakeBotApi() as api, tempfile.TemporaryDirectory() as tmp:
        api.delay_s = args.delay
        results = [benchmark(name, args, api.base_url, TOKEN, CHAT_ID, Path(tmp))
                   for name in dict.fromkeys(args.configs)]
        answered = len(api.sent)
    for r in results:
        print(f"{r['config']}: step {r['off_step_s']:.3f} s off, {r['on_step_s']:.3f} s on with alerts to a server "
              f"answering in {args.delay:g} s; end-to-end ratio {r['ratio']:.3f}; in alerts' hooks "
              f"{r['hooks_ms_per_step']:.3f} ms/step + {r['hooks_ms_per_validation']:.2f} ms/validation -> hooks "
              f"ratio {r['hooks_ratio']:.4f}; once per run: token check {r['setup_s']:.2f} s, final flush "
              f"{r['teardown_s']:.2f} s (limit {args.flush_timeout:g} s); {answered} messages answered")


if __name__ == "__main__":
    main()
