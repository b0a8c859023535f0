"""TextMelCollate: NVIDIA's padding, ordering and gate targets, and errors that name the bad item."""

from __future__ import annotations

import pytest
import torch

from tacotron2_lightning.data.collate import TextMelCollate

N_MELS = 4


def item(text_length: int, mel_length: int, n_mels: int = N_MELS):
    """A pair whose every value encodes the text length, so pairings can be checked after sorting."""
    text = torch.arange(1, text_length + 1) * 100 + text_length  # non-zero: padding zeros stay visible
    mel = torch.full((n_mels, mel_length), float(text_length)) + torch.arange(mel_length) / 1000
    return text, mel


# Text lengths deliberately not in mel order, with a tie (3, 3) to pin down the tie order.
TEXT_LENGTHS = [3, 7, 3, 5]
MEL_LENGTHS = [10, 4, 8, 13]


def collated(n_frames_per_step=1):
    batch = [item(n, t) for n, t in zip(TEXT_LENGTHS, MEL_LENGTHS, strict=True)]
    return batch, TextMelCollate(n_frames_per_step)(batch)


def test_sorted_by_text_length_descending_with_stable_ties():
    _, (text, input_lengths, _, _, output_lengths) = collated()
    assert input_lengths.tolist() == [7, 5, 3, 3]
    assert input_lengths.dtype == torch.long and output_lengths.dtype == torch.long
    # The two length-3 items keep their batch order (positions 0 then 2, mels 10 then 8).
    assert output_lengths.tolist() == [4, 13, 10, 8]


def test_text_zero_padded_and_pairings_preserved():
    batch, (text, input_lengths, mel, _, output_lengths) = collated()
    assert text.shape == (4, 7) and text.dtype == torch.long
    for row in range(4):
        n, t = int(input_lengths[row]), int(output_lengths[row])
        assert torch.all(text[row, n:] == 0)
        assert torch.all(text[row, :n] % 100 == n)  # this row's text has length n ...
        assert torch.allclose(mel[row, :, :t].floor(), torch.full((N_MELS, t), float(n)))  # ... and so has its mel
        original = next(m for x, m in batch if len(x) == n and m.size(1) == t)
        assert torch.equal(mel[row, :, :t], original)


@pytest.mark.parametrize(("r", "expected_t_max"), [(1, 13), (3, 15)])
def test_mel_zero_padded_to_a_multiple_of_frames_per_step(r, expected_t_max):
    _, (_, _, mel, gate, output_lengths) = collated(n_frames_per_step=r)
    assert mel.shape == (4, N_MELS, expected_t_max) and mel.dtype == torch.float32
    assert gate.shape == (4, expected_t_max) and gate.dtype == torch.float32
    assert output_lengths.tolist() == [4, 13, 10, 8]  # real lengths, not rounded
    for row, t in enumerate(output_lengths.tolist()):
        assert torch.all(mel[row, :, t:] == 0)
        assert torch.all(mel[row, :, :t] != 0)


@pytest.mark.parametrize("r", [1, 3])
def test_gate_is_one_from_the_decoder_step_holding_the_last_real_frame_on(r):
    _, (_, _, _, gate, output_lengths) = collated(n_frames_per_step=r)
    for row, t in enumerate(output_lengths.tolist()):
        expected = torch.zeros(gate.size(1))
        expected[(t - 1) // r * r:] = 1  # r=1: NVIDIA's "from the last real frame on"
        assert torch.equal(gate[row], expected)
        # Each decoder step's r frames agree, so the one gate logit per step has a single target.
        assert all(len(set(gate[row, s:s + r].tolist())) == 1 for s in range(0, gate.size(1), r))


def test_single_item_and_exact_multiple():
    text, lengths, mel, gate, out = TextMelCollate(2)([item(2, 6)])
    assert text.shape == (1, 2) and mel.shape == (1, N_MELS, 6) and gate[0].tolist() == [0, 0, 0, 0, 1, 1]
    assert lengths.tolist() == [2] and out.tolist() == [6]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "empty batch"),
        ([item(3, 5), item(2, 5, n_mels=N_MELS + 1)], "batch item 1: mel has 5 channels, but item 0 has 4"),
        ([item(3, 5), item(2, 5), (torch.zeros(0, dtype=torch.long), torch.ones(N_MELS, 3))], "batch item 2: text"),
        ([item(3, 5), (torch.tensor([1, 2]), torch.ones(N_MELS, 0))], "batch item 1: mel has 0 frames"),
        ([(torch.tensor([1, 2]), torch.ones(5))], "batch item 0: mel must be a 2-D"),
        ([(torch.ones(2, 2, dtype=torch.long), torch.ones(N_MELS, 3))], "batch item 0: text_ids must be a 1-D"),
        ([item(3, 5), (torch.tensor([1]),)], "batch item 1: expected a"),
    ],
)
def test_errors_name_the_position(batch, message):
    with pytest.raises(ValueError, match=message):
        TextMelCollate()(batch)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_frames_per_step(bad):
    with pytest.raises(ValueError, match=f"n_frames_per_step.*{bad!r}"):
        TextMelCollate(bad)
