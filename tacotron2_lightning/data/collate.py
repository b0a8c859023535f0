"""NVIDIA Tacotron2's ``TextMelCollate``: pad a list of (text, mel) pairs into one training batch.

Reproduces ``data_utils.TextMelCollate`` of NVIDIA/tacotron2 (commit 185cd24e): the batch is sorted by
text length, longest first (the encoder packs padded sequences, which needs descending lengths), text and
mel are zero-padded, the mel length is rounded up to a multiple of ``n_frames_per_step`` (the decoder emits
that many frames per step) and the gate target is 1 from the last real frame on. Items that also carry word
timings (:class:`~tacotron2_lightning.data.timings.TimedTextMelDataset`) add a sixth, padded element.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

logger = logging.getLogger(__name__)

TextMelBatch = tuple[torch.Tensor, ...]
"""NVIDIA's five tensors, plus ``word_timings`` when the items carry them."""


class TextMelCollate:
    """Zero-pads (text_ids, mel) pairs into NVIDIA's 5-tuple batch, sorted by text length (longest first).

    Each item is ``(text_ids, mel)``: a 1-D integer tensor of ``N_i`` symbol ids and a ``(C, T_i)`` float
    mel spectrogram. The result, with ``B`` items, ``N_max = max N_i`` and ``T_max = max T_i`` rounded up to
    a multiple of ``n_frames_per_step``, is:

    - ``text_padded``: ``(B, N_max)`` long, zero-padded.
    - ``input_lengths``: ``(B,)`` long, the ``N_i``, in descending order.
    - ``mel_padded``: ``(B, C, T_max)`` float, zero-padded.
    - ``gate_padded``: ``(B, T_max)`` float, 0 before the last real frame and 1 from it on (with r > 1, from
      the first frame of the decoder step that holds the last real frame).
    - ``output_lengths``: ``(B,)`` long, the real ``T_i`` (not rounded).

    When every item is a triple ``(text_ids, mel, word_timings)``, with ``word_timings`` a ``(W_i, 2)`` long tensor of
    (symbol index, first mel frame) per word, the batch has a sixth tensor:

    - ``word_timings``: ``(B, W_max, 2)`` long, padded with -1.

    NVIDIA-format data (pairs) keeps NVIDIA's 5-tuple. Row ``i`` of every tensor belongs to the same utterance.
    Ties in text length keep their order in the batch (a stable sort), so a batch always collates the same way.

    Args:
        n_frames_per_step: Decoder frames per step (NVIDIA's ``hparams.n_frames_per_step``).

    Example:
        >>> collate = TextMelCollate(n_frames_per_step=2)
        >>> batch = [(torch.tensor([5, 6]), torch.ones(80, 3)), (torch.tensor([7, 8, 9]), torch.ones(80, 4))]
        >>> text, text_lengths, mel, gate, mel_lengths = collate(batch)
        >>> text.tolist(), text_lengths.tolist(), tuple(mel.shape), mel_lengths.tolist()
        ([[7, 8, 9], [5, 6, 0]], [3, 2], (2, 80, 4), [4, 3])
        >>> gate.tolist()
        [[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """

    def __init__(self, n_frames_per_step: int = 1):
        if isinstance(n_frames_per_step, bool) or not isinstance(n_frames_per_step, int) or n_frames_per_step <= 0:
            raise ValueError(f"n_frames_per_step must be a positive integer, got {n_frames_per_step!r}")
        self.n_frames_per_step = n_frames_per_step

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_frames_per_step={self.n_frames_per_step})"

    def __call__(self, batch: Sequence[tuple[torch.Tensor, ...]]) -> TextMelBatch:
        """Collates ``batch``; raises ValueError naming the position of the first malformed item."""
        self._check(batch)
        # NVIDIA: torch.sort(..., descending=True). stable=True makes ties deterministic (input order).
        input_lengths, order = torch.sort(
            torch.tensor([len(item[0]) for item in batch], dtype=torch.long), dim=0, descending=True, stable=True
        )
        text_padded = torch.zeros(len(batch), int(input_lengths[0]), dtype=torch.long)
        for row, index in enumerate(order.tolist()):
            text = batch[index][0]
            text_padded[row, : text.size(0)] = text

        num_mels = batch[0][1].size(0)
        max_target_len = max(item[1].size(1) for item in batch)
        r = self.n_frames_per_step
        max_target_len = -(-max_target_len // r) * r  # round up: the decoder consumes r frames per step

        mel_padded = torch.zeros(len(batch), num_mels, max_target_len, dtype=torch.float)
        gate_padded = torch.zeros(len(batch), max_target_len, dtype=torch.float)
        output_lengths = torch.empty(len(batch), dtype=torch.long)
        for row, index in enumerate(order.tolist()):
            mel = batch[index][1]
            mel_padded[row, :, : mel.size(1)] = mel
            # The model predicts one gate per decoder step of r frames; the whole last step must say "stop",
            # or its frames would ask for 0 and 1 at once and the gate could never fire. r=1 is NVIDIA's.
            last_step_start = (mel.size(1) - 1) // self.n_frames_per_step * self.n_frames_per_step
            gate_padded[row, last_step_start:] = 1
            output_lengths[row] = mel.size(1)
        if len(batch[0]) == 2:
            return text_padded, input_lengths, mel_padded, gate_padded, output_lengths
        word_timings = torch.full((len(batch), max(item[2].size(0) for item in batch), 2), -1, dtype=torch.long)
        for row, index in enumerate(order.tolist()):
            timings = batch[index][2]
            word_timings[row, : timings.size(0)] = timings
        return text_padded, input_lengths, mel_padded, gate_padded, output_lengths, word_timings

    @staticmethod
    def _check(batch: Sequence[tuple[torch.Tensor, ...]]) -> None:
        # NVIDIA would fail later with an opaque index/shape error (or silently train on an empty
        # utterance); name the culprit instead so a bad dataset entry can be found.
        if len(batch) == 0:
            raise ValueError("cannot collate an empty batch (got 0 items)")
        num_mels = None
        arity = len(batch[0]) if isinstance(batch[0], (tuple, list)) else None
        for position, item in enumerate(batch):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3) or len(item) != arity:
                raise ValueError(f"batch item {position}: expected a (text_ids, mel) pair or a (text_ids, mel, "
                                 f"word_timings) triple like item 0, got {_describe(item)}")
            text, mel = item[:2]
            if not isinstance(text, torch.Tensor) or text.dim() != 1:
                shape = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
                raise ValueError(f"batch item {position}: text_ids must be a 1-D tensor, got {shape}")
            if text.numel() == 0:
                raise ValueError(f"batch item {position}: text_ids is empty (0 symbols)")
            if not isinstance(mel, torch.Tensor) or mel.dim() != 2:
                shape = tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__
                raise ValueError(f"batch item {position}: mel must be a 2-D (channels, frames) tensor, got {shape}")
            if mel.size(1) == 0:
                raise ValueError(f"batch item {position}: mel has 0 frames (shape {tuple(mel.shape)})")
            if num_mels is None:
                num_mels = mel.size(0)
            elif mel.size(0) != num_mels:
                raise ValueError(
                    f"batch item {position}: mel has {mel.size(0)} channels, but item 0 has {num_mels}"
                )
            if len(item) == 3:
                timings = item[2]
                if not isinstance(timings, torch.Tensor) or timings.dim() != 2 or timings.size(1) != 2:
                    shape = tuple(timings.shape) if isinstance(timings, torch.Tensor) else type(timings).__name__
                    raise ValueError(f"batch item {position}: word_timings must be a (words, 2) tensor, got {shape}")


def _describe(item: object) -> str:
    if isinstance(item, (tuple, list)):
        return f"a {type(item).__name__} of {len(item)}"
    return type(item).__name__
