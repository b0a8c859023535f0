"""Does the tuner tune? The defaults against a sweep's best, judged on held-out speech no trial saw.

Per seed, on the built-in eSpeak data (this seed for the data, the model and the sampler):

* ``defaults``: ``python train.py`` for the per-trial step budget;
* ``sweep``: ``python train.py -m hparams=search`` (SynthesisObjective, defaults enqueued as trial 0, TPE with the
  default pruner), the same budget per trial, then the trial the study ranks best;
* ``sweep, no pruning``: the same sweep with ``hydra/sweeper/pruner=nop``.

Every arm trains the same tiny Tacotron2 (``model=small`` at half its widths) for ``--max-steps`` with the
guided-attention hold scaled to ``--hold-steps``, so that three seeds fit a 2-core machine in about an hour.
Each model is then judged on a held-out set: built-in sentences of another seed, synthesised free-running (the
prenet's dropout on, as at inference, torch seeded), each against its recording: MCD-DTW (dB), whether the gate
stopped before twice the recording's length, and the duration ratio. Printed per seed: those three per arm, the
training steps each arm spent (the sum over trials of the steps each trained), the sweep's MCD gain over the
defaults with a paired sign-flip permutation p-value over the held-out utterances, and the fraction of its steps
the pruned sweep needed to first reach the unpruned sweep's best objective.

Examples:
    python benchmarks/tuner_value.py --seeds 1 2 3
    python benchmarks/tuner_value.py --seeds 1 --trials 4 --max-steps 60 --val-every 20   # a smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from tacotron2_lightning import health  # noqa: E402
from tacotron2_lightning.app.compare import validation_utterances  # noqa: E402
from tacotron2_lightning.app.paired_test import paired_permutation_p_value  # noqa: E402
from tacotron2_lightning.data.collate import TextMelCollate  # noqa: E402
from tacotron2_lightning.model import decoder_steps  # noqa: E402
from tacotron2_lightning.synthesis import load_for_synthesis  # noqa: E402
from tuner_callbacks import contract  # noqa: E402

# What every run shares: no media, no registry, no MLflow, a checkpoint of the last weights only.
QUIET = ["logger=none", "callbacks.validation_media=null", "callbacks.rich_progress_bar=null",
         "callbacks.model_checkpoint.save_top_k=0"]
# A Tacotron2 small enough for a trial in minutes on 2 CPU cores (model=small at half its widths); every arm uses
# it, so the comparison is of the searched settings, not of sizes.
TINY_MODEL = ["model.model_config.symbols_embedding_dim=64", "model.model_config.encoder_embedding_dim=64",
              "model.model_config.attention_rnn_dim=128", "model.model_config.decoder_rnn_dim=128",
              "model.model_config.prenet_dim=64", "model.model_config.attention_dim=32",
              "model.model_config.postnet_embedding_dim=64", "model.health_utterances=4"]


@dataclass
class Judged:
    """One model on the held-out set: per-utterance MCD-DTW, gate stops and duration ratios."""

    mcd: np.ndarray
    stopped: np.ndarray
    duration: np.ndarray
    steps: int

    def row(self, name: str) -> str:
        return (f"{name:>20} | {np.mean(self.mcd):8.3f} | {np.mean(self.stopped):9.2f} | "
                f"{np.median(self.duration):8.2f} | {self.steps:>8}")


def run(command: list[str], cwd: Path, args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), *command], cwd=cwd, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    print(f"  ({time.perf_counter() - started:.0f} s) train.py {' '.join(command[:3])} ...", flush=True)


def common(seed: int, args: argparse.Namespace) -> list[str]:
    hold = ([] if args.hold_steps is None else
            [f"callbacks.param_scheduler.schedules.guided_attention.delay_steps={args.hold_steps}"])
    return [*QUIET, *TINY_MODEL, f"seed={seed}", f"data.builtin.seed={seed}", f"data.builtin.size={args.dataset_size}",
            f"trainer.max_steps={args.max_steps}", f"trainer.val_check_interval={args.val_every}", *hold]


def train_defaults(seed: int, folder: Path, args: argparse.Namespace) -> tuple[Path, int]:
    run([*common(seed, args), f"paths.log_dir={folder}"], folder, args)
    (checkpoint,) = sorted(folder.glob("runs/train/*/checkpoints/last.ckpt"))
    return checkpoint, args.max_steps


def sweep(seed: int, folder: Path, args: argparse.Namespace, pruning: bool) -> optuna.Study:
    run(["-m", "hparams=search", *common(seed, args), f"paths.log_dir={folder}",
         f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.report=false",
         "hydra.sweeper.alerts=null", "callbacks.model_registry=null",
         *([] if pruning else ["hydra/sweeper/pruner=nop"])], folder, args)
    return optuna.load_study(study_name="search", storage=f"sqlite:///{folder}/sweeps/search/optuna.db")


def steps_spent(study: optuna.Study) -> int:
    return sum(int(t.user_attrs.get(contract.ATTR_GLOBAL_STEP) or 0) for t in study.trials)


def steps_to_reach(study: optuna.Study, target: float) -> int | None:
    """Training steps spent (in trial order) until a trial first reached ``target`` or better."""
    steps = 0
    for trial in study.trials:
        steps += int(trial.user_attrs.get(contract.ATTR_GLOBAL_STEP) or 0)
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value <= target:
            return steps
    return None


def held_out(seed: int, args: argparse.Namespace) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Built-in sentences of another seed: text and mels no trial trained or validated on."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.builtin.seed={seed}", f"data.builtin.size={args.heldout_size}",
                                          f"data.val_size={args.heldout_size - 1}"])
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return validation_utterances(data)


def judge(checkpoint: Path, utterances: list, steps: int, seed: int) -> Judged:
    module = load_for_synthesis(checkpoint)
    r = module.config.n_frames_per_step
    text, input_lengths, mel, _, output_lengths = TextMelCollate(r)(utterances)[:5]  # word timings unused
    torch.manual_seed(seed)  # the prenet's dropout stays on at inference, as in NVIDIA's synthesis
    caps = decoder_steps(2 * output_lengths, r)  # each utterance is lost at twice its recording's length
    with torch.no_grad():
        decoded = module.model.inference(text, input_lengths, max_decoder_steps=caps, warn_at_cap=False)
    lengths = decoded.lengths
    stopped = (lengths < caps * r).float()  # the gate fired before that
    return Judged(health.mel_cepstral_distortions(decoded.mel_postnet, lengths, mel, output_lengths).numpy(),
                  stopped.numpy(), health.duration_ratios(lengths, output_lengths).numpy(), steps)


def best_checkpoint(study: optuna.Study) -> Path:
    return Path(study.best_trial.user_attrs[contract.ATTR_LAST_CHECKPOINT])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--trials", type=int, default=6, help="trials per sweep (trial 0: the defaults)")
    parser.add_argument("--max-steps", type=int, default=200, help="training steps per trial and for the defaults")
    parser.add_argument("--val-every", type=int, default=25, help="validation (= pruning decision) interval")
    parser.add_argument("--hold-steps", type=int, default=100,
                        help="steps the guided-attention weight is held before it decays, and the pruner's "
                             "warm-up (the config's 300 of 600 steps, scaled to the budget)")
    parser.add_argument("--dataset-size", type=int, default=120, help="built-in utterances per seed")
    parser.add_argument("--heldout-size", type=int, default=21, help="held-out utterances (another seed) + 1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)

    gains, pruning_fractions = [], []
    with tempfile.TemporaryDirectory(prefix="tuner-value-") as tmp:
        for seed in args.seeds:
            utterances = held_out(10_000 + seed, args)
            print(f"seed {seed}: {len(utterances)} held-out utterances", flush=True)
            checkpoint, steps = train_defaults(seed, Path(tmp) / f"defaults-{seed}", args)
            defaults = judge(checkpoint, utterances, steps, seed)
            pruned = sweep(seed, Path(tmp) / f"sweep-{seed}", args, pruning=True)
            unpruned = sweep(seed, Path(tmp) / f"nopruning-{seed}", args, pruning=False)
            arms = {"defaults": defaults,
                    "sweep": judge(best_checkpoint(pruned), utterances, steps_spent(pruned), seed),
                    "sweep, no pruning": judge(best_checkpoint(unpruned), utterances, steps_spent(unpruned), seed)}
            print(f"{'seed ' + str(seed):>20} | MCD (dB) | gate stop | duration | steps")
            for name, judged in arms.items():
                print(judged.row(name))
            for name in ("sweep", "sweep, no pruning"):
                differences = arms[name].mcd - defaults.mcd
                gain = -float(np.mean(differences)) / float(np.mean(defaults.mcd))
                p_value = paired_permutation_p_value(differences, seed=seed)
                print(f"  {name}: MCD {100 * gain:+.1f}% against the defaults (paired p = {p_value:.4f}); gate stop "
                      f"{np.mean(arms[name].stopped):.2f} vs {np.mean(defaults.stopped):.2f}")
                if name == "sweep":
                    gains.append((gain, p_value))
            reached = steps_to_reach(pruned, unpruned.best_value)
            fraction = None if reached is None else reached / steps_spent(unpruned)
            pruning_fractions.append(fraction)
            print("  pruning: " + ("did not reach the unpruned best" if fraction is None else
                                   f"reached the unpruned best {unpruned.best_value:.3f} with {fraction:.2f} of "
                                   f"its steps"), flush=True)
    wins = sum(gain >= 0.10 and p < 0.05 for gain, p in gains)
    halves = sum(f is not None and f <= 0.5 for f in pruning_fractions)
    print(f"\nsweep beats the defaults by >= 10% MCD with p < 0.05 in {wins} of {len(gains)} seeds "
          f"(median gain {100 * statistics.median(g for g, _ in gains):+.1f}%); pruning reached the unpruned best "
          f"with <= 50% of the steps in {halves} of {len(pruning_fractions)} seeds")


if __name__ == "__main__":
    main()
