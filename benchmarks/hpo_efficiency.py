"""How much training pruning saves: the same trial budget with pruning, without, and with random search.

Each arm is a real sweep, ``python train.py -m hparams=search`` on the built-in dataset with a small model,
run once per seed (the sampler's seed; the data and model seeds stay fixed):

* ``tpe+median``: TPE (multivariate, constant liar) with the MedianPruner -- the default;
* ``tpe+patient``: TPE with a PatientPruner (patience 2) around the median pruner;
* ``tpe+wilcoxon``: TPE with the WilcoxonPruner;
* ``tpe``: TPE without pruning (``hydra/sweeper/pruner=nop``);
* ``random``: random search without pruning.

Every pruner waits for the guided-attention hold (``--hold-steps``, the pruners' ``n_warmup_steps`` as in
search.yaml). Whether a pruner "keeps the winner" is whether it reaches the no-pruning arm's best.

For each arm and seed it prints the best objective reached and the training steps spent (the sum over trials
of the steps each trained, from the trials' ``global_step``), then, per seed, the steps the pruning arm needed
to first reach the best value of the no-pruning arm, as a fraction of the steps the no-pruning arm spent
(< 1: pruning got there cheaper; "not reached" if it never did).

Examples:
    python benchmarks/hpo_efficiency.py --seeds 1 2 3 --trials 8
    python benchmarks/hpo_efficiency.py --seeds 1 --trials 6 --max-steps 60 --val-every 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "tpe+median": ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=2"],
    "tpe+patient": ["hydra/sweeper/pruner=patient", "hydra.sweeper.pruner.patience=2",
                    "hydra.sweeper.pruner.wrapped_pruner.n_startup_trials=2"],
    "tpe+wilcoxon": ["hydra/sweeper/pruner=wilcoxon"],
    "tpe": ["hydra/sweeper/pruner=nop"],
    "random": ["hydra/sweeper/sampler=random", "hydra/sweeper/pruner=nop"],
}
PRUNED_ARMS = [arm for arm in ARMS if "+" in arm]
# A model small enough for a trial in seconds on a CPU, still a Tacotron2 (the sizes of the project's tests x2).
SMALL_MODEL = [
    "model.model_config.symbols_embedding_dim=64", "model.model_config.encoder_embedding_dim=64",
    "model.model_config.attention_rnn_dim=128", "model.model_config.decoder_rnn_dim=128",
    "model.model_config.prenet_dim=64", "model.model_config.attention_dim=32",
    "model.model_config.postnet_embedding_dim=64", "model.health_utterances=2",
]


def run_arm(arm: str, seed: int, args: argparse.Namespace, root: Path) -> optuna.Study:
    log_dir = root / f"{arm}-{seed}"
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams=search", *SMALL_MODEL, *ARMS[arm],
               f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweeper.n_trials={args.trials}",
               "hydra.sweeper.report=false", *([] if arm == "random" else ["hydra.sweeper.sampler.n_startup_trials=3"]),
               f"trainer.max_steps={args.max_steps}", f"trainer.val_check_interval={args.val_every}",
               f"callbacks.param_scheduler.schedules.guided_attention.delay_steps={args.hold_steps}",
               f"data.builtin.size={args.dataset_size}", "data.batch_size=choice(8, 16)",
               "logger=none", "callbacks.validation_media=null", "callbacks.rich_progress_bar=null",
               "callbacks.model_checkpoint=null", f"paths.log_dir={log_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed} failed:\n{done.stderr[-3000:]}")
    return optuna.load_study(study_name="search", storage=f"sqlite:///{log_dir}/sweeps/search/optuna.db")


def curve(study: optuna.Study) -> list[tuple[int, float]]:
    """(cumulative steps, best value so far) after each finished trial, in trial order."""
    points, steps, best = [], 0, float("inf")
    for trial in study.trials:
        steps += int(trial.user_attrs.get("global_step", 0))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            best = min(best, trial.value)
        points.append((steps, best))
    return points


def steps_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((steps for steps, best in points if best <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--trials", type=int, default=8, help="trial budget of every arm")
    parser.add_argument("--max-steps", type=int, default=80, help="training steps of a trial that is not pruned")
    parser.add_argument("--val-every", type=int, default=10, help="validation (= pruning decision) interval")
    parser.add_argument("--hold-steps", type=int, default=30,
                        help="guided-attention hold, and so every pruner's warm-up (search.yaml: 300 of 600)")
    parser.add_argument("--dataset-size", type=int, default=60, help="built-in utterances")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    fractions: dict[str, list[float]] = {arm: [] for arm in PRUNED_ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            curves = {}
            for arm in ARMS:
                points = curve(run_arm(arm, seed, args, Path(tmp)))
                curves[arm] = points
                steps, best = points[-1]
                print(f"seed {seed} {arm:>11}: best objective {best:.4f} after {steps} training steps")
            target = curves["tpe"][-1][1]
            for arm in PRUNED_ARMS:
                reached = steps_to_reach(curves[arm], target)
                if reached is None:
                    print(f"seed {seed} {arm}: did not reach the no-pruning best {target:.4f} (lost the winner)")
                else:
                    fractions[arm].append(reached / curves["tpe"][-1][0])
                    print(f"seed {seed} {arm}: reached the no-pruning best {target:.4f} after {reached} steps = "
                          f"{fractions[arm][-1]:.2f} of the {curves['tpe'][-1][0]} steps without pruning")
    for arm in PRUNED_ARMS:
        kept = len(fractions[arm])
        median = f"{statistics.median(fractions[arm]):.2f}" if kept else "-"
        print(f"{arm}: kept the winner in {kept} of {len(args.seeds)} seeds; median fraction of steps {median}")


if __name__ == "__main__":
    main()
