"""A paired sign-flip permutation test: is the mean of per-utterance differences B - A different from zero?

Under the null hypothesis each difference is as likely positive as negative, so flipping signs gives the
statistic's distribution: ``scipy.stats.permutation_test`` with one sample and ``permutation_type="samples"``.
Exact (all 2^n sign patterns) up to :data:`EXACT_UP_TO` utterances, Monte Carlo beyond; two-sided. Chosen over
Wilcoxon's signed-rank test because the mean difference is the quantity the report shows. With n pairs the
smallest exact p-value is 2 / 2^n: five utterances at least are needed to reach p < 0.1, six for p < 0.05.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

EXACT_UP_TO = 16  # 2^16 sign patterns: a few MB and milliseconds


def _mean(sample: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(sample, axis=axis)


def paired_permutation_p_value(differences: np.ndarray, rounds: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value of ``mean(differences) != 0``; NaNs are dropped; fewer than two differences, or all
    zero, give 1.0 (no sign pattern is more extreme than another)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size < 2 or np.all(d == 0):
        return 1.0
    result = stats.permutation_test((d,), _mean, permutation_type="samples", alternative="two-sided",
                                    vectorized=True, n_resamples=np.inf if d.size <= EXACT_UP_TO else rounds,
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)
