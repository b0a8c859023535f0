"""Tiny Tacotron2 configs and synthetic padded batches in NVIDIA's collate layout, and the reference data folder."""

from __future__ import annotations

from pathlib import Path

import torch

from tacotron2_lightning.config import Tacotron2Config

# The reference files: NVIDIA's state_dict listing, its forward outputs, text front-end vectors.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def tiny_config(**overrides) -> Tacotron2Config:
    """A Tacotron2 small enough for a CPU test step in milliseconds (the reference file's sizes)."""
    values = dict(
        symbols_embedding_dim=32, encoder_embedding_dim=32, decoder_rnn_dim=64, attention_rnn_dim=64,
        prenet_dim=32, attention_dim=16, attention_location_n_filters=4, postnet_embedding_dim=32,
        n_mel_channels=16, max_decoder_steps=60,
    )
    values.update(overrides)
    return Tacotron2Config(**values)


def synthetic_batch(text_lengths=(10, 6), mel_lengths=(24, 12), n_mel_channels=16, n_frames_per_step=1,
                    seed=0):
    """A padded batch sorted by text length, mel padded to a multiple of n_frames_per_step, gate 1 from
    the last real frame on: (text_padded, input_lengths, mel_padded, gate_padded, output_lengths)."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(text_lengths)
    max_text = max(text_lengths)
    max_mel = -(-max(mel_lengths) // n_frames_per_step) * n_frames_per_step
    text = torch.zeros(batch, max_text, dtype=torch.long)
    mel = torch.zeros(batch, n_mel_channels, max_mel)
    gate = torch.zeros(batch, max_mel)
    time = torch.linspace(0, 1, max_mel)
    for i, (n_text, n_mel) in enumerate(zip(text_lengths, mel_lengths, strict=True)):
        text[i, :n_text] = torch.randint(12, 64, (n_text,), generator=generator)
        # Smooth, learnable curves: sines of rising frequency per channel, differing per utterance.
        freqs = torch.arange(1, n_mel_channels + 1).unsqueeze(1) * 6.0
        mel[i, :, :n_mel] = torch.sin(freqs * time[:n_mel].unsqueeze(0))
        gate[i, n_mel - 1:] = 1.0
    return text, torch.tensor(text_lengths), mel, gate, torch.tensor(mel_lengths)


class RepeatedBatch(torch.utils.data.Dataset):
    """A dataset of ``length`` copies of one pre-collated batch (use with ``DataLoader(batch_size=None)``)."""

    def __init__(self, batch, length: int):
        self.batch = batch
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        return self.batch


def repeated_loader(batch, length: int):
    return torch.utils.data.DataLoader(RepeatedBatch(batch, length), batch_size=None)
