"""``python -m tacotron2_lightning.app.synthesize``: text to a wav and an alignment plot, from a checkpoint file or
a registered model.

Command line::

    python -m tacotron2_lightning.app.synthesize --checkpoint last.ckpt --text "Hello world." --out hello.wav

writes ``hello.wav`` and the attention alignment ``hello.png``. The checkpoint is a file that
:func:`~tacotron2_lightning.synthesis.load_for_synthesis` reads (ours or NVIDIA's), or a version in the MLflow
model registry, ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` (``--tracking-uri`` names the store).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tuner_callbacks.cli_args import positive_int
from tuner_callbacks.registry.client import MODELS_PREFIX

if TYPE_CHECKING:
    from tacotron2_lightning.module import Tacotron2Module

# PyTorch, Lightning and the model load inside the functions that use them: `--help` and a bad argument answer at
# once instead of after seconds of imports.

log = logging.getLogger(__name__)


def load_checkpoint(checkpoint: str | Path, tracking_uri: str | None = None) -> Tacotron2Module:
    """:func:`~tacotron2_lightning.synthesis.load_for_synthesis` of a file, or of a registered version's checkpoint
    for ``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` (downloaded to a temporary folder).

    Raises:
        CheckpointError: as ``load_for_synthesis``; for a registered version also an unknown model, version or
            alias (the message lists those that exist; the cause is a
            :class:`~tuner_callbacks.registry.RegistryError`) or a version whose files are gone.
    """
    from tacotron2_lightning.synthesis import load_for_synthesis

    if str(checkpoint).startswith(MODELS_PREFIX):
        return _load_registered(str(checkpoint), tracking_uri)
    return load_for_synthesis(checkpoint)


def _load_registered(uri: str, tracking_uri: str | None) -> Tacotron2Module:
    """Loads a registry version's checkpoint; MLflow is imported only here, for those who use the registry."""
    import tempfile

    from tacotron2_lightning.checkpoint import CheckpointError
    from tacotron2_lightning.synthesis import load_for_synthesis
    from tuner_callbacks.registry import Registry, RegistryError

    with tempfile.TemporaryDirectory(prefix="synthesize-") as folder:
        try:
            registry = Registry(tracking_uri)
            version = registry.resolve(uri)
            path = registry.download(version, folder, include_data_config=False)
        except RegistryError as error:
            raise CheckpointError(str(error)) from error
        try:
            module = load_for_synthesis(path)
        except CheckpointError as error:
            raise CheckpointError(f"{uri} (version {version.version} of {version.name}): {error}") from error
    log.info("%s is version %s of %s", uri, version.version, version.name)
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tacotron2_lightning.app.synthesize",
        description="Synthesise text with a Tacotron2 checkpoint (Griffin-Lim audio) and plot its alignment.",
    )
    parser.add_argument("--checkpoint", required=True,
                        help="Lightning checkpoint of Tacotron2Module, an NVIDIA-format tacotron2_statedict.pt, or a "
                             "registered version: models:/NAME@ALIAS or models:/NAME/VERSION")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store of the model registry, for models:/ checkpoints (default: "
                             "MLFLOW_TRACKING_URI, else sqlite:///outputs/mlflow.db)")
    parser.add_argument("--text", required=True, help="text to speak; {ARPAbet} groups are allowed")
    parser.add_argument("--out", type=Path, required=True, help="the wav file to write")
    parser.add_argument("--alignment-plot", type=Path, default=None,
                        help="the alignment PNG to write (default: --out with .png)")
    parser.add_argument("--max-decoder-steps", type=positive_int, default=None,
                        help="cap on decoder steps (default: the model's max_decoder_steps)")
    parser.add_argument("--attention-window", type=int, nargs=2, default=None, metavar=("BACK", "FRONT"),
                        help="attend only from BACK symbols behind the previous step's peak to FRONT-1 ahead "
                             "(Coqui's windowing; keeps long inputs from skipping or repeating text); default: the "
                             "model's inference_window setting, off unless it was trained with it on")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed torch, for repeatable output (the prenet's dropout is on at inference)")
    parser.add_argument("--griffin-lim-iters", type=int, default=60, help="Griffin-Lim iterations (default 60)")
    return parser


def _fail(parser: argparse.ArgumentParser, error: BaseException) -> NoReturn:
    """Ends a user error the way argparse does: one line on stderr, exit status 2, no traceback."""
    message = " ".join(str(error).split())  # one line, whatever the message holds
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the command line; see the module docstring. Exits with status 2 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out.suffix.lower() != ".wav":
        parser.error(f"--out must be a .wav file, got {str(args.out)!r}")
    if args.griffin_lim_iters < 0:
        parser.error(f"--griffin-lim-iters must be >= 0, got {args.griffin_lim_iters}")
    if args.attention_window is not None and (args.attention_window[0] < 0 or args.attention_window[1] < 1):
        back, front = args.attention_window
        parser.error(f"--attention-window needs BACK >= 0 and FRONT >= 1, got {back} {front}")
    plot_path = args.alignment_plot or args.out.with_suffix(".png")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")

    import torch

    from tacotron2_lightning.audio import save_wav
    from tacotron2_lightning.checkpoint import CheckpointError
    from tacotron2_lightning.plots import alignment_figure, save_figure
    from tacotron2_lightning.synthesis import SynthesisInputError, synthesize

    try:
        module = load_checkpoint(args.checkpoint, tracking_uri=args.tracking_uri)
    except CheckpointError as error:
        _fail(parser, error)
    if args.attention_window is not None:
        module.model.decoder.inference_window = tuple(args.attention_window)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    started = time.perf_counter()
    try:
        wav, mel, alignment, stopped_on_gate = synthesize(
            module, args.text, max_decoder_steps=args.max_decoder_steps, griffin_lim_iters=args.griffin_lim_iters)
    except SynthesisInputError as error:
        _fail(parser, error)
    elapsed = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_wav(args.out, wav, module.audio.sampling_rate)
    save_figure(alignment_figure(alignment, title=f"{Path(str(args.checkpoint)).name}", text=args.text), plot_path)
    seconds = wav.numel() / module.audio.sampling_rate
    log.info("Wrote %s: %.2f s of audio, %d mel frames, %d Hz (synthesised in %.1f s)",
             args.out, seconds, mel.size(1), module.audio.sampling_rate, elapsed)
    log.info("Wrote alignment plot %s", plot_path)
    if stopped_on_gate:
        log.info("The gate stopped decoding after %d decoder steps", alignment.size(0))
    else:
        cap = args.max_decoder_steps or module.config.max_decoder_steps
        log.warning("Decoding hit the cap of %d decoder steps before the gate fired: the audio is probably cut "
                    "off or babbling (raise --max-decoder-steps, or the model has not learnt to stop)", cap)


if __name__ == "__main__":
    main()
