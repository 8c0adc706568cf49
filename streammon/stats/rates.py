# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""The rare-event metric test: matched-cohort rate ratio with exact anytime-valid decisions.

Harm is decided by the conditional binomial e-process of :mod:`streammon.stats.counts` at
the null φ = 1 (rate ratio canary/baseline), with alternatives on the harmful side only;
non-inferiority by the same e-process at the margin's rate ratio
``φ_m = 1 ± margin / λ̂_a`` (rounded on the grid towards the stricter claim), with
alternatives on the harmless side. The point estimate is the Mantel–Haenszel rate ratio
over cells, ``φ̂ = Σ_c e_b,c n_a,c / N_c  /  Σ_c e_a,c n_b,c / N_c`` (Rothman & Greenland,
"Modern Epidemiology", ch. 15), a stratified estimator that never pools across cells;
absolute effects are ``(φ − 1) · λ̂_a`` with λ̂_a the cumulative baseline rate.
"""

from __future__ import annotations

import numpy as np

from streammon.stats.cells import Cells, FloatArray
from streammon.stats.confseq import running_p_value
from streammon.stats.counts import (
    DEFAULT_PRIOR_SD,
    GRID_LOG_RATIO,
    NULL_INDEX,
    grid_lower_bound,
    grid_upper_bound,
    log_e_left,
    log_e_right,
    log_likelihood_grid,
    log_prior,
)
from streammon.stats.result import BoolArray, SequenceResult, running_bounds


def compute_rate_test(
    cells: Cells,
    *,
    bad_direction: str,
    alpha: float,
    margin: float = 0.0,
    prior_sd: float = DEFAULT_PRIOR_SD,
) -> SequenceResult:
    """Return rate-ratio estimates, bounds and exact decisions after every window."""
    valid = (cells.n_a > 0) & (cells.n_b > 0)
    k = np.where(valid, cells.sum_a + cells.sum_b, 0.0)
    events_b = np.where(valid, cells.sum_b, 0.0)
    ratio = np.where(valid, cells.n_b / np.where(valid, cells.n_a, 1.0), 0.0)
    loglik = log_likelihood_grid(k, events_b, ratio)
    prior = log_prior(GRID_LOG_RATIO, prior_sd)
    right, left = log_e_right(loglik, prior), log_e_left(loglik, prior)
    threshold = float(np.log(1.0 / alpha))
    rate_a = _cumulative_rate(cells, valid)
    low, up = running_bounds(grid_lower_bound(right, threshold), grid_upper_bound(left, threshold))
    harm_e, ni_e = _decision_evidence(right, left, rate_a, margin, bad_direction)
    phi_hat = _mantel_haenszel(cells, valid)
    n_a = np.cumsum(np.where(valid, cells.n_a, 0.0).sum(axis=-1), axis=-1)
    n_b = np.cumsum(np.where(valid, cells.n_b, 0.0).sum(axis=-1), axis=-1)
    with np.errstate(invalid="ignore"):
        lower = np.where(rate_a > 0, np.expm1(low) * rate_a, -np.inf)
        upper = np.where(rate_a > 0, np.expm1(up) * rate_a, np.inf)
    return SequenceResult(
        effect=(phi_hat - 1.0) * rate_a,
        relative=phi_hat - 1.0,
        lower=lower,
        upper=upper,
        harm=np.logical_or.accumulate(harm_e >= threshold, axis=-1),
        noninferior=np.logical_or.accumulate(ni_e >= threshold, axis=-1),
        p_harm=running_p_value(harm_e),
        n_a=n_a,
        n_b=n_b,
        log_e_harm=harm_e,
    )


def _decision_evidence(right: FloatArray, left: FloatArray, rate_a: FloatArray, margin: float,
                       bad_direction: str) -> tuple[FloatArray, FloatArray]:
    """Return (log e for harm at φ = 1, log e for non-inferiority at the margin)."""
    step = 1.0 if bad_direction == "increase" else -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        phi_m = 1.0 + step * margin / rate_a
        log_m = np.where(rate_a > 0, np.log(np.maximum(phi_m, 1e-300)), 0.0)
    if bad_direction == "increase":
        index = np.searchsorted(GRID_LOG_RATIO, log_m, side="right") - 1
        harm, ni_side = right[..., NULL_INDEX], left
    else:
        index = np.searchsorted(GRID_LOG_RATIO, log_m, side="left")
        harm, ni_side = left[..., NULL_INDEX], right
    inside = (index >= 0) & (index < GRID_LOG_RATIO.size)
    picked = np.take_along_axis(ni_side, np.clip(index, 0, GRID_LOG_RATIO.size - 1)[..., None],
                                axis=-1)[..., 0]
    return harm, np.where(inside, picked, -np.inf)


def _cumulative_rate(cells: Cells, valid: BoolArray) -> FloatArray:
    events = np.cumsum(np.where(valid, cells.sum_a, 0.0).sum(axis=-1), axis=-1)
    exposure = np.cumsum(np.where(valid, cells.n_a, 0.0).sum(axis=-1), axis=-1)
    return np.asarray(np.where(exposure > 0, events / np.maximum(exposure, 1e-300), 0.0),
                      dtype=np.float64)


def _mantel_haenszel(cells: Cells, valid: BoolArray) -> FloatArray:
    total = np.where(valid, cells.n_a + cells.n_b, 1.0)
    num = np.cumsum(np.where(valid, cells.sum_b * cells.n_a / total, 0.0).sum(axis=-1), axis=-1)
    den = np.cumsum(np.where(valid, cells.sum_a * cells.n_b / total, 0.0).sum(axis=-1), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(den > 0, num / den, np.nan), dtype=np.float64)
