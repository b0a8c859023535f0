"""The beta-binomial alignment prior: where each decoder step is expected to attend, from the lengths alone.

For an utterance of N text symbols and S decoder steps, decoder step s (1-based) puts on text position n the
probability of a beta-binomial distribution over 0..N-1 with ``a = scaling * s`` and ``b = scaling * (S + 1 - s)``:
a soft diagonal, broad at small ``scaling`` and sharp at large. The idea is Flowtron's ``use_attn_prior`` and
RAD-TTS's ``betab_scaling_factor`` (Badlani et al., "One TTS Alignment To Rule Them All", 2022); ours is written in
torch with ``lgamma`` and normalises over exactly the N positions.

Added as ``weight * log(prior)`` to the attention's energies during teacher-forced training, it makes attention
start near the diagonal from the first step; annealed to 0 it leaves free-running synthesis independent of it.

Shapes: B batch, N text length, S decoder steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Floor of the prior before its log: a cell the prior rules out costs log(1e-8) ~ -18 in energy, not -inf, so that
# attention the content insists on can still go there (and no NaN reaches the softmax).
PRIOR_FLOOR = 1e-8


def beta_binomial_prior(n_text: int, n_steps: int, scaling: float = 1.0) -> Tensor:
    """(S, N) float32 beta-binomial prior: row s is the distribution over text positions of decoder step s.

    Example:
        >>> prior = beta_binomial_prior(5, 8)
        >>> prior.shape, bool(torch.allclose(prior.sum(1), torch.ones(8)))
        (torch.Size([8, 5]), True)
        >>> [int(i) for i in prior.argmax(1)]  # a diagonal
        [0, 0, 1, 2, 2, 3, 4, 4]
    """
    if n_text < 1 or n_steps < 1:
        raise ValueError(f"beta_binomial_prior needs n_text >= 1 and n_steps >= 1, got {n_text} and {n_steps}")
    if not scaling > 0:
        raise ValueError(f"beta_binomial_prior scaling must be > 0, got {scaling!r}")
    k = torch.arange(n_text, dtype=torch.float64).unsqueeze(0)  # (1, N)
    step = torch.arange(1, n_steps + 1, dtype=torch.float64).unsqueeze(1)  # (S, 1)
    a, b = scaling * step, scaling * (n_steps + 1 - step)
    n = n_text - 1

    def log_beta(x: Tensor, y: Tensor) -> Tensor:
        return torch.lgamma(x) + torch.lgamma(y) - torch.lgamma(x + y)

    log_choose = torch.lgamma(torch.tensor(n + 1.0)) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)
    log_pmf = log_choose + log_beta(k + a, n - k + b) - log_beta(a, b)
    return torch.softmax(log_pmf, dim=1).float()  # normalised in log space: exact, and no underflow to 0/0


class AttentionPrior:
    """Log beta-binomial priors for padded batches, each (text length, decoder steps) pair computed once.

    Args:
        scaling: the beta-binomial's concentration per decoder step (RAD-TTS: 1.0; Flowtron: 0.05). Larger is a
            sharper diagonal.

    Example:
        >>> prior = AttentionPrior(scaling=1.0)
        >>> log_prior = prior(torch.tensor([5, 3]), torch.tensor([8, 4]))
        >>> log_prior.shape  # padding is 0: no bias where the attention's own mask rules
        torch.Size([2, 8, 5])
    """

    def __init__(self, scaling: float = 1.0):
        if not scaling > 0:
            raise ValueError(f"AttentionPrior scaling must be > 0, got {scaling!r}")
        self.scaling = float(scaling)
        self._cache: dict[tuple[int, int], Tensor] = {}

    def log_prior(self, n_text: int, n_steps: int) -> Tensor:
        """(S, N) log of the floored prior for one utterance, on CPU; cached."""
        key = (n_text, n_steps)
        cached = self._cache.get(key)
        if cached is None:
            cached = beta_binomial_prior(n_text, n_steps, self.scaling).clamp_min(PRIOR_FLOOR).log()
            self._cache[key] = cached
        return cached

    def __call__(self, input_lengths: Tensor, decoder_lengths: Tensor, max_text: int | None = None,
                 max_steps: int | None = None) -> Tensor:
        """input_lengths (B,) text lengths, decoder_lengths (B,) decoder steps -> (B, S, N) log prior, 0 on padding,
        on the lengths' device."""
        texts, steps = input_lengths.tolist(), decoder_lengths.tolist()
        max_text = max(texts) if max_text is None else max_text
        max_steps = max(steps) if max_steps is None else max_steps
        out = torch.zeros(len(texts), max_steps, max_text)
        for row, (n_text, n_steps) in enumerate(zip(texts, steps, strict=True)):
            out[row, :n_steps, :n_text] = self.log_prior(n_text, n_steps)
        return out.to(input_lengths.device, non_blocking=True)
