"""Does a metric rank speech the way a listener would? A ladder of outputs whose order is known, on held-out speech.

On held-out built-in sentences (a sentence seed no run trains on), each candidate metric scores, against each
utterance's recording:

* the ladder of known order (rank 0 best; items of one rank are not ordered among themselves):

  ====  =========================================================================================
  0     the ground truth
  1     the ground truth time-stretched +-10 % (frames resampled); additive white noise at 30 dB SNR
  2     noise at 20 dB SNR; spectral smoothing (the mel magnitude blurred over +-2 channels)
  3     noise at 10 dB SNR; frames shuffled within 100 ms blocks
  4     the utterance's mean spectrum repeated (the blurry average); another sentence's recording
  ====  =========================================================================================

  Noise is added to the waveform and the mel computed again; the other items are made on the mel.
* the checkpoints of one training run (``--checkpoint-every`` steps up to ``--max-steps``), each synthesising the
  held-out texts free-running (the prenet's dropout on, torch seeded, capped at twice the recording). A checkpoint
  is *aligned* when its gate stops >= 95 % of the utterances, its attention peaks stay near the diagonal
  (free-running diagonality >= 0.8) and it says the whole text (median duration >= half the recording's: an
  untrained gate can stop after a few frames, over which any attention looks diagonal). The run is the recipe
  before the alignment aids (lr 1e-3, gate weight 10, no forward-sum loss: it aligns at ~400 steps; today's
  default, even without the forward-sum loss, aligns by step 50-100, too soon to give unaligned checkpoints);
  ``--quick`` trains the default recipe for 150 steps with a checkpoint every 15, which crosses from unaligned to
  aligned, and judges the checkpoints from step 30 on: at step 15 the guided attention has drawn the diagonal over
  a decoder that has learned nothing yet, so gate and diagonality call it aligned while it says nothing (every
  metric scores it among the worst).

Printed: each item's mean score per metric; per metric, Spearman's rho of the ladder's scores against the known
ranks (>= 0.9 passes); the checkpoints' scores with their alignment; whether every unaligned checkpoint scores worse
than every aligned one. The last line, for the metric that ``conf/objective/synthesis.yaml`` optimises::

    metric_validity: cepstral_decorrelation_sl spearman=0.979 aligned_beats_unaligned=true

Candidates: ``cepstral_decorrelation_sl`` (1 - the correlation of the DTW-aligned mel-cepstral trajectories, times
the length ratio, :mod:`tacotron2_lightning.cepstral_decorrelation`: ``val/cepstral_decorrelation_sl``, the
synthesis objective's value), ``cepstral_decorrelation`` (the same without the length weight), ``mcd`` (the
project's MCD, :mod:`tacotron2_lightning.mcd`: order 24, c0 out, both-silent frames out, DTW: ``val/mcd``),
``mcd_dtw_sl`` (MCD times the length ratio: MCD-DTW-SL), ``mcd_no_silence_rule`` (the same with silent frames
kept), ``mcd_legacy`` (every coefficient, silent frames kept, on the old DCT scale: ``val/mcd_dtw`` before
2026-12).

Examples:
    python benchmarks/metric_validity.py --quick              # ~10 minutes on 2 cores
    python benchmarks/metric_validity.py                      # 600 steps, 16 held-out sentences
    python benchmarks/metric_validity.py --checkpoints runs/x/checkpoints   # judge an existing run's step*.ckpt
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from benchmarks.train_process import run_train  # noqa: E402
from tacotron2_lightning import health  # noqa: E402
from tacotron2_lightning.audio import AudioConfig, MelSpectrogram, load_wav  # noqa: E402
from tacotron2_lightning.cepstral_decorrelation import cepstral_decorrelation  # noqa: E402
from tacotron2_lightning.mcd import mel_cepstral_distortion  # noqa: E402
from tacotron2_lightning.model import decoder_steps  # noqa: E402

OBJECTIVE_METRIC = "cepstral_decorrelation_sl"  # what conf/objective/synthesis.yaml optimises
ALIGNED = {"gate_stop": 0.95, "diagonality": 0.8, "duration": 0.5}
QUIET = ["logger=none", "callbacks.validation_media=null", "callbacks.rich_progress_bar=null"]
# The recipe before the alignment aids (issue 22): it aligns at ~400 steps, so its run has checkpoints of both kinds.
RECIPES = {"before": ["model.learning_rate=1e-3", "model.gate_positive_weight=10", "model.attention_prior_weight=0",
                      "model.align_loss_weight=0"],
           "default": []}


def _legacy(predicted: np.ndarray, target: np.ndarray) -> float:
    # The old value: every coefficient, silence kept, on the orthonormal DCT's scale (sqrt(2 C) times larger).
    return mel_cepstral_distortion(predicted, target, order=None, silence_db=None) * math.sqrt(2 * target.shape[0])


def _length_ratio(predicted: np.ndarray, target: np.ndarray) -> float:
    return max(predicted.shape[1], target.shape[1]) / min(predicted.shape[1], target.shape[1])


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "cepstral_decorrelation_sl": lambda predicted, target: cepstral_decorrelation(predicted, target,
                                                                                 length_weighted=True),
    "cepstral_decorrelation": cepstral_decorrelation,
    "mcd": mel_cepstral_distortion,
    "mcd_dtw_sl": lambda predicted, target: mel_cepstral_distortion(predicted, target) * _length_ratio(predicted,
                                                                                                      target),
    "mcd_no_silence_rule": lambda predicted, target: mel_cepstral_distortion(predicted, target, silence_db=None),
    "mcd_legacy": _legacy,
}


@dataclass(frozen=True)
class Utterance:
    """A held-out utterance: symbol ids, its recording's samples in [-1, 1] and log-mel (C, T)."""

    text: torch.Tensor
    wav: torch.Tensor
    mel: torch.Tensor


# ----------------------------------------------------------------------------------------------- the known ladder


def with_noise(wav: torch.Tensor, snr_db: float, seed: int) -> torch.Tensor:
    """``wav`` plus white Gaussian noise ``snr_db`` below its mean power, clipped to [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    power = float(wav.pow(2).mean())
    noise = torch.randn(wav.shape, generator=generator) * math.sqrt(power / 10 ** (snr_db / 10))
    return (wav + noise).clamp(-1.0, 1.0)


def stretched(mel: np.ndarray, factor: float) -> np.ndarray:
    """The mel ``factor`` times as long, each channel linearly interpolated over time."""
    frames = mel.shape[1]
    target = max(2, round(frames * factor))
    positions = np.linspace(0, frames - 1, target)
    return np.stack([np.interp(positions, np.arange(frames), channel) for channel in mel])


def smoothed(mel: np.ndarray, channels: float = 2.0) -> np.ndarray:
    """The mel magnitude blurred over frequency (a Gaussian of ``channels`` mel channels), back on the log scale."""
    return np.log(np.maximum(gaussian_filter1d(np.exp(mel), channels, axis=0, mode="nearest"), 1e-5))


def shuffled(mel: np.ndarray, block_frames: int, seed: int) -> np.ndarray:
    """The frames permuted at random inside consecutive blocks of ``block_frames``: every sound where it was to
    within a block, the order inside it lost."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([start + rng.permutation(min(block_frames, mel.shape[1] - start))
                            for start in range(0, mel.shape[1], block_frames)])
    return mel[:, order]


def mean_spectrum(mel: np.ndarray) -> np.ndarray:
    """The utterance's mean log-mel frame, repeated for its length: right on average, saying nothing."""
    return np.repeat(mel.mean(axis=1, keepdims=True), mel.shape[1], axis=1)


def ladder(utterances: Sequence[Utterance], audio: AudioConfig, seed: int = 0) -> list[tuple[str, int, list]]:
    """(name, known rank, one (C, T) log-mel per utterance) for each item of the ladder (see the module)."""
    to_mel = MelSpectrogram(audio)
    block = max(1, round(0.1 * audio.sampling_rate / audio.hop_length))  # 100 ms of frames
    mels = [u.mel.numpy().astype(np.float64) for u in utterances]

    def noisy(snr_db: float) -> list[np.ndarray]:
        return [to_mel(with_noise(u.wav, snr_db, seed + i)).numpy().astype(np.float64)
                for i, u in enumerate(utterances)]

    return [
        ("ground truth", 0, mels),
        ("stretched +10%", 1, [stretched(m, 1.1) for m in mels]),
        ("stretched -10%", 1, [stretched(m, 0.9) for m in mels]),
        ("noise 30 dB", 1, noisy(30.0)),
        ("noise 20 dB", 2, noisy(20.0)),
        ("smoothed", 2, [smoothed(m) for m in mels]),
        ("noise 10 dB", 3, noisy(10.0)),
        ("shuffled 100 ms", 3, [shuffled(m, block, seed + i) for i, m in enumerate(mels)]),
        ("mean spectrum", 4, [mean_spectrum(m) for m in mels]),
        ("other sentence", 4, [mels[(i + 1) % len(mels)] for i in range(len(mels))]),
    ]


def score(candidates: Sequence[np.ndarray], utterances: Sequence[Utterance], metric: Callable) -> float:
    """The metric's mean over the utterances of each candidate against its recording (NaNs left out)."""
    values = [metric(candidate, u.mel.numpy().astype(np.float64))
              for candidate, u in zip(candidates, utterances, strict=True)]
    return float(np.nanmean(values))


def ladder_spearman(scores: Sequence[float], ranks: Sequence[int]) -> float:
    """Spearman's rho of scores (lower is better) against the known ranks (0 best)."""
    return float(spearmanr(scores, ranks).statistic)


def aligned_beats_unaligned(scores: Sequence[float], aligned: Sequence[bool]) -> bool | None:
    """Whether every aligned checkpoint scores better (lower) than every unaligned one; None without both kinds."""
    good = [s for s, a in zip(scores, aligned, strict=True) if a]
    bad = [s for s, a in zip(scores, aligned, strict=True) if not a]
    if not good or not bad:
        return None
    return max(good) < min(bad)


# ------------------------------------------------------------------------------------------------- held-out data


def held_out(args: argparse.Namespace) -> tuple[list[Utterance], AudioConfig]:
    """``--heldout-size`` built-in sentences of ``--heldout-seed``, voice ``--voice``: ids, recordings, mels."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = [f"data.builtin.seed={args.heldout_seed}", f"data.builtin.size={args.heldout_size + 1}",
                 f"data.val_size={args.heldout_size}", f"data.builtin.voice={args.voice}", "data.cache_mels=false"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("validate")
    audio = AudioConfig(**{k: v for k, v in cfg.data.audio.items()})
    utterances = []
    for index, item in enumerate(datamodule.val_set.items):
        text, mel = datamodule.val_set[index][:2]
        wav, _ = load_wav(item.utterance.audio_path, audio.sampling_rate)
        utterances.append(Utterance(text, wav, mel))
    # Longest text first: the order TextMelCollate puts a batch in, so synthesis output i is utterance i's.
    return sorted(utterances, key=lambda u: -len(u.text)), audio


# --------------------------------------------------------------------------------------------------- checkpoints


def train_checkpoints(folder: Path, args: argparse.Namespace) -> list[tuple[int, Path]]:
    every = args.checkpoint_every
    overrides = [*QUIET, f"seed={args.seed}", f"data.builtin.voice={args.voice}", f"trainer.max_steps={args.max_steps}",
                 f"trainer.val_check_interval={args.max_steps}", f"paths.log_dir={folder}",
                 "callbacks.model_checkpoint.monitor=null", "callbacks.model_checkpoint.save_top_k=-1",
                 "callbacks.model_checkpoint.save_last=false", "callbacks.model_checkpoint.filename='step{step:06d}'",
                 f"callbacks.model_checkpoint.every_n_train_steps={every}", *RECIPES[args.recipe], *args.override]
    seconds = run_train(overrides, folder, args.threads)
    print(f"trained {args.max_steps} steps ({args.recipe}) in {seconds:.0f} s", flush=True)
    return find_checkpoints(folder)


def find_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(re.search(r"step=?(\d+)", p.name).group(1)), p) for p in folder.rglob("step*.ckpt")]
    return sorted(found)


@dataclass
class Synthesised:
    mels: list[np.ndarray]
    gate_stop: float
    diagonality: float
    duration: float  # median synthesised / recorded frames

    @property
    def aligned(self) -> bool:
        """Stops on its gate, attends along the diagonal, and says the whole text: a model that stops after a few
        frames (as an untrained gate can) has a trivially diagonal attention over them and has said nothing."""
        return (self.gate_stop >= ALIGNED["gate_stop"] and self.diagonality >= ALIGNED["diagonality"]
                and self.duration >= ALIGNED["duration"])


@torch.no_grad()
def synthesise(checkpoint: Path, utterances: Sequence[Utterance], seed: int) -> Synthesised:
    from tacotron2_lightning.data.collate import TextMelCollate
    from tacotron2_lightning.synthesis import load_for_synthesis

    module = load_for_synthesis(checkpoint)  # eval mode; the prenet's dropout stays on, as NVIDIA's
    r = module.config.n_frames_per_step
    text, input_lengths, _, _, output_lengths = TextMelCollate(r)([(u.text, u.mel) for u in utterances])[:5]
    if [len(u.text) for u in utterances] != input_lengths.tolist():
        raise ValueError("utterances must come longest text first (TextMelCollate's order)")
    torch.manual_seed(seed)
    caps = decoder_steps(2 * output_lengths, r)
    decoded = module.model.inference(text, input_lengths, max_decoder_steps=caps, warn_at_cap=False)
    lengths = decoded.lengths
    diagonality = health.diagonality(decoded.alignments, input_lengths, decoder_steps(lengths, r))
    mels = [decoded.mel_postnet[i, :, : max(int(lengths[i]), 1)].double().numpy() for i in range(len(utterances))]
    return Synthesised(mels, float((lengths < caps * r).float().mean()), float(diagonality),
                       float(health.duration_ratios(lengths, output_lengths).median()))


# ---------------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a small ladder and a short run: 8 sentences, the default recipe for 150 steps, a "
                             "checkpoint every 15")
    parser.add_argument("--voice", default="en-us", help="eSpeak voice of the training run and the held-out set")
    parser.add_argument("--heldout-seed", type=int, default=20_023)
    parser.add_argument("--heldout-size", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="before",
                        help="the training run's recipe (before: the recipe before the alignment aids)")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides for the training run")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="judge the step*.ckpt files under this folder instead of training")
    parser.add_argument("--keep", type=Path, default=None, help="keep the training run here")
    parser.add_argument("--from-step", type=int, default=0, help="judge the checkpoints from this step on")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.heldout_size, args.max_steps, args.checkpoint_every, args.recipe = 8, 150, 15, "default"
        args.from_step = 30
    torch.set_num_threads(args.threads)

    utterances, audio = held_out(args)
    print(f"{len(utterances)} held-out sentences ({args.voice}, seed {args.heldout_seed})", flush=True)
    items = ladder(utterances, audio, seed=args.seed)
    names = list(METRICS)
    print(f"\n{'ladder item':<22} {'rank':>4} " + " ".join(f"{n:>26}" for n in names))
    table = {name: [] for name in names}
    for item, rank, mels in items:
        row = [score(mels, utterances, METRICS[name]) for name in names]
        for name, value in zip(names, row, strict=True):
            table[name].append(value)
        print(f"{item:<22} {rank:>4} " + " ".join(f"{v:>26.3f}" for v in row), flush=True)
    ranks = [rank for _, rank, _ in items]
    spearman = {name: ladder_spearman(table[name], ranks) for name in names}

    with tempfile.TemporaryDirectory(prefix="metric-validity-") as tmp:
        folder = args.checkpoints or args.keep or Path(tmp)
        checkpoints = find_checkpoints(folder) if args.checkpoints else train_checkpoints(folder, args)
        checkpoints = [(step, path) for step, path in checkpoints if step >= args.from_step]
        if not checkpoints:
            raise SystemExit(f"no step*.ckpt under {folder}")
        print(f"\n{'checkpoint':<10} {'gate stop':>9} {'diagonal':>8} {'duration':>8} {'aligned':>7} " +
              " ".join(f"{n:>26}" for n in names))
        by_checkpoint = {name: [] for name in names}
        aligned = []
        for step, path in checkpoints:
            synthesised = synthesise(path, utterances, args.seed)
            aligned.append(synthesised.aligned)
            row = [score(synthesised.mels, utterances, METRICS[name]) for name in names]
            for name, value in zip(names, row, strict=True):
                by_checkpoint[name].append(value)
            print(f"step {step:<5} {synthesised.gate_stop:>9.2f} {synthesised.diagonality:>8.2f} "
                  f"{synthesised.duration:>8.2f} "
                  f"{str(synthesised.aligned).lower():>7} " + " ".join(f"{v:>26.3f}" for v in row), flush=True)

    print(f"\n{'metric':<26} {'ladder spearman':>15} {'aligned beats unaligned':>24}")
    verdicts = {}
    for name in names:
        beats = aligned_beats_unaligned(by_checkpoint[name], aligned)
        verdicts[name] = beats
        print(f"{name:<26} {spearman[name]:>15.3f} {str(beats).lower() if beats is not None else 'n/a':>24}")
    if all(aligned) or not any(aligned):
        print(f"(every checkpoint {'aligned' if all(aligned) else 'unaligned'}: the aligned/unaligned test needs both;"
              " change --max-steps, --checkpoint-every or --recipe)")
    beats = verdicts[OBJECTIVE_METRIC]
    print(f"metric_validity: {OBJECTIVE_METRIC} spearman={spearman[OBJECTIVE_METRIC]:.3f} "
          f"aligned_beats_unaligned={'n/a' if beats is None else str(beats).lower()}")


if __name__ == "__main__":
    main()
