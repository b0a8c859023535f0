"""Does the tuner tune? The defaults against a sweep's best feasible trial, judged on held-out speech no trial saw.

The scenario a user meets: a voice the defaults were not tuned on (``--voice``, by default eSpeak's slow British
``en-gb-x-rp@130``; the recipe was tuned on ``en-us``). Per seed (this seed for the data, the model and the sampler):

* ``defaults``: ``python train.py`` for the per-trial step budget;
* ``sweep``: ``python train.py -m hparams=search`` (the synthesis objective: ``val/cepstral_decorrelation`` with the
  gate-stop and duration constraints; the defaults enqueued as trial 0; TPE; ``--trials`` trials, no pruning), then
  the study's best *feasible* trial;
* ``sweep, median pruning``: the same sweep with the search config's pruner (median), run for real;
* pruners replayed on the unpruned sweep's curves (``--replay``: median, wilcoxon, learning_curve): each pruner
  decides at every validation of every trial, in trial order, seeing the trials before as it would have left them.
  The proposals are the unpruned sweep's, so the comparison is of the pruners alone (a real pruned sweep also
  changes what TPE proposes next).

Every model is judged on held-out sentences (built-in sentences of another seed, same voice), synthesised
free-running (the prenet's dropout on, as at inference, torch seeded): the length-weighted cepstral decorrelation
per utterance (the validated metric, lower is better), whether the gate stopped before twice the recording's length,
and the duration ratio. Printed per seed: those per arm with their feasibility, the training steps each arm spent,
the sweep's gain on the metric over the defaults with a paired sign-flip permutation p-value over the held-out
utterances, and for each pruned arm the fraction of the unpruned sweep's steps it spent until a trial first reached
the unpruned best.

Examples:
    python benchmarks/tuner_value.py --seeds 1 2 3
    python benchmarks/tuner_value.py --seeds 1 --trials 4 --max-steps 60 --val-every 20 --hold-steps 20  # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks.train_process import run_train  # noqa: E402
from tacotron2_lightning import health  # noqa: E402
from tacotron2_lightning.app.compare import validation_utterances  # noqa: E402
from tacotron2_lightning.app.paired_statistics import paired_permutation_p_value  # noqa: E402
from tacotron2_lightning.data.collate import TextMelCollate  # noqa: E402
from tacotron2_lightning.model import decoder_steps  # noqa: E402
from tacotron2_lightning.synthesis import load_for_synthesis  # noqa: E402
from tuner_callbacks import contract  # noqa: E402
from tuner_callbacks.learning_curve_pruner import LearningCurvePruner  # noqa: E402
from tuner_callbacks.warmup_pruner import WarmupPruner  # noqa: E402

# What every run shares: no media, no registry, no MLflow, a checkpoint of the last weights only.
QUIET = ["logger=none", "callbacks.validation_media=null", "callbacks.rich_progress_bar=null",
         "callbacks.model_checkpoint.save_top_k=0"]
FEASIBLE = {"gate_stop": 0.95, "duration": (0.85, 1.15)}  # conf/objective/synthesis.yaml's constraints


@dataclass
class Judged:
    """One model on the held-out set: per-utterance decorrelation, gate stops and duration ratios."""

    metric: np.ndarray
    stopped: np.ndarray
    duration: np.ndarray
    steps: int

    @property
    def feasible(self) -> bool:
        low, high = FEASIBLE["duration"]
        return bool(np.mean(self.stopped) >= FEASIBLE["gate_stop"] and low <= np.median(self.duration) <= high)

    def row(self, name: str) -> str:
        return (f"{name:>24} | {np.mean(self.metric):10.3f} | {np.mean(self.stopped):9.2f} | "
                f"{np.median(self.duration):8.2f} | {'yes' if self.feasible else 'no':>8} | {self.steps:>7}")


def run(command: list[str], cwd: Path, args: argparse.Namespace) -> None:
    seconds = run_train(command, cwd, args.threads)
    print(f"  ({seconds:.0f} s) train.py {' '.join(command[:2])} ... in {cwd.name}", flush=True)


def voice_overrides(args: argparse.Namespace) -> list[str]:
    name, _, rate = args.voice.partition("@")
    return [f"data.builtin.voice={name}", f"data.builtin.rate={rate or 175}"]


def common(seed: int, args: argparse.Namespace) -> list[str]:
    hold = ([] if args.hold_steps is None else
            [f"callbacks.param_scheduler.schedules.guided_attention.delay_steps={args.hold_steps}"])
    return [*QUIET, f"seed={seed}", f"data.builtin.seed={seed}", f"data.builtin.size={args.dataset_size}",
            *voice_overrides(args), f"trainer.max_steps={args.max_steps}",
            f"trainer.val_check_interval={args.val_every}", *hold]


def train_defaults(seed: int, folder: Path, args: argparse.Namespace) -> Path:
    if not (args.reuse and sorted(folder.glob("runs/train/*/checkpoints/last.ckpt"))):
        run([*common(seed, args), f"paths.log_dir={folder}"], folder, args)
    (checkpoint,) = sorted(folder.glob("runs/train/*/checkpoints/last.ckpt"))
    return checkpoint


def sweep(seed: int, folder: Path, args: argparse.Namespace, pruning: bool) -> optuna.Study:
    if args.reuse and (folder / "sweeps/search/optuna.db").is_file():
        return optuna.load_study(study_name="search", storage=f"sqlite:///{folder}/sweeps/search/optuna.db")
    run(["-m", "hparams=search", *common(seed, args), f"paths.log_dir={folder}",
         f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.sampler.n_startup_trials={args.startup_trials}",
         f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.report=false", "hydra.sweeper.alerts=null",
         "callbacks.model_registry=null", *([] if pruning else ["hydra/sweeper/pruner=nop"])], folder, args)
    return optuna.load_study(study_name="search", storage=f"sqlite:///{folder}/sweeps/search/optuna.db")


def trained(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs.get(contract.ATTR_GLOBAL_STEP) or 0)


def steps_spent(study: optuna.Study) -> int:
    return sum(trained(t) for t in study.trials)


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())


def steps_to_reach(study: optuna.Study, target: float, feasible_only: bool = True) -> int | None:
    """Training steps spent (in trial order) until a (feasible) trial first reached ``target`` or better."""
    steps = 0
    for trial in study.trials:
        steps += trained(trial)
        if (trial.state == optuna.trial.TrialState.COMPLETE and (feasible(trial) or not feasible_only)
                and trial.value <= target + 1e-12):
            return steps
    return None


def best_feasible(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial  # Optuna 5: the best of the trials whose constraints hold
    except ValueError:
        return None


def best_by_value(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial whatever its constraints: what is left to compare when none is feasible."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return min(done, key=lambda t: t.value) if done else None


def replay(study: optuna.Study, pruner: optuna.pruners.BasePruner, target: float,
           feasible_only: bool = True) -> tuple[int, int | None]:
    """The unpruned study's trials fed to ``pruner`` one validation at a time, in trial order: (steps it would have
    spent, steps until a (feasible) trial first reached ``target``)."""
    replayed = optuna.create_study(direction="minimize", pruner=pruner)
    spent, reached = 0, None
    for trial in study.trials:
        if trial.state != optuna.trial.TrialState.COMPLETE:
            continue
        system_attrs = {key: value for key, value in trial.system_attrs.items() if key.startswith("constraints")}
        live = replayed.ask()
        for key, value in system_attrs.items():
            replayed._storage.set_trial_system_attr(live._trial_id, key, value)
        pruned_at = None
        for step, value in sorted(trial.intermediate_values.items()):
            live.report(value, step)
            if live.should_prune():
                pruned_at = step
                break
        if pruned_at is not None:
            replayed.tell(live, state=optuna.trial.TrialState.PRUNED)
            spent += pruned_at
            continue
        replayed.tell(live, trial.value)
        spent += trained(trial)
        if reached is None and (feasible(trial) or not feasible_only) and trial.value <= target + 1e-12:
            reached = spent
    return spent, reached


def replay_pruners(args: argparse.Namespace) -> dict[str, Callable[[], optuna.pruners.BasePruner]]:
    """The sweeper's pruner configs (hydra_plugins/smart_optuna_sweeper/config.py) with the search's warm-up."""
    hold = args.hold_steps or 0
    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=hold),
        "wilcoxon": lambda: WarmupPruner(optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2), hold),
        "learning_curve": lambda: LearningCurvePruner(max_resource=args.max_steps, n_warmup_steps=hold),
    }


def held_out(seed: int, args: argparse.Namespace) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Built-in sentences of another seed, same voice: text and mels no trial trained or validated on."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data.builtin.seed={seed}", f"data.builtin.size={args.heldout_size}",
                                          f"data.val_size={args.heldout_size - 1}", *voice_overrides(args)])
    return validation_utterances(OmegaConf.to_container(cfg.data, resolve=True))


@torch.no_grad()
def judge(checkpoint: Path, utterances: list, steps: int, seed: int) -> Judged:
    module = load_for_synthesis(checkpoint)
    r = module.config.n_frames_per_step
    # TextMelCollate orders the batch longest text first; every arm sees the same order, so pairs stay paired.
    text, input_lengths, mel, _, output_lengths = TextMelCollate(r)(utterances)[:5]  # word timings unused
    torch.manual_seed(seed)  # the prenet's dropout stays on at inference, as in NVIDIA's synthesis
    caps = decoder_steps(2 * output_lengths, r)  # each utterance is lost at twice its recording's length
    decoded = module.model.inference(text, input_lengths, max_decoder_steps=caps, warn_at_cap=False)
    lengths = decoded.lengths
    stopped = (lengths < caps * r).float()  # the gate fired before that
    return Judged(health.cepstral_decorrelations(decoded.mel_postnet, lengths, mel, output_lengths).numpy(),
                  stopped.numpy(), health.duration_ratios(lengths, output_lengths).numpy(), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--voice", default="en-gb-x-rp@130", help="eSpeak voice[@words per minute] of every arm")
    parser.add_argument("--trials", type=int, default=8, help="trials per sweep (trial 0: the defaults)")
    parser.add_argument("--startup-trials", type=int, default=4, help="TPE's random trials before it models")
    parser.add_argument("--max-steps", type=int, default=200, help="training steps per trial and for the defaults")
    parser.add_argument("--val-every", type=int, default=25, help="validation (= pruning decision) interval")
    parser.add_argument("--hold-steps", type=int, default=100,
                        help="steps the guided-attention weight is held before it decays, and the pruners' "
                             "warm-up (the config's 300 of 600 steps, scaled to the budget)")
    parser.add_argument("--dataset-size", type=int, default=160, help="built-in utterances per seed")
    parser.add_argument("--heldout-size", type=int, default=25, help="held-out utterances (another seed) + 1")
    parser.add_argument("--replay", nargs="*", default=["median", "wilcoxon", "learning_curve"],
                        help="pruners replayed on the unpruned sweep's curves")
    parser.add_argument("--no-real-pruning", action="store_true", help="skip the real median-pruned sweep")
    parser.add_argument("--keep", type=Path, default=None, help="keep the runs here instead of a temporary folder")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: judge the runs and studies already there instead of training them again")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)

    gains, fractions = [], {}
    with tempfile.TemporaryDirectory(prefix="tuner-value-") as tmp:
        root = args.keep or Path(tmp)
        for seed in args.seeds:
            utterances = held_out(10_000 + seed, args)
            print(f"seed {seed}: {args.voice}, {len(utterances)} held-out utterances", flush=True)
            defaults = judge(train_defaults(seed, root / f"defaults-{seed}", args), utterances, args.max_steps, seed)
            unpruned = sweep(seed, root / f"nopruning-{seed}", args, pruning=False)
            studies = {"sweep": unpruned}
            if not args.no_real_pruning:
                studies["sweep, median pruning"] = sweep(seed, root / f"sweep-{seed}", args, pruning=True)
            arms = {"defaults": defaults}
            for name, study in studies.items():
                best, kind = best_feasible(study), "best feasible"
                if best is None:
                    best, kind = best_by_value(study), "no feasible trial; best by value"
                    name = f"{name} (infeasible)"
                if best is None:
                    continue
                arms[name] = judge(Path(best.user_attrs[contract.ATTR_LAST_CHECKPOINT]), utterances,
                                   steps_spent(study), seed)
                print(f"  {name}: {kind}: trial {best.number} ({best.value:.4f}), params {best.params}", flush=True)
            print(f"{'seed ' + str(seed):>24} | decorr. SL | gate stop | duration | feasible | steps")
            for name, judged in arms.items():
                print(judged.row(name))
            for name in arms:
                if name == "defaults":
                    continue
                differences = arms[name].metric - defaults.metric
                gain = -float(np.mean(differences)) / float(np.mean(defaults.metric))
                p_value = paired_permutation_p_value(differences, seed=seed)
                print(f"  {name}: {100 * gain:+.1f}% on the metric against the defaults (paired p = {p_value:.4f})")
                if name.startswith("sweep") and "pruning" not in name:
                    gains.append((gain, p_value, arms[name].feasible and "infeasible" not in name))
            best, feasible_only = best_feasible(unpruned), True
            if best is None:  # compare the pruners on reaching the best value, constraints aside
                best, feasible_only = best_by_value(unpruned), False
            if best is None:
                continue
            total = steps_spent(unpruned)
            arms_steps = {}
            if "sweep, median pruning" in studies:
                arms_steps["median (real sweep)"] = (steps_spent(studies["sweep, median pruning"]),
                                                     steps_to_reach(studies["sweep, median pruning"], best.value,
                                                                    feasible_only))
            for name in args.replay:
                arms_steps[f"{name} (replayed)"] = replay(unpruned, replay_pruners(args)[name](), best.value,
                                                          feasible_only)
            for name, (spent, reached) in arms_steps.items():
                fraction = None if reached is None else reached / total
                fractions.setdefault(name, []).append(fraction)
                print(f"  pruning, {name}: spent {spent} of {total} steps; " +
                      ("did not reach the unpruned best" if fraction is None else
                       f"reached the unpruned best {best.value:.4f} with {fraction:.2f} of its steps"), flush=True)
    if gains:
        wins = sum(gain >= 0.10 and p < 0.05 and ok for gain, p, ok in gains)
        print(f"\nsweep's best feasible beats the defaults by >= 10% with p < 0.05 in {wins} of {len(gains)} seeds "
              f"(median gain {100 * statistics.median(g for g, _, _ in gains):+.1f}%)")
    for name, values in fractions.items():
        halves = sum(f is not None and f <= 0.5 for f in values)
        shown = ", ".join("-" if f is None else f"{f:.2f}" for f in values)
        print(f"pruning {name}: reached the unpruned best with <= 50% of its steps in {halves} of {len(values)} "
              f"seeds ({shown})")


if __name__ == "__main__":
    main()
