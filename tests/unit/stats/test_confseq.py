# ruff: noqa: RUF002
"""Normal-mixture boundaries against direct numerical integration (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from streammon.stats.confseq import (
    half_normal_boundary,
    log_half_normal_mixture,
    log_normal_mixture,
    running_p_value,
)

RHO = 2.5
PATH_S = np.cumsum(np.array([0.3, -1.2, 2.0, 0.7, 1.9, -0.4, 2.2]))
PATH_V = np.arange(1.0, PATH_S.size + 1.0)


def _mixture_integral(s: float, v: float, one_sided: bool) -> float:
    """Integrate exp(λS − λ²V/2) against the (half-)normal prior with precision ρ."""
    sd = 1.0 / np.sqrt(RHO)
    lo = 0.0 if one_sided else -np.inf
    scale = 2.0 if one_sided else 1.0
    value, _ = integrate.quad(
        lambda lam: np.exp(lam * s - lam * lam * v / 2.0) * scale * stats.norm.pdf(lam, 0.0, sd),
        lo, np.inf)
    return float(value)


def test_half_normal_mixture_matches_quadrature_at_every_prefix() -> None:
    """The closed-form one-sided mixture equals the integral over λ ≥ 0 at every prefix."""
    got = np.exp(log_half_normal_mixture(PATH_S, PATH_V, RHO))
    want = [_mixture_integral(s, v, one_sided=True) for s, v in zip(PATH_S, PATH_V, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-7)


def test_two_sided_mixture_matches_quadrature_at_every_prefix() -> None:
    """The mSPRT closed form equals the integral over the full normal prior at every prefix."""
    got = np.exp(log_normal_mixture(PATH_S, PATH_V, RHO))
    want = [_mixture_integral(s, v, one_sided=False) for s, v in zip(PATH_S, PATH_V, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-7)


@pytest.mark.parametrize("alpha", [0.001, 0.0125, 0.05, 0.2])
def test_boundary_is_where_the_mixture_reaches_one_over_alpha(alpha: float) -> None:
    """``half_normal_boundary`` is the root of M(u, V) = 1/α found by brentq, for all V."""
    volumes = np.array([1e-3, 0.5, 3.0, 40.0, 1e4])
    got = half_normal_boundary(volumes, RHO, alpha)
    for v, u in zip(volumes, got, strict=True):
        root = optimize.brentq(
            lambda s, v=v: float(log_half_normal_mixture(np.array(s), np.array(v), RHO))
            - np.log(1.0 / alpha), 0.0, 1e4, xtol=1e-12)
        assert u == pytest.approx(root, rel=1e-9)


def test_boundary_is_infinite_without_information() -> None:
    """With zero variance process (no data) nothing can be rejected."""
    assert np.isinf(half_normal_boundary(np.array([0.0]), RHO, 0.05)[0])


def test_running_p_value_is_the_running_minimum_of_one_over_e() -> None:
    """The anytime p-value never increases and equals min(1, 1/max M)."""
    log_e = np.array([-1.0, 0.5, 0.2, 2.0, 1.0])
    want = np.minimum(1.0, 1.0 / np.maximum.accumulate(np.exp(log_e)))
    np.testing.assert_allclose(running_p_value(log_e), want)
