# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Prediction drift between arms: a sequential chi-square test over score histograms.

Each window gives per-arm histogram counts ``h_a,t`` and ``h_b,t`` over the same K score
bins. Per window the difference of bin proportions ``D_t = h_b,t/n_b,t − h_a,t/n_a,t`` has
covariance ``C · (1/n_a,t + 1/n_b,t)`` with ``C = diag(p) − p pᵀ`` under the null "both
models score the same". Windows are combined with weights ``w_t = n_a,t n_b,t / N_t``
(within-window comparison, never pooled across windows)::

    D̂ = Σ w_t D_t / I,   I = Σ w_t,   χ²_t = I · Σ_j D̂_j² / p̄_j     (Pearson form of D̂ᵀC⁺D̂ I)

with p̄ the pooled bin proportions so far and d = (#non-empty bins − 1). With the prior
D ~ N(0, τ² C) the d-variate normal mixture (mSPRT) gives the e-value::

    M_t = (1 + τ² I)^(−d/2) · exp( τ² I / (1 + τ² I) · χ²_t / 2 )

(:func:`streammon.stats.confseq.log_gaussian_chi2_mixture`). For a single window χ² is
exactly Pearson's statistic of the 2 × K table. Like the mean-difference test this is
an asymptotic confidence-sequence construction (normal approximation within windows,
plug-in p̄); flag drift when ``M_t ≥ 1/α``. It is a diagnostic: a model whose scores
move is not by itself a model that hurts users, so drift informs, it does not roll back.

References
----------
Johari et al. (2017), mSPRT; Howard et al. (2021), Sec. 3 (normal mixtures, vector
case via the d-dimensional Gaussian integral); Waudby-Smith et al. (2024), asymptotic CS.

"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammon.stats.cells import FloatArray, StatsInputError, check_alpha
from streammon.stats.confseq import log_gaussian_chi2_mixture, running_p_value
from streammon.stats.result import BoolArray

DEFAULT_DRIFT_TAU = 0.05


@dataclass(frozen=True)
class DriftResult:
    """Per-window drift evidence: Pearson-form ``chi2``, ``log_e``, ``p_value``, ``drift``."""

    chi2: FloatArray
    log_e: FloatArray
    p_value: FloatArray
    drift: BoolArray


def compute_drift(hist_a: FloatArray, hist_b: FloatArray, *, alpha: float = 0.05,
                  tau: float = DEFAULT_DRIFT_TAU) -> DriftResult:
    """Return the drift e-process after every window; histograms are ``(..., windows, bins)``."""
    check_alpha("drift alpha", alpha)
    h_a, h_b = _check(hist_a, "hist_a"), _check(hist_b, "hist_b")
    if h_a.shape != h_b.shape:
        raise StatsInputError(f"hist_a has shape {h_a.shape} but hist_b has {h_b.shape}")
    n_a, n_b = h_a.sum(axis=-1), h_b.sum(axis=-1)
    valid = (n_a > 0) & (n_b > 0)
    safe_a, safe_b = np.where(valid, n_a, 1.0), np.where(valid, n_b, 1.0)
    weight = np.where(valid, safe_a * safe_b / (safe_a + safe_b), 0.0)
    diff = np.where(valid[..., None], h_b / safe_b[..., None] - h_a / safe_a[..., None], 0.0)
    info = np.cumsum(weight, axis=-1)
    pooled = np.cumsum(np.where(valid[..., None], h_a + h_b, 0.0), axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_diff = np.cumsum(weight[..., None] * diff, axis=-2) / info[..., None]
        p_bar = pooled / pooled.sum(axis=-1, keepdims=True)
        terms = np.where(p_bar > 0, mean_diff**2 / p_bar, 0.0)
        chi2 = np.where(info > 0, info * terms.sum(axis=-1), 0.0)
    dof = np.maximum((p_bar > 0).sum(axis=-1) - 1, 0)
    log_e = np.where(dof > 0, log_gaussian_chi2_mixture(chi2, info, dof, tau), 0.0)
    peak = np.maximum.accumulate(log_e, axis=-1)
    return DriftResult(chi2, log_e, running_p_value(log_e), peak >= np.log(1.0 / alpha))


def _check(hist: FloatArray, name: str) -> FloatArray:
    arr = np.asarray(hist, dtype=np.float64)
    if arr.ndim < 2:
        raise StatsInputError(f"{name} must be (windows, bins); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise StatsInputError(f"{name} must hold finite counts >= 0")
    return arr
