# ruff: noqa: RUF002
"""Exact conditional-binomial e-processes against scipy's binomial pmf."""

from __future__ import annotations

import numpy as np
from scipy import special, stats

from streammon.stats.counts import (
    GRID_LOG_RATIO,
    NULL_INDEX,
    log_e_left,
    log_e_right,
    log_likelihood_grid,
    log_prior,
)

K = np.array([[3.0, 0.0], [5.0, 2.0], [0.0, 0.0], [7.0, 4.0]])
EB = np.array([[1.0, 0.0], [3.0, 1.0], [0.0, 0.0], [2.0, 3.0]])
RATIO = np.array([[0.1, 0.2], [0.5, 0.5], [1.0, 1.0], [0.25, 2.0]])


def _binom_log_lr(phi: float, upto: int) -> float:
    """Σ log Binom(e_b; k, π(φ)) − log Binom(e_b; k, π(1)) over cells of windows ≤ upto."""
    k, eb, r = K[: upto + 1], EB[: upto + 1], RATIO[: upto + 1]
    alt = stats.binom.logpmf(eb, k, phi * r / (1 + phi * r))
    null = stats.binom.logpmf(eb, k, r / (1 + r))
    return float((alt - null).sum())


def test_grid_log_likelihood_differences_equal_binomial_log_ratios_at_every_prefix() -> None:
    """ℓ_t(φ) − ℓ_t(1) equals the exact binomial log-likelihood ratio after every window."""
    loglik = log_likelihood_grid(K, EB, RATIO)
    for t in range(K.shape[0]):
        for g in (0, 30, 75, 120):
            got = loglik[t, g] - loglik[t, NULL_INDEX]
            assert np.isclose(got, _binom_log_lr(float(np.exp(GRID_LOG_RATIO[g])), t))


def test_zero_event_window_leaves_the_e_process_unchanged() -> None:
    """A window whose cells have no events (k = 0) multiplies every e-value by exactly 1."""
    loglik = log_likelihood_grid(K, EB, RATIO)
    e = log_e_right(loglik, log_prior())
    np.testing.assert_array_equal(e[2], e[1])


def test_right_mixture_equals_brute_force_sum() -> None:
    """The suffix log-sum-exp equals a direct normalised sum over alternatives above φ0."""
    loglik = log_likelihood_grid(K, EB, RATIO)[-1]
    prior = log_prior()
    got = log_e_right(loglik[None], prior)[0]
    for g in (0, NULL_INDEX, 100):
        above = slice(g + 1, None)
        want = special.logsumexp(prior[above] + loglik[above]) - special.logsumexp(prior[above])
        assert np.isclose(got[g], want - loglik[g])
    assert got[-1] == -np.inf


def test_left_mixture_mirrors_the_right_one() -> None:
    """Testing φ < φ0 is the right-sided test on the reversed grid."""
    loglik = log_likelihood_grid(K, EB, RATIO)
    prior = log_prior()
    left = log_e_left(loglik, prior)
    g = 40
    below = slice(0, g)
    want = (special.logsumexp(prior[below] + loglik[-1, below])
            - special.logsumexp(prior[below]) - loglik[-1, g])
    assert np.isclose(left[-1, g], want)
