"""A paired sign-flip permutation test: is the mean of per-utterance differences B - A different from zero?

Under the null hypothesis each difference is as likely positive as negative, so flipping signs gives the
statistic's distribution. Exact (all 2^n sign patterns) up to :data:`EXACT_UP_TO` utterances, Monte Carlo
beyond; two-sided. Chosen over Wilcoxon's signed-rank test to need nothing beyond numpy, and because the
mean difference is the quantity the report shows. With n pairs the smallest exact p-value is 2 / 2^n: five
utterances at least are needed to reach p < 0.1, six for p < 0.05.
"""

from __future__ import annotations

import numpy as np

EXACT_UP_TO = 16  # 2^16 sign patterns: a few MB and milliseconds


def paired_permutation_p_value(differences: np.ndarray, rounds: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value of ``mean(differences) != 0``; NaNs are dropped, all-zero differences give 1.0."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0 or np.all(d == 0):
        return 1.0
    observed = abs(d.mean())
    if d.size <= EXACT_UP_TO:
        patterns = np.arange(2**d.size)[:, None] >> np.arange(d.size)[None, :] & 1
        signs = 1 - 2 * patterns
    else:
        signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(rounds, d.size))
    statistics = np.abs((signs * d).mean(axis=1))
    # A relative tolerance: sign patterns equal to the observed one must count despite rounding.
    extreme = int(np.count_nonzero(statistics >= observed * (1 - 1e-9)))
    if d.size <= EXACT_UP_TO:
        return extreme / len(signs)
    return (extreme + 1) / (rounds + 1)
