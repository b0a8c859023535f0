"""Does the attention follow the audio, on voices the recipe never saw, and how soon? Word timings against alignment.

For each arm (``--arms``: the default recipe, or it with the alignment prior and/or the forward-sum loss switched off)
and each training voice (``--train VOICE[@RATE]``: an eSpeak voice, at a speaking rate in words per minute),
``python train.py`` trains the recipe (``model=small``, the built-in data of that voice, ``--seed``) for
``--max-steps``, keeping a checkpoint every ``--eval-every`` steps. Each checkpoint is then judged on built-in
sentences of another seed that no run trained or validated on, spoken by the same voice and by a voice none of the
runs saw (``--unseen``), and on long sentences of the training voice (``--long-words``, 2-3x the longest training
sentence's 6 words):

* ``error ratio``: the teacher-forced attention's mean distance from each word as eSpeak starts speaking it, over
  the same distance of a constant-rate line (``val/alignment_error_ratio``, pooled over the set's words; 1.0 knows no
  more about timing than a clock), and the error itself in symbols;
* ``gate stop``: the fraction of utterances whose free-running synthesis stopped on the gate before twice its
  recording's length;
* ``duration``: the median of synthesised over recorded frames.

Each row gives the steps trained and the wall time from the start of ``train.py`` to that checkpoint (start-up,
data generation and validations included). ``aligned at`` is the first checkpoint at which all three of issue 22's
conditions hold on a held-out set (error ratio <= 0.7, gate stop >= 95 %, duration 0.85-1.15) and ``held`` whether
they still hold at every later checkpoint; the long sentences are judged on gate stops (>= 90 %).

``--override`` passes Hydra overrides to every training run, to try a change of the recipe against the defaults.

Examples:
    python benchmarks/alignment_quality.py --max-steps 200 --eval-every 50 --train en-gb-x-rp@130 --arms before default
    python benchmarks/alignment_quality.py --max-steps 600 --eval-every 50 --train en-us en-gb-x-rp@130 en-029 \\
        --unseen en-gb-scotland
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from tacotron2_lightning import health  # noqa: E402
from tacotron2_lightning.app.compare import validation_utterances  # noqa: E402
from tacotron2_lightning.data.collate import TextMelCollate  # noqa: E402
from tacotron2_lightning.model import decoder_steps  # noqa: E402
from tacotron2_lightning.synthesis import load_for_synthesis  # noqa: E402

# What every run leaves out of the default recipe: loggers and media (they cost time and measure nothing here).
QUIET = ["logger=none", "callbacks.validation_media=null", "callbacks.rich_progress_bar=null"]
TUNED_VOICE = "en-us"  # what the defaults were tuned on
GOAL = {"ratio": 0.7, "stop": 0.95, "duration": (0.85, 1.15), "long_stop": 0.9, "by_step": 150}
# The recipe's alignment aids against the recipe before issue 22 (overrides of the default recipe).
BEFORE = ["model.learning_rate=1e-3", "model.gate_positive_weight=10", "model.attention_prior_weight=0",
          "model.align_loss_weight=0"]
ARMS = {
    "default": [],  # conf defaults: forward-sum loss, guided attention, gate weight 50, lr 3e-3; no prior
    "before": BEFORE,  # the default recipe before issue 22: guided attention, gate weight 10, lr 1e-3
    "no_loss": ["model.align_loss_weight=0"],  # the default without the forward-sum loss
    "prior": ["model.attention_prior_weight=1"],  # the default plus the alignment prior (annealed from step 100)
    "prior_only": ["model.attention_prior_weight=1", "model.align_loss_weight=0"],  # the prior, no loss
    "no_guide": ["model.attention_prior_weight=1", "model.guided_attention_weight=0"],  # prior + loss, no guide
    "loss_only": ["model.guided_attention_weight=0"],  # the forward-sum loss alone
}


@dataclass(frozen=True)
class Voice:
    name: str
    rate: int

    @classmethod
    def parse(cls, text: str) -> Voice:
        match = re.fullmatch(r"([A-Za-z0-9_+-]+)(?:@(\d+))?", text)
        if match is None:
            raise argparse.ArgumentTypeError(f"expected VOICE or VOICE@RATE (e.g. en-gb or en-us@130), got {text!r}")
        return cls(match.group(1).lower(), int(match.group(2) or 175))

    def __str__(self) -> str:
        return f"{self.name}@{self.rate}"


@dataclass
class Judged:
    """One checkpoint on one held-out set."""

    error: float
    ratio: float
    stop: float
    duration: float


def train(voice: Voice, folder: Path, args: argparse.Namespace,
          arm: list[str]) -> tuple[list[tuple[int, float, Path]], float]:
    """Trains the default recipe on ``voice``; returns (steps, seconds since start, checkpoint) and the total time."""
    overrides = [*QUIET, f"seed={args.seed}", f"data.builtin.seed={args.seed}", f"data.builtin.voice={voice.name}",
                 f"data.builtin.rate={voice.rate}", f"trainer.max_steps={args.max_steps}",
                 f"trainer.val_check_interval={args.eval_every}", f"paths.log_dir={folder}",
                 "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
                 "callbacks.model_checkpoint.save_last=false", "callbacks.model_checkpoint.filename='step{step:06d}'",
                 f"callbacks.model_checkpoint.every_n_train_steps={args.eval_every}", *arm, *args.override]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=folder, env=env,
                          capture_output=True, text=True)
    total = time.time() - started
    (folder / "train.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"training on {voice} failed:\n{done.stderr[-4000:]}")
    checkpoints = []
    for path in sorted(folder.glob("runs/train/*/checkpoints/step*.ckpt")):
        checkpoints.append((int(re.search(r"step(\d+)", path.name).group(1)), path.stat().st_mtime - started, path))
    return checkpoints, total


def held_out(voice: Voice, args: argparse.Namespace,
             words: tuple[int, int] | None = None) -> list[tuple[torch.Tensor, ...]]:
    """``--heldout-size`` built-in sentences of seed ``--heldout-seed`` spoken by ``voice``, with word timings;
    ``words`` (fewest, most) for sentences of other lengths than the training data's."""
    overrides = [f"data.builtin.seed={args.heldout_seed}", f"data.builtin.size={args.heldout_size + 1}",
                 f"data.val_size={args.heldout_size}", f"data.builtin.voice={voice.name}",
                 f"data.builtin.rate={voice.rate}"]
    if words is not None:
        overrides += [f"data.builtin.min_words={words[0]}", f"data.builtin.max_words={words[1]}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    utterances = validation_utterances(OmegaConf.to_container(cfg.data, resolve=True))
    if any(len(utterance) < 3 for utterance in utterances):
        raise RuntimeError(f"the held-out set of {voice} has no word timings")
    return utterances


@torch.no_grad()
def judge(checkpoint: Path, utterances: list[tuple[torch.Tensor, ...]], seed: int) -> Judged:
    module = load_for_synthesis(checkpoint)  # eval mode; the prenet's dropout stays on, as NVIDIA's
    r = module.config.n_frames_per_step
    text, input_lengths, mel, _, output_lengths, word_timings = TextMelCollate(r)(utterances)
    torch.manual_seed(seed)
    alignments = module.model(text, input_lengths, mel, output_lengths)[3]
    errors, line, valid = health.word_position_errors(alignments, word_timings, input_lengths, output_lengths, r)
    # Twice the recording, beyond the config's max_decoder_steps if need be: a long sentence is judged on its gate.
    caps = decoder_steps(2 * output_lengths, r)
    decoded = module.model.inference(text, input_lengths, max_decoder_steps=caps, warn_at_cap=False)
    stopped = (decoded.lengths < caps * r).float()
    durations = health.duration_ratios(decoded.lengths, output_lengths)
    return Judged(float(errors.sum() / valid.sum()), float(errors.sum() / line.sum()), float(stopped.mean()),
                  float(durations.median()))


def meets(judged: Judged) -> bool:
    return (judged.ratio <= GOAL["ratio"] and judged.stop >= GOAL["stop"]
            and GOAL["duration"][0] <= judged.duration <= GOAL["duration"][1])


def first_aligned(history: list[tuple[int, Judged]]) -> tuple[int | None, bool]:
    """The first step at which the goal's three conditions hold, and whether they hold at every later step."""
    for index, (step, judged) in enumerate(history):
        if meets(judged):
            return step, all(meets(later) for _, later in history[index:])
    return None, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Voice.parse, nargs="+", default=[Voice("en-us", 175)],
                        help="voices to train on, VOICE or VOICE@RATE (words per minute, default 175)")
    parser.add_argument("--unseen", type=Voice.parse, default=Voice("en-029", 175),
                        help="a voice no training run hears, judged as well")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["default"],
                        help="recipes to compare (see ARMS): default, before (the recipe before the alignment aids), "
                             "no_loss, prior, prior_only, no_guide, loss_only")
    parser.add_argument("--max-steps", type=int, default=600, help="training steps (the default recipe's 600)")
    parser.add_argument("--eval-every", type=int, default=50, help="checkpoint interval")
    parser.add_argument("--seed", type=int, default=1234, help="training seed, of the data and the model")
    parser.add_argument("--heldout-seed", type=int, default=20_018, help="sentence seed of the held-out sets")
    parser.add_argument("--heldout-size", type=int, default=16, help="held-out utterances per voice")
    parser.add_argument("--long-words", type=int, nargs=2, default=(12, 18), metavar=("FEWEST", "MOST"),
                        help="words of the long held-out sentences (training sentences have 2-6); 0 0 skips them")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides for every training run")
    parser.add_argument("--label", default=None, help="a name for the arm(s) in the output, when --override is set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the runs (checkpoints, train.log) in this folder instead of a temporary one")
    args = parser.parse_args()
    if args.unseen.name in {voice.name for voice in args.train}:
        parser.error(f"--unseen {args.unseen} is one of the training voices")
    torch.set_num_threads(args.threads)

    print(f"{args.max_steps} steps, seed {args.seed}, arms {' '.join(args.arms)}" +
          (f", overrides: {' '.join(args.override)}" if args.override else ""), flush=True)
    header = (f"{'arm':<9} {'trained on':<16} {'step':>5} {'wall s':>7}  {'held out':<28} {'error ratio':>11} "
              f"{'error (sym)':>11} {'gate stop':>9} {'duration':>8}")
    histories: dict[tuple[str, str, str], list[tuple[int, Judged]]] = {}
    with tempfile.TemporaryDirectory(prefix="alignment-quality-") as tmp:
        tmp = args.keep or tmp
        for voice in args.train:
            sets = {f"{voice} (same voice)": held_out(voice, args), f"{args.unseen} (unseen)": held_out(args.unseen,
                                                                                                      args)}
            if args.long_words[1] > 0:
                sets[f"{voice} long ({args.long_words[0]}-{args.long_words[1]} w)"] = held_out(
                    voice, args, tuple(args.long_words))
            for arm_name in args.arms:
                arm = f"{arm_name}+{args.label}" if args.label else arm_name
                checkpoints, total = train(voice, Path(tmp) / arm / str(voice), args, ARMS[arm_name])
                print(f"\n{arm}, trained on {voice}: {total:.0f} s for {args.max_steps} steps\n{header}", flush=True)
                for step, seconds, checkpoint in checkpoints:
                    for name, utterances in sets.items():
                        judged = judge(checkpoint, utterances, args.seed)
                        histories.setdefault((arm, str(voice), name), []).append((step, judged))
                        print(f"{arm:<9} {voice!s:<16} {step:>5} {seconds:>7.0f}  {name:<28} {judged.ratio:>11.2f} "
                              f"{judged.error:>11.2f} {judged.stop:>9.2f} {judged.duration:>8.2f}", flush=True)
    print(f"\ngoal (issue 22): error ratio <= {GOAL['ratio']}, gate stop >= {GOAL['stop']:.0%}, duration "
          f"{GOAL['duration'][0]}-{GOAL['duration'][1]} by step {GOAL['by_step']} and held to the last step; "
          f"long sentences: gate stop >= {GOAL['long_stop']:.0%}")
    for (arm, trained, name), history in histories.items():
        last_step, last = history[-1]
        if " long " in name:
            print(f"  {arm}, trained on {trained}, {name}: gate stop {last.stop:.2f} at step {last_step} "
                  f"({'met' if last.stop >= GOAL['long_stop'] else 'missed'}; duration {last.duration:.2f}, "
                  f"error ratio {last.ratio:.2f})")
            continue
        step, held = first_aligned(history)
        met = step is not None and step <= GOAL["by_step"] and held
        print(f"  {arm}, trained on {trained}, {name}: aligned at step {step if step is not None else 'never'}"
              f"{', held' if held else (', not held' if step is not None else '')} ({'met' if met else 'missed'}; "
              f"at step {last_step}: ratio {last.ratio:.2f}, stop {last.stop:.2f}, duration {last.duration:.2f})")


if __name__ == "__main__":
    main()
