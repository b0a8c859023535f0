"""The beta-binomial alignment prior: a normalised diagonal, cached per length pair, training-time only."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import betabinom

from tacotron2_lightning.alignment_prior import PRIOR_FLOOR, AttentionPrior, beta_binomial_prior
from tacotron2_lightning.model import Tacotron2
from tacotron2_lightning.module import Tacotron2Module
from tests.helpers.batches import synthetic_batch, tiny_config


@pytest.mark.parametrize(("n_text", "n_steps", "scaling"), [(1, 5, 1.0), (7, 3, 1.0), (12, 40, 0.05), (30, 90, 2.0)])
def test_prior_is_scipy_beta_binomial_normalised_over_the_text(n_text, n_steps, scaling):
    prior = beta_binomial_prior(n_text, n_steps, scaling)
    steps = torch.arange(1, n_steps + 1, dtype=torch.float64)
    expected = torch.tensor(betabinom(n_text - 1, (scaling * steps).numpy()[:, None],
                                      (scaling * (n_steps + 1 - steps)).numpy()[:, None]).pmf(range(n_text)))
    torch.testing.assert_close(prior, expected.float(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(prior.sum(1), torch.ones(n_steps))


def test_prior_peak_moves_forward_along_the_diagonal():
    peaks = beta_binomial_prior(20, 60, 1.0).argmax(1)
    assert bool((peaks[1:] >= peaks[:-1]).all())
    assert int(peaks[0]) == 0 and int(peaks[-1]) == 19
    # Larger scaling: a sharper diagonal.
    sharp, broad = beta_binomial_prior(20, 60, 4.0), beta_binomial_prior(20, 60, 0.25)
    assert sharp.max(1).values.mean() > broad.max(1).values.mean()


@pytest.mark.parametrize(("args", "match"), [((0, 4), "n_text"), ((3, 0), "n_steps"), ((3, 4, 0.0), "scaling"),
                                             ((3, 4, float("nan")), "scaling")])
def test_bad_prior_arguments_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        beta_binomial_prior(*args)


def test_batch_prior_is_padded_with_zero_and_cached_per_length_pair():
    prior = AttentionPrior(scaling=1.0)
    input_lengths, decoder_lengths = torch.tensor([5, 3, 5]), torch.tensor([8, 4, 8])
    log_prior = prior(input_lengths, decoder_lengths, max_text=6, max_steps=9)
    assert log_prior.shape == (3, 9, 6)
    torch.testing.assert_close(log_prior[0, :8, :5], beta_binomial_prior(5, 8).clamp_min(PRIOR_FLOOR).log())
    assert bool((log_prior[1, 4:] == 0).all()) and bool((log_prior[1, :, 3:] == 0).all())
    assert set(prior._cache) == {(5, 8), (3, 4)}  # two pairs computed, the repeated one reused
    cached = prior._cache[(5, 8)]
    prior(input_lengths, decoder_lengths)
    assert prior._cache[(5, 8)] is cached


def test_prior_bias_pulls_attention_onto_the_diagonal():
    torch.manual_seed(0)
    model = Tacotron2(tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0)).eval()
    text, text_lengths, mel, _, mel_lengths = synthetic_batch()
    log_prior = AttentionPrior(1.0)(text_lengths, mel_lengths, text.size(1), mel.size(2))
    plain = model(text, text_lengths, mel, mel_lengths)[3]
    guided = model(text, text_lengths, mel, mel_lengths, attention_prior=5.0 * log_prior)[3]
    prior = log_prior.exp() * (log_prior != 0)

    def overlap(alignments):  # attention mass the prior expects, per valid step
        return float((alignments * prior).sum() / mel_lengths.sum())

    assert overlap(guided) > overlap(plain) + 0.05
    # Padded text positions stay masked under the prior.
    assert float(guided[1, :, 6:].abs().max()) == 0.0


def test_training_step_uses_the_prior_and_validation_does_not():
    torch.manual_seed(0)
    config = tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0)
    module = Tacotron2Module(config, attention_prior_weight=3.0).eval()
    batch = synthetic_batch()
    seen = []
    module.model.decoder.register_forward_hook(lambda m, args, out: seen.append(args[3] if len(args) > 3 else None))
    module.training_step(batch, 0)
    assert seen[-1] is not None and seen[-1].shape == (2, 24, 10)
    module._shared_step(batch, "val")
    assert seen[-1] is None  # validation measures the model alone
    module.attention_prior_weight = 0.0  # annealed to 0 (as ParamScheduler does): NVIDIA's attention again
    module.training_step(batch, 0)
    assert seen[-1] is None


def test_inference_never_uses_the_prior():
    torch.manual_seed(0)
    config = tiny_config(prenet_dropout=0.0, p_attention_dropout=0.0, p_decoder_dropout=0.0)
    with_prior = Tacotron2Module(config, attention_prior_weight=5.0).eval()
    without = Tacotron2Module(config).eval()
    without.load_state_dict(with_prior.state_dict())
    text = synthetic_batch()[0][:1]
    a = with_prior.model.inference(text, max_decoder_steps=10, warn_at_cap=False)
    b = without.model.inference(text, max_decoder_steps=10, warn_at_cap=False)
    torch.testing.assert_close(a.mel_postnet, b.mel_postnet)
    torch.testing.assert_close(a.alignments, b.alignments)
