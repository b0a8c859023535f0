"""The pieces of `compare`: mel cepstral distortion with DTW, the paired permutation test, the per-metric verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tacotron2_lightning.app.compare import compare_modules
from tacotron2_lightning.app.paired_statistics import paired_permutation_p_value
from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import synthetic_batch, tiny_config
from tuner_callbacks.registry import RegistryError

# MCD


@pytest.mark.parametrize(("differences", "expected"), [
    ([1.0] * 6, 2 / 64),  # all one sign: the two most extreme of 2^6 patterns
    ([-0.5] * 5, 2 / 32),
    ([0.0, 0.0, 0.0], 1.0),
    ([1.0, -1.0, 1.0, -1.0], 1.0),
    ([3.0, 1.0, math.nan], 2 / 4),  # NaN pairs are dropped
])
def test_exact_p_values(differences, expected):
    assert paired_permutation_p_value(np.array(differences)) == pytest.approx(expected)


def test_monte_carlo_p_values_for_many_pairs():
    rng = np.random.default_rng(1)
    assert paired_permutation_p_value(np.full(30, 0.2)) < 1e-3
    assert paired_permutation_p_value(rng.normal(size=40)) > 0.05
    values = rng.normal(size=40) + 0.1
    assert paired_permutation_p_value(values, seed=3) == paired_permutation_p_value(values, seed=3)  # seeded


# compare_modules


def utterances(count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Synthetic (text ids, log-mel) pairs of varying lengths."""
    pairs = []
    for index in range(count):
        text, input_lengths, mel, _, output_lengths = synthetic_batch((6 + index % 3,), (10 + index,), seed=index)
        pairs.append((text[0, : input_lengths[0]], mel[0, :, : output_lengths[0]]))
    return pairs


def test_a_damaged_model_loses_on_mel_loss_and_mcd_with_significance():
    torch.manual_seed(0)
    good = Tacotron2Module(tiny_config(max_decoder_steps=30))
    damaged = Tacotron2Module(tiny_config(max_decoder_steps=30))
    damaged.load_state_dict(good.state_dict())
    with torch.no_grad():
        # Every predicted frame tilted by a ramp over the channels: a spectral shape error, not just a level one.
        damaged.model.decoder.linear_projection.linear_layer.bias.add_(torch.linspace(-5.0, 5.0, 16))
    comparison = compare_modules(good, damaged, utterances(8), "good", "damaged")
    verdicts = {m.metric: m for m in comparison.metrics}
    assert verdicts["mel_loss"].verdict == "A better on mel loss (p=0.0078)"  # 2/2^8: all 8 pairs agree
    assert verdicts["mel_loss"].mean_difference > 0 and verdicts["mel_loss"].p_value == pytest.approx(2 / 256)
    assert verdicts["loss"].verdict.startswith("A better on loss")
    assert verdicts["mcd"].verdict == "A better on MCD (dB) (p=0.0078)"
    assert len(comparison.per_utterance["mcd"]["b"]) == 8
    assert "A better on mel loss (p=0.0078)" in comparison.verdict
    table = comparison.table()
    assert table.splitlines()[:3] == ["A = good", "B = damaged",
                                      "8 validation utterances, paired sign-flip permutation test, alpha = 0.05"]
    assert good.training and damaged.training  # modes restored
    assert "alignment_error" not in verdicts  # no word timings in these utterances


def test_word_timings_add_the_alignment_error_and_its_ratio_to_the_line():
    torch.manual_seed(0)
    a, b = Tacotron2Module(tiny_config(max_decoder_steps=30)), Tacotron2Module(tiny_config(max_decoder_steps=30))
    timed = [(text, mel, torch.tensor([[0, 0], [3, mel.size(1) // 2]])) for text, mel in utterances(6)]
    comparison = compare_modules(a, b, timed)
    verdicts = {m.metric: m for m in comparison.metrics}
    errors = comparison.per_utterance["alignment_error"]
    # The line puts word 2 (symbol 3) at frame T // 2 on symbol (T // 2) / T * N; word 1 is on it at frame 0.
    line = [abs((mel.size(1) // 2) / mel.size(1) * text.size(0) - 3) / 2 for text, mel, _ in timed]
    ratio = verdicts["alignment_error_ratio"]
    assert ratio.mean_a == pytest.approx(np.mean(errors["a"]) / np.mean(line), rel=1e-5)
    assert ratio.mean_b == pytest.approx(np.mean(errors["b"]) / np.mean(line), rel=1e-5)
    assert ratio.p_value == verdicts["alignment_error"].p_value  # one paired test: the line is the data's
    assert "alignment error ratio" in comparison.table()


def test_compare_names_an_incompatible_validation_set():
    model = Tacotron2Module(tiny_config())
    text = torch.tensor([12, 13, 14])
    with pytest.raises(RegistryError, match="B predicts 16 mel channels but the validation set has 80"):
        compare_modules(Tacotron2Module(tiny_config(n_mel_channels=80)), model, [(text, torch.zeros(80, 5))])
    with pytest.raises(RegistryError, match="The validation set is empty"):
        compare_modules(model, model, [])
