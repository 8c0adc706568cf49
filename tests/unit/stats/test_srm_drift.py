# ruff: noqa: RUF002
"""Sample-ratio mismatch and prediction drift tests against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from streammon.stats import StatsInputError, compute_drift, compute_srm
from streammon.stats.srm import SRM_GRID, SRM_NULL_INDEX


def test_correct_router_is_not_flagged_across_a_ramp() -> None:
    """Assignments drawn at the intended (ramping) fraction do not trip the SRM test."""
    rng = np.random.default_rng(5)
    fraction = np.repeat([0.05, 0.1, 0.2, 0.5], 50)
    n_b = rng.binomial(60000, fraction).astype(float)
    result = compute_srm(60000 - n_b, n_b, fraction, alpha=0.001)
    assert not result.mismatch.any()


def test_broken_router_halts_quickly() -> None:
    """A router sending 5.5% instead of 5% is flagged within a few windows."""
    rng = np.random.default_rng(6)
    n_b = rng.binomial(60000, 0.055, size=30).astype(float)
    result = compute_srm(60000 - n_b, n_b, np.full(30, 0.05), alpha=0.001)
    assert result.mismatch[:10].any()
    assert np.all(np.diff(result.p_value) <= 0)


def test_point_prior_reduces_to_the_binomial_likelihood_ratio() -> None:
    """ℓ(φ) − ℓ(1) on the SRM grid equals scipy's binomial log-likelihood ratio."""
    from streammon.stats.counts import log_likelihood_grid

    n_b, total, f = np.array([310.0, 280.0]), np.array([6000.0, 6000.0]), 0.05
    r = f / (1 - f)
    loglik = log_likelihood_grid(total[:, None], n_b[:, None], np.full((2, 1), r), SRM_GRID)
    phi = np.exp(SRM_GRID[150])
    want = (stats.binom.logpmf(n_b, total, phi * r / (1 + phi * r))
            - stats.binom.logpmf(n_b, total, f)).cumsum()
    np.testing.assert_allclose(loglik[:, 150] - loglik[:, SRM_NULL_INDEX], want)


def test_srm_rejects_fractions_outside_the_unit_interval() -> None:
    """An intended fraction of 0 or 1 is a configuration error, reported by name."""
    with pytest.raises(StatsInputError, match="fraction"):
        compute_srm(np.ones(3), np.ones(3), np.array([0.1, 1.0, 0.1]))


def test_single_window_chi2_is_pearsons_statistic() -> None:
    """For one window the drift statistic equals scipy's chi-square of the 2×K table."""
    h_a = np.array([[500.0, 300.0, 150.0, 50.0]])
    h_b = np.array([[40.0, 35.0, 15.0, 10.0]])
    result = compute_drift(h_a, h_b)
    want = stats.chi2_contingency(np.vstack([h_a[0], h_b[0]]), correction=False).statistic
    assert result.chi2[0] == pytest.approx(want, rel=1e-10)


def test_same_score_distribution_shows_no_drift_and_a_shift_does() -> None:
    """Identical score histograms stay below 1/α; a shifted canary histogram is flagged."""
    rng = np.random.default_rng(8)
    p = np.array([0.4, 0.3, 0.2, 0.1])
    q = np.array([0.34, 0.3, 0.22, 0.14])
    h_a = rng.multinomial(20000, p, size=100).astype(float)
    same = compute_drift(h_a, rng.multinomial(2000, p, size=100).astype(float))
    moved = compute_drift(h_a, rng.multinomial(2000, q, size=100).astype(float))
    assert not same.drift.any()
    assert moved.drift[-1]
