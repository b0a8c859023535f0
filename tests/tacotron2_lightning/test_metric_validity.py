"""The metric ladder at unit size: held-out built-in speech, degraded in known order, and two stand-in models (one
that drones an average spectrum to its cap, one that speaks the words with a blurred envelope and too fast).
``benchmarks/metric_validity.py`` runs the same ladder against a real training run's checkpoints."""

from __future__ import annotations

import argparse
import importlib.util
import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from tests.helpers.batches import DATA_DIR

ROOT = DATA_DIR.parents[1]

spec = importlib.util.spec_from_file_location("metric_validity", ROOT / "benchmarks" / "metric_validity.py")
metric_validity = importlib.util.module_from_spec(spec)
sys.modules["metric_validity"] = metric_validity
spec.loader.exec_module(metric_validity)
objective_metric = metric_validity.METRICS[metric_validity.OBJECTIVE_METRIC]


@pytest.fixture(scope="module")
def held_out(shared_cache):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMART_TUNER_CACHE", str(shared_cache))
        args = argparse.Namespace(heldout_seed=20_023, heldout_size=6, voice="en-us")
        return metric_validity.held_out(args)


def droning(mel: np.ndarray, seed: int) -> np.ndarray:
    """An unaligned model: one average spectrum with a little jitter, run to twice the recording's length."""
    rng = np.random.default_rng(seed)
    frames = 2 * mel.shape[1]
    return mel.mean(axis=1, keepdims=True) + rng.normal(0.0, 0.3, size=(mel.shape[0], frames))


def speaking_blurred(mel: np.ndarray) -> np.ndarray:
    """An aligned but immature model: the words in order, 15 % too fast, the envelope smeared over time and
    frequency."""
    faster = metric_validity.stretched(mel, 0.85)
    return gaussian_filter1d(gaussian_filter1d(faster, 3.0, axis=0), 2.0, axis=1)


def test_the_synthesis_objective_metric_orders_the_ladder_and_an_aligned_model_above_a_droning_one(held_out):
    utterances, audio = held_out
    items = metric_validity.ladder(utterances, audio)
    scores = [metric_validity.score(mels, utterances, objective_metric) for _, _, mels in items]
    assert scores[0] == pytest.approx(0.0, abs=1e-9)  # the ground truth
    assert metric_validity.ladder_spearman(scores, [rank for _, rank, _ in items]) >= 0.9
    targets = [u.mel.numpy().astype(np.float64) for u in utterances]
    unaligned = metric_validity.score([droning(m, i) for i, m in enumerate(targets)], utterances, objective_metric)
    aligned = metric_validity.score([speaking_blurred(m) for m in targets], utterances, objective_metric)
    assert metric_validity.aligned_beats_unaligned([aligned, unaligned], [True, False])


def test_the_ladder_items_are_what_they_say(held_out):
    utterances, audio = held_out
    items = {name: mels for name, _, mels in metric_validity.ladder(utterances, audio)}
    first = utterances[0].mel.numpy()
    assert items["stretched +10%"][0].shape[1] == round(first.shape[1] * 1.1)
    assert np.ptp(items["mean spectrum"][0], axis=1).max() == 0.0  # one frame repeated
    np.testing.assert_allclose(np.sort(items["shuffled 100 ms"][0].sum(axis=0)),  # the same frames, reordered
                               np.sort(first.astype(np.float64).sum(axis=0)), rtol=1e-9)
    assert items["other sentence"][0] is items["ground truth"][1]
    louder = [float(np.exp(m).mean()) for m in (items["noise 30 dB"][0], items["noise 10 dB"][0])]
    assert louder[0] < louder[1]  # more noise, more energy


def test_aligned_beats_unaligned_needs_both_kinds_and_strict_order():
    assert metric_validity.aligned_beats_unaligned([0.5, 0.6, 0.9], [True, True, False]) is True
    assert metric_validity.aligned_beats_unaligned([0.5, 0.9, 0.6], [True, True, False]) is False
    assert metric_validity.aligned_beats_unaligned([0.5, 0.6], [True, True]) is None
