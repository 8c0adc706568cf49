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
Robbins (1970), "Statistical methods related to the law of the iterated logarithm", Ann.
Math. Statist. 41(5) — the method of mixtures: any mixing distribution gives a test
martingale, so the mixture may be chosen for the effects that matter.

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


HARM_RANGE = (0.15, 1.2)
"""Support of the harm prior's uniform part, in units of the mixture scale τ = 1/sqrt(rho)."""
HARM_RANGE_WEIGHT = 0.85
"""Its weight; the rest is the half-normal N⁺(0, τ²), which covers harms beyond the range."""


def log_harm_mixture(s: FloatArray, v: FloatArray, rho: FloatArray | float) -> FloatArray:
    """Return ``log M_t`` of the harm e-process: λ ~ 0.85 · U[0.15τ, 1.2τ] + 0.15 · N⁺(0, τ²).

    The half-normal alone (:func:`log_half_normal_mixture`) spends most of its mass where
    it does not help: near 0, on harms too small to find in a rollout, and above τ, on
    harms found within a window or two by any test. A uniform part over the harms that
    matter (0.15τ to 1.2τ, i.e. 0.75% to 6% relative at the default τ = 5%) puts more
    density where the test is slow (Robbins 1970, method of mixtures; Howard et al.
    2021, Sec. 3). Its martingale has the closed form, with ``a = 0.15τ``, ``b = 1.2τ``::

        M_U = sqrt(2π/V) / (b − a) · exp(S²/(2V)) · [Φ((bV − S)/√V) − Φ((aV − S)/√V)]

    (``M_U = 1`` at ``V = 0``), and a weighted mean of test martingales is one, so
    ``M = 0.85 M_U + 0.15 M_half-normal`` tests ``H0: mean ≤ 0`` like its parts.
    Measured in ``docs/statistics.md`` ("The harm prior"): against the half-normal it
    catches a −5% drop about one window sooner and a −2% drop slightly more often.
    """
    s_arr = np.asarray(s, dtype=np.float64)
    v_arr = np.asarray(v, dtype=np.float64)
    tau = 1.0 / np.sqrt(np.asarray(rho, dtype=np.float64))
    low, high = HARM_RANGE[0] * tau, HARM_RANGE[1] * tau
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(v_arr)
        x_high, x_low = (high * v_arr - s_arr) / root, (low * v_arr - s_arr) / root
        log_mass = _log_ndtr_difference(x_high, x_low)
        uniform = (s_arr * s_arr / (2.0 * v_arr) + _LOG_SQRT_2PI - np.log(root)
                   - np.log(high - low) + log_mass)
    uniform = np.where(v_arr > 0.0, uniform, 0.0)
    return np.asarray(np.logaddexp(np.log(HARM_RANGE_WEIGHT) + uniform,
                                   np.log1p(-HARM_RANGE_WEIGHT)
                                   + log_half_normal_mixture(s_arr, v_arr, rho)), np.float64)


def _log_ndtr_difference(x_high: FloatArray, x_low: FloatArray) -> FloatArray:
    """Return ``log(Φ(x_high) − Φ(x_low))`` for ``x_high > x_low``, in the accurate tail."""
    upper = x_low > 0.0  # both in the upper tail: Phi(-x_low) - Phi(-x_high)
    big = np.where(upper, special.log_ndtr(-x_low), special.log_ndtr(x_high))
    small = np.where(upper, special.log_ndtr(-x_high), special.log_ndtr(x_low))
    return np.asarray(big + np.log(-np.expm1(np.minimum(small - big, 0.0))), np.float64)


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
