"""Tacotron2's model hyperparameters, named and defaulted as in NVIDIA's ``hparams.py``.

NVIDIA/tacotron2 (commit 185cd24e) keeps every setting in one ``HParams`` object; the model-shaping ones
live here so that a config written for NVIDIA's code maps one-to-one. Audio settings are in
:class:`tacotron2_lightning.audio.AudioConfig`, optimisation settings on the LightningModule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tacotron2_lightning.dataclass_config import as_dataclass
from tacotron2_lightning.text.symbols import symbols


@dataclass
class Tacotron2Config:
    """Hyperparameters of :class:`tacotron2_lightning.model.Tacotron2` (NVIDIA's names and defaults).

    Example:
        >>> small = Tacotron2Config(symbols_embedding_dim=128, encoder_embedding_dim=128)
        >>> small.n_symbols
        148
    """

    # Text input.
    n_symbols: int = len(symbols)  # 148: pad, punctuation, letters, 84 ARPAbet phones
    symbols_embedding_dim: int = 512

    # Encoder: convolutions then one bidirectional LSTM (encoder_embedding_dim / 2 per direction).
    encoder_kernel_size: int = 5
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 512

    # Decoder.
    n_mel_channels: int = 80
    n_frames_per_step: int = 1  # NVIDIA's code supports 1 only; ours also trains with more
    decoder_rnn_dim: int = 1024
    prenet_dim: int = 256
    max_decoder_steps: int = 1000
    gate_threshold: float = 0.5
    p_attention_dropout: float = 0.1
    p_decoder_dropout: float = 0.1
    # NVIDIA keeps the prenet's dropout on in eval() and at inference (it helps free-running
    # decoding); 0.0 turns it off, which is how the reference outputs were produced.
    prenet_dropout: float = 0.5

    # Location-sensitive attention.
    attention_rnn_dim: int = 1024
    attention_dim: int = 128
    attention_location_n_filters: int = 32
    attention_location_kernel_size: int = 31

    # Inference only (off: NVIDIA's): each free-running step may attend only from ``inference_window_back``
    # positions behind the previous step's peak to ``inference_window_front`` ahead of it (Coqui's ``windowing``),
    # so that long inputs cannot skip or repeat text. Training and the state_dict are unaffected.
    inference_window: bool = False
    inference_window_back: int = 2
    inference_window_front: int = 6

    # Postnet: postnet_n_convolutions conv + BatchNorm layers.
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5

    # Zero the padded mel frames and saturate the padded gate logits before the loss.
    mask_padding: bool = True

    def __post_init__(self) -> None:
        positive = (
            "n_symbols", "symbols_embedding_dim", "encoder_kernel_size", "encoder_n_convolutions",
            "encoder_embedding_dim", "n_mel_channels", "n_frames_per_step", "decoder_rnn_dim",
            "prenet_dim", "max_decoder_steps", "attention_rnn_dim", "attention_dim",
            "attention_location_n_filters", "attention_location_kernel_size", "postnet_embedding_dim",
            "postnet_kernel_size", "inference_window_front",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Tacotron2Config.{name} must be a positive integer, got {value!r}")
        if isinstance(self.inference_window_back, bool) or not isinstance(self.inference_window_back, int) \
                or self.inference_window_back < 0:
            raise ValueError("Tacotron2Config.inference_window_back must be an integer >= 0, got "
                             f"{self.inference_window_back!r}")
        if not isinstance(self.inference_window, bool):
            raise ValueError(f"Tacotron2Config.inference_window must be true or false, got {self.inference_window!r}")
        if self.postnet_n_convolutions < 2:
            raise ValueError(
                f"Tacotron2Config.postnet_n_convolutions must be at least 2, got {self.postnet_n_convolutions!r}"
            )
        for name in ("encoder_kernel_size", "postnet_kernel_size", "attention_location_kernel_size"):
            if getattr(self, name) % 2 == 0:
                # "same" padding of (k - 1) / 2 needs an odd kernel to keep the sequence length.
                raise ValueError(f"Tacotron2Config.{name} must be odd, got {getattr(self, name)!r}")
        if self.encoder_embedding_dim % 2:
            raise ValueError(
                "Tacotron2Config.encoder_embedding_dim must be even (the BiLSTM gives half to each "
                f"direction), got {self.encoder_embedding_dim!r}"
            )
        if self.symbols_embedding_dim != self.encoder_embedding_dim:
            # NVIDIA's encoder convolutions map embedding_dim -> embedding_dim with no projection.
            raise ValueError(
                "Tacotron2Config.symbols_embedding_dim must equal encoder_embedding_dim, got "
                f"{self.symbols_embedding_dim!r} and {self.encoder_embedding_dim!r}"
            )
        for name in ("p_attention_dropout", "p_decoder_dropout", "prenet_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"Tacotron2Config.{name} must be in [0, 1), got {value!r}")
        if not 0.0 < self.gate_threshold < 1.0:
            raise ValueError(f"Tacotron2Config.gate_threshold must be in (0, 1), got {self.gate_threshold!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Tacotron2Config:
        """Builds a config from a mapping (a dict or Hydra's DictConfig), naming any key that is not a field."""
        return as_dataclass(cls, values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
