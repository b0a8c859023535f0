"""Smoke run: ``python -m tacotron2_lightning`` teaches a small Tacotron2 one spoken-like phrase on CPU.

It checks an installation end to end: text front end -> mel front end -> Lightning training with NVIDIA's
loss -> free-running synthesis -> Griffin-Lim wav. The "speech" is a synthetic chirp, so the wav is not
intelligible; ``python train.py`` (once available) trains on real eSpeak speech.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytorch_lightning as pl
import torch

from tacotron2_lightning.audio import AudioConfig, MelSpectrogram, griffin_lim, save_wav
from tacotron2_lightning.config import Tacotron2Config
from tacotron2_lightning.module import Tacotron2Module
from tacotron2_lightning.text import text_to_sequence

log = logging.getLogger("tacotron2_lightning.smoke")

SMALL = dict(symbols_embedding_dim=128, encoder_embedding_dim=128, attention_rnn_dim=256, decoder_rnn_dim=256,
             prenet_dim=128, attention_dim=64, postnet_embedding_dim=128, prenet_dropout=0.0)


def chirp(seconds: float, sampling_rate: int) -> torch.Tensor:
    """A rising tone with a syllable-like amplitude envelope: something smooth for the model to learn."""
    t = torch.arange(int(seconds * sampling_rate)) / sampling_rate
    envelope = 0.5 * (1 - torch.cos(2 * torch.pi * 3 * t)).clamp(min=0.05)
    return 0.5 * envelope * torch.sin(2 * torch.pi * (150 + 200 * t) * t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps (default 60)")
    parser.add_argument("--text", default="Hello world, this is Smart Tuner.")
    parser.add_argument("--out", type=Path, default=Path("smoke.wav"), help="where to write the synthesis")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pl.seed_everything(0, verbose=False)

    audio = AudioConfig()
    text = torch.tensor([text_to_sequence(args.text)])
    mel = MelSpectrogram(audio)(chirp(1.2, audio.sampling_rate)).unsqueeze(0)
    gate = torch.zeros(1, mel.size(2))
    gate[0, -1] = 1.0
    batch = (text, torch.tensor([text.size(1)]), mel, gate, torch.tensor([mel.size(2)]))
    loader = torch.utils.data.DataLoader([batch] * args.steps, batch_size=None)

    module = Tacotron2Module(Tacotron2Config(**SMALL), guided_attention_weight=5.0)
    trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         gradient_clip_val=1.0, enable_model_summary=False)
    losses = []
    trainer.fit(module, loader)
    losses = trainer.callback_metrics
    log.info("final train/loss %.3f", float(losses["train/loss"]))

    module.eval()
    _, mel_out, _, _, lengths = module.model.inference(text, max_decoder_steps=4 * mel.size(2),
                                                       return_lengths=True)
    save_wav(args.out, griffin_lim(mel_out[0, :, : lengths[0]], audio), audio.sampling_rate)
    log.info("synthesised %d frames (target %d) -> %s", int(lengths[0]), mel.size(2), args.out)


if __name__ == "__main__":
    main()
