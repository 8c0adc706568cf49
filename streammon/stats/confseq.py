# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Normal-mixture boundaries: mixture SPRT e-values and confidence-sequence radii.

Let ``S_t`` be a sum of independent increments with mean zero under the null and
(predictable) variance process ``V_t``. For every fixed λ, ``exp(λ S_t − λ² V_t / 2)`` is
a nonnegative martingale; mixing λ over a prior keeps it one, and Ville's inequality
``P(∃t: M_t ≥ 1/α) ≤ α`` makes any test "reject when ``M_t ≥ 1/α``" valid under
continuous monitoring. All functions are vectorized over numpy arrays and work in log
space (:func:`scipy.special.log_ndtr`).

References
----------
Howard, Ramdas, McAuliffe & Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 49(2), Sec. 3.2 and Propositions 4–5 (normal
mixture boundaries of arXiv:1810.08240).
Johari, Koomen, Pekelis & Walsh (2017), "Peeking at A/B tests: why it matters, and what
to do about it", KDD — the mixture SPRT (mSPRT) with a normal mixing distribution.
Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024), "Time-uniform central limit theory
and asymptotic confidence sequences", Ann. Statist. — validity with estimated variances.

"""

from __future__ import annotations

import numpy as np
from scipy import special

from streammon.stats.cells import FloatArray

_NEWTON_STEPS = 8
_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


def log_half_normal_mixture(s: FloatArray, v: FloatArray, rho: FloatArray | float) -> FloatArray:
    """Return ``log M_t`` of the one-sided (half-normal) mixture martingale.

    Mixing ``exp(λS − λ²V/2)`` over λ ~ N⁺(0, 1/ρ) (half-normal, λ ≥ 0) gives
    (Howard et al. 2021, one-sided normal mixture)::

        M = 2 · sqrt(ρ / (V + ρ)) · exp(S² / (2 (V + ρ))) · Φ(S / sqrt(V + ρ))

    It grows only when ``S`` is large and positive, so it tests ``H0: mean ≤ 0``.
    """
    s_arr = np.asarray(s, dtype=np.float64)
    total = np.asarray(v, dtype=np.float64) + rho
    return np.asarray(
        np.log(2.0)
        + 0.5 * np.log(rho / total)
        + s_arr * s_arr / (2.0 * total)
        + special.log_ndtr(s_arr / np.sqrt(total)),
        dtype=np.float64,
    )


def log_normal_mixture(s: FloatArray, v: FloatArray, rho: FloatArray | float) -> FloatArray:
    """Return ``log M_t`` of the two-sided normal mixture (the mSPRT).

    λ ~ N(0, 1/ρ) gives ``M = sqrt(ρ / (V + ρ)) · exp(S² / (2 (V + ρ)))`` (Howard et al.
    2021, normal mixture; Johari et al. 2017 mSPRT with τ² = 1/ρ).
    """
    s_arr = np.asarray(s, dtype=np.float64)
    total = np.asarray(v, dtype=np.float64) + rho
    return np.asarray(0.5 * np.log(rho / total) + s_arr * s_arr / (2.0 * total), np.float64)


def half_normal_boundary(v: FloatArray, rho: FloatArray | float, alpha: float) -> FloatArray:
    """Return ``u(V)`` with ``P(∃t: S_t ≥ u(V_t)) ≤ α`` (one-sided mixture boundary).

    ``u`` solves ``log_half_normal_mixture(u, V, ρ) = log(1/α)``. With ``x = u/sqrt(V+ρ)``
    the equation is ``x²/2 + log Φ(x) = c``, ``c = log(1/(2α)) + ½ log((V+ρ)/ρ)``; the
    left side is increasing and convex, so Newton's method from ``sqrt(2c)`` converges
    in a few steps. Entries with ``V = 0`` get ``u = +inf``.
    """
    v_arr = np.asarray(v, dtype=np.float64)
    total = v_arr + rho
    c = np.log(1.0 / (2.0 * alpha)) + 0.5 * np.log(total / rho)
    x = np.sqrt(2.0 * c)
    for _ in range(_NEWTON_STEPS):
        log_cdf = special.log_ndtr(x)
        g = 0.5 * x * x + log_cdf - c
        slope = x + np.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_cdf)
        x = x - g / slope
    u = x * np.sqrt(total)
    return np.asarray(np.where(v_arr > 0.0, u, np.inf), dtype=np.float64)


def log_gaussian_chi2_mixture(chi2: FloatArray, info: FloatArray, dof: FloatArray,
                              tau: float) -> FloatArray:
    """Return ``log M`` of the d-dimensional normal mixture for a chi-square statistic.

    For an estimate D̂ ~ N(D, C/I) in d dimensions and the prior D ~ N(0, τ² C), the
    mixture likelihood ratio against ``D = 0`` is (the d-variate mSPRT)::

        M = (1 + τ² I)^(−d/2) · exp( τ² I / (1 + τ² I) · χ² / 2 ),  χ² = I · D̂ᵀ C⁻¹ D̂

    which for d = 1 is Johari et al.'s mSPRT. Used by :mod:`streammon.stats.drift`.
    """
    shrink = tau * tau * np.asarray(info, dtype=np.float64)
    return np.asarray(
        -0.5 * np.asarray(dof) * np.log1p(shrink) + shrink / (1.0 + shrink) * chi2 / 2.0,
        dtype=np.float64,
    )


def running_p_value(log_e: FloatArray) -> FloatArray:
    """Return the anytime-valid p-value ``min(1, 1 / max_{s≤t} M_s)`` along the last axis."""
    peak = np.maximum.accumulate(np.asarray(log_e, dtype=np.float64), axis=-1)
    return np.asarray(np.minimum(1.0, np.exp(-peak)), dtype=np.float64)
