"""TTS health measures of attention alignments and stop gates: pure functions of tensors.

``alignments`` are (B, S, N): for each of S decoder steps, the attention weights over N text positions.
Each measure takes the valid lengths so padding never counts; each returns a 0-dim float tensor, the
mean over utterances of the per-utterance value (the word-timing errors: the mean over words).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tacotron2_lightning.cepstral_decorrelation import cepstral_decorrelation
from tacotron2_lightning.mcd import mel_cepstral_distortion
from tacotron2_lightning.model import lengths_to_mask


def _valid_steps(alignments: Tensor, decoder_lengths: Tensor | None) -> Tensor:
    batch, steps, _ = alignments.shape
    if decoder_lengths is None:
        return torch.ones(batch, steps, dtype=torch.bool, device=alignments.device)
    return lengths_to_mask(decoder_lengths.clamp(max=steps), steps)


def alignment_score(alignments: Tensor, decoder_lengths: Tensor | None = None) -> Tensor:
    """Mean over valid decoder steps of the largest attention weight (Coqui's ``alignment_diagonal_score``).

    1.0 is perfectly sharp attention, 1/N is uniform; a model that has learned to align scores high.
    """
    valid = _valid_steps(alignments, decoder_lengths).float()
    peak = alignments.float().max(dim=2).values  # (B, S)
    per_utterance = (peak * valid).sum(1) / valid.sum(1).clamp(min=1)
    return per_utterance.mean()


def _argmax_positions(alignments: Tensor, input_lengths: Tensor | None) -> Tensor:
    """(B, S) argmax text position of each decoder step, ignoring padded text positions."""
    if input_lengths is not None:
        pad = ~lengths_to_mask(input_lengths, alignments.size(2))
        alignments = alignments.masked_fill(pad.unsqueeze(1), -1.0)
    return alignments.argmax(dim=2)


def diagonality(alignments: Tensor, input_lengths: Tensor | None = None,
                decoder_lengths: Tensor | None = None, band: float = 0.2) -> Tensor:
    """Fraction of valid decoder steps whose attention peak lies within ``band`` of the diagonal.

    Position is relative: text position n / N against decoder step s / S, per utterance. Random
    attention gives about 0.3 for ``band=0.2``; a clean diagonal gives 1.0.
    """
    batch, steps, n_text = alignments.shape
    valid = _valid_steps(alignments, decoder_lengths)
    n_steps = valid.sum(1, keepdim=True).clamp(min=1).float()
    n_chars = (input_lengths if input_lengths is not None else torch.full((batch,), n_text,
               device=alignments.device)).unsqueeze(1).float().clamp(min=1)
    step_pos = (torch.arange(steps, device=alignments.device).float().unsqueeze(0) + 0.5) / n_steps
    text_pos = (_argmax_positions(alignments, input_lengths).float() + 0.5) / n_chars
    inside = ((text_pos - step_pos).abs() <= band) & valid
    return (inside.sum(1).float() / valid.sum(1).clamp(min=1)).mean()


def monotonicity(alignments: Tensor, input_lengths: Tensor | None = None,
                 decoder_lengths: Tensor | None = None) -> Tensor:
    """Fraction of consecutive valid decoder steps whose attention peak does not move backwards."""
    valid = _valid_steps(alignments, decoder_lengths)
    peaks = _argmax_positions(alignments, input_lengths)
    forward = peaks[:, 1:] >= peaks[:, :-1]
    pair_valid = valid[:, 1:] & valid[:, :-1]
    return ((forward & pair_valid).sum(1).float() / pair_valid.sum(1).clamp(min=1)).mean()


def gate_stop_rate(produced_lengths: Tensor, cap_frames: int | Tensor) -> Tensor:
    """Fraction of free-running utterances that stopped on their gate, before ``cap_frames`` (one cap, or a (B,)
    cap per utterance)."""
    return (produced_lengths < cap_frames).float().mean()


def duration_ratios(produced_lengths: Tensor, target_lengths: Tensor) -> Tensor:
    """(B,) frames synthesised over true frames, per utterance: 1.0 speaks as long as the recording, below
    stops early (or skips text), above babbles or runs into the cap."""
    return produced_lengths.float() / target_lengths.float().clamp(min=1)


def _per_utterance(score, predicted: Tensor, produced_lengths: Tensor, target: Tensor,
                   target_lengths: Tensor) -> Tensor:
    values = [score(predicted[i, :, : max(int(produced_lengths[i]), 1)].float().cpu().numpy(),
                    target[i, :, : int(target_lengths[i])].float().cpu().numpy())
              for i in range(predicted.size(0))]
    return torch.tensor(values, dtype=torch.float32)


def mel_cepstral_distortions(predicted: Tensor, produced_lengths: Tensor, target: Tensor,
                             target_lengths: Tensor) -> Tensor:
    """(B,) MCD-DTW in dB of each free-running mel against its recording (see :mod:`tacotron2_lightning.mcd`;
    NaN for an utterance silent throughout in both).

    ``predicted`` (B, C, T1) and ``target`` (B, C, T2) are padded natural-log mels with their valid lengths.
    """
    return _per_utterance(mel_cepstral_distortion, predicted, produced_lengths, target, target_lengths)


def cepstral_decorrelations(predicted: Tensor, produced_lengths: Tensor, target: Tensor,
                            target_lengths: Tensor, length_weighted: bool = True) -> Tensor:
    """(B,) cepstral decorrelation of each free-running mel against its recording, lower is better, length-weighted
    by default (see :mod:`tacotron2_lightning.cepstral_decorrelation`); arguments as
    :func:`mel_cepstral_distortions`."""
    def score(a, b):
        return cepstral_decorrelation(a, b, length_weighted=length_weighted)

    return _per_utterance(score, predicted, produced_lengths, target, target_lengths)


def word_position_errors(alignments: Tensor, word_timings: Tensor, input_lengths: Tensor, output_lengths: Tensor,
                         n_frames_per_step: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """How far the attention is from each word when the audio starts speaking it, and how far a clock would be.

    At each word's first mel frame ``f`` (decoder step ``f // n_frames_per_step``), the attention's expected
    encoder position ``sum_i i * a_i`` is compared with the word's symbol index; so is the constant-rate line
    ``f / n_frames * n_symbols`` that a model knowing nothing of timing would draw.

    Args:
        alignments: (B, S, N) teacher-forced attention.
        word_timings: (B, W, 2) long (symbol index of the word's first symbol, its first mel frame); rows padded
            with -1 (see :class:`~tacotron2_lightning.data.collate.TextMelCollate`).
        input_lengths: (B,) symbols per utterance.
        output_lengths: (B,) mel frames per utterance.
        n_frames_per_step: frames per decoder step.

    Returns:
        (attention_errors, line_errors, valid): (B, W) absolute distances in symbols (0 where not valid) and the
        (B, W) mask of real words inside the utterance's lengths.
    """
    batch, steps, n_text = alignments.shape
    symbol, frame = word_timings[..., 0], word_timings[..., 1]
    valid = ((symbol >= 0) & (frame >= 0) & (symbol < input_lengths.unsqueeze(1))
             & (frame < output_lengths.unsqueeze(1)))
    symbol, frame = symbol.clamp(min=0).float(), frame.clamp(min=0)
    weights = alignments.float() * lengths_to_mask(input_lengths, n_text).unsqueeze(1)
    positions = torch.arange(n_text, device=alignments.device, dtype=torch.float32)
    expected = (weights * positions).sum(2) / weights.sum(2).clamp(min=1e-12)  # (B, S)
    at_word = expected.gather(1, (frame // n_frames_per_step).clamp(max=steps - 1))
    line = frame.float() / output_lengths.float().clamp(min=1).unsqueeze(1) * input_lengths.float().unsqueeze(1)
    zero = torch.zeros((), device=alignments.device)
    return ((at_word - symbol).abs().where(valid, zero), (line - symbol).abs().where(valid, zero), valid)


def alignment_error(alignments: Tensor, word_timings: Tensor, input_lengths: Tensor, output_lengths: Tensor,
                    n_frames_per_step: int = 1) -> Tensor:
    """Mean over the batch's words of :func:`word_position_errors`' attention error, in symbols (NaN without
    words): 0 when the attention is on each word as the audio starts it."""
    errors, _, valid = word_position_errors(alignments, word_timings, input_lengths, output_lengths,
                                            n_frames_per_step)
    return errors.sum() / valid.sum()


def alignment_error_ratio(alignments: Tensor, word_timings: Tensor, input_lengths: Tensor, output_lengths: Tensor,
                          n_frames_per_step: int = 1) -> Tensor:
    """:func:`alignment_error` over the same error of the constant-rate line: 1.0 locates words no better than a
    clock; below 1 the attention knows where the audio pauses and changes pace (NaN without words)."""
    errors, line, _ = word_position_errors(alignments, word_timings, input_lengths, output_lengths,
                                           n_frames_per_step)
    return errors.sum() / line.sum()
