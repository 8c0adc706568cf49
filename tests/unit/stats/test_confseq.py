# ruff: noqa: RUF002
"""Normal-mixture boundaries against direct numerical integration (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from streammon.stats.confseq import (
    HARM_RANGE,
    HARM_RANGE_WEIGHT,
    half_normal_boundary,
    log_half_normal_mixture,
    log_harm_mixture,
    log_normal_mixture,
    running_p_value,
)
from streammon.stats.incremental import log_harm

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


def _harm_integral(s: float, v: float) -> float:
    """Integrate exp(λS − λ²V/2) against 0.85·U[0.15τ, 1.2τ] + 0.15·N⁺(0, τ²), τ = ρ^-½."""
    tau = 1.0 / np.sqrt(RHO)
    low, high = HARM_RANGE[0] * tau, HARM_RANGE[1] * tau
    uniform, _ = integrate.quad(lambda lam: np.exp(lam * s - lam * lam * v / 2.0), low, high)
    return float(HARM_RANGE_WEIGHT * uniform / (high - low)
                 + (1.0 - HARM_RANGE_WEIGHT) * _mixture_integral(s, v, one_sided=True))


@pytest.mark.parametrize("scale", [1.0, -1.0, 4.0])
def test_harm_mixture_matches_quadrature_at_every_prefix(scale: float) -> None:
    """The closed form equals the integral, on rising, falling and steep paths."""
    s = PATH_S * scale
    got = np.exp(log_harm_mixture(s, PATH_V, RHO))
    want = [_harm_integral(a, b) for a, b in zip(s, PATH_V, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-7)


def test_harm_mixture_is_one_without_information_and_scalar_matches_vector() -> None:
    """M = 1 at V = 0; the decider's scalar version equals the vectorized one."""
    assert float(log_harm_mixture(np.array(0.0), np.array(0.0), RHO)) == 0.0
    s = np.array([0.0, 3.0, -40.0, 400.0, 1e-6])
    v = np.array([1e-9, 2.0, 100.0, 1e4, 1e-3])
    vector = log_harm_mixture(s, v, RHO)
    scalar = [log_harm(float(a), float(b), RHO) for a, b in zip(s, v, strict=True)]
    np.testing.assert_allclose(scalar, vector, rtol=1e-12)
    assert np.all(np.isfinite(vector))


def test_harm_mixture_is_a_martingale_under_no_harm() -> None:
    """Under S_t = Brownian motion (no harm) E[M_t] = 1 and P(max M ≥ 1/α) ≤ α (Ville)."""
    rng = np.random.default_rng(7)
    steps = rng.normal(size=(20_000, 100))
    v = np.arange(1.0, 101.0)
    log_m = log_harm_mixture(np.cumsum(steps, axis=1), v, 1.0 / 0.3**2)
    for var in (1.0, 30.0, 100.0):  # E[M(S, V)] over S ~ N(0, V), by quadrature
        sd = np.sqrt(var)
        mean, _ = integrate.quad(lambda x, var=var, sd=sd: float(np.exp(
            log_harm_mixture(np.array(x), np.array(var), 1.0 / 0.3**2)
            + stats.norm.logpdf(x, 0.0, sd))), -12.0 * sd, 12.0 * sd + 6.0 * var, limit=400)
        assert mean == pytest.approx(1.0, rel=1e-6)
    crossed = (log_m.max(axis=1) >= np.log(1 / 0.05)).mean()
    assert crossed <= 0.05
    assert crossed > 0.005  # the test has power to be wrong: it is not trivially conservative


def test_harm_mixture_grows_faster_than_the_half_normal_inside_its_range() -> None:
    """At the median path of a harm inside the range it gathers more evidence."""
    tau = 1.0 / np.sqrt(RHO)
    v = np.linspace(1.0, 200.0, 50)
    for theta in (0.3 * tau, 0.6 * tau, tau):
        assert np.all(log_harm_mixture(theta * v, v, RHO)[5:]
                      > log_half_normal_mixture(theta * v, v, RHO)[5:])
