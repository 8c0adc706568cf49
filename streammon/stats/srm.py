# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Sequential sample-ratio mismatch (SRM): checking the traffic split.

In window t the router should send each request to the canary with probability f_t (the
intended fraction, which changes during a ramp). Conditional on the window's total
``m_t = n_a,t + n_b,t`` the canary count is ``n_b,t ~ Binomial(m_t, π_t(φ))`` with
``π_t(φ) = φ r_t / (1 + φ r_t)``, ``r_t = f_t / (1 − f_t)``, where φ is the odds ratio of
actual to intended assignment (φ = 1: no mismatch). This is the two-category case of the
multinomial test of Lindon & Malek (2022) in the odds parametrisation that lets the
intended split change between windows; the log-likelihood
``ℓ_t(φ) = Σ_{s≤t} [n_b,s log φ − m_s log(1 + φ r_s)]`` is the one of
:mod:`streammon.stats.counts`. The e-value is the mixture over a fine grid of log φ with a
N(0, s²) prior (two-sided: too few *and* too many canary requests are mismatches)::

    M_t = Σ_g π_g exp(ℓ_t(φ_g) − ℓ_t(1)),       halt when M_t ≥ 1 / α_srm

``M_t`` is a nonnegative martingale under a correct router, exactly, so the halt is
anytime-valid; the p-value ``min(1, 1/max_{s≤t} M_s)`` is reported.

References
----------
Lindon & Malek (2022), "Anytime-valid inference for multinomial count data", NeurIPS;
Fabijan et al. (2019), "Diagnosing sample ratio mismatch in online controlled
experiments", KDD, for why an SRM invalidates every metric comparison.

"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammon.stats.cells import FloatArray, StatsInputError, check_alpha
from streammon.stats.confseq import running_p_value
from streammon.stats.counts import log_e_two_sided, log_likelihood_grid, log_prior
from streammon.stats.result import BoolArray

SRM_GRID = np.linspace(-1.0, 1.0, 201)
SRM_NULL_INDEX = 100
SRM_PRIOR_SD = 0.1


@dataclass(frozen=True)
class SrmResult:
    """Per-window SRM evidence: ``log_e`` (log M_t), ``p_value`` and the ``mismatch`` flag."""

    log_e: FloatArray
    p_value: FloatArray
    mismatch: BoolArray


def compute_srm(n_a: FloatArray, n_b: FloatArray, fraction: FloatArray, *,
                alpha: float = 0.001) -> SrmResult:
    """Return the SRM e-process after every window.

    ``n_a``/``n_b`` are per-window assignment counts shaped ``(..., windows)`` (sum the
    segments first), ``fraction`` the intended canary fraction per window, in (0, 1).
    """
    check_alpha("srm alpha", alpha)
    counts_a, counts_b = _per_window(n_a), _per_window(n_b)
    frac = np.asarray(fraction, dtype=np.float64)
    if counts_a.shape != counts_b.shape:
        raise StatsInputError(f"n_a has shape {counts_a.shape} but n_b has {counts_b.shape}")
    if frac.shape != counts_b.shape[-1:] and frac.shape != counts_b.shape:
        raise StatsInputError(
            f"fraction has shape {frac.shape}; give one intended fraction per window "
            f"({counts_b.shape[-1]} windows)"
        )
    if np.any(~np.isfinite(frac)) or np.any((frac <= 0.0) | (frac >= 1.0)):
        raise StatsInputError("fraction must lie strictly between 0 and 1 in every window")
    if np.any(counts_a < 0) or np.any(counts_b < 0):
        raise StatsInputError("assignment counts n_a and n_b must be >= 0")
    ratio = np.broadcast_to(frac / (1.0 - frac), counts_b.shape)
    loglik = log_likelihood_grid((counts_a + counts_b)[..., None], counts_b[..., None],
                                 ratio[..., None], SRM_GRID)
    log_e = log_e_two_sided(loglik, log_prior(SRM_GRID, SRM_PRIOR_SD), SRM_NULL_INDEX)
    peak = np.maximum.accumulate(log_e, axis=-1)
    return SrmResult(log_e, running_p_value(log_e), peak >= np.log(1.0 / alpha))


def _per_window(counts: FloatArray) -> FloatArray:
    arr = np.asarray(counts, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise StatsInputError("assignment counts contain NaN or inf")
    return arr
