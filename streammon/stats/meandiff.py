# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Matched-cohort mean difference with an anytime-valid (mixture SPRT) confidence sequence.

For binary and continuous metrics. Within each cell c = (window, segment) with both arms
non-empty the effect is estimated as ``d_c = x̄_b − x̄_a`` with variance
``v_c = σ̂²_a/n_a + σ̂²_b/n_b``; cells are combined with inverse-variance weights
``w_c = 1/v_c``, never pooled::

    Δ̂_t = Σ_{c≤t} w_c d_c / I_t,    I_t = Σ_{c≤t} w_c        (information)

The variances σ̂² are *not* the cell's own (noisy, and correlated with d_c in small or
lopsided cells): per segment, the variance of both arms pooled over windows ≤ t,
replaced by the arm's own variance from earlier windows where that is larger and rests
on at least :data:`MIN_ARM_N` samples (binary: p̃(1−p̃), p̃ = (Σx + ½)/(n + 1)). Because
the router splits every segment alike, the weights never mix segments in proportions
the split chose, so a ramp plus base-rate drift cannot fake an effect (Simpson).

With the harm-signed effect θ = ∓Δ (minus when a decrease hurts), ``S_t = I_t (θ̂_t −
θ)`` is a sum of independent N(0, w_c) increments with variance process ``V_t = I_t``,
so the one-sided half-normal mixture boundary u(V) (Howard et al. 2021, Props. 4–5;
Johari et al. 2017 mSPRT with mixing variance τ² = 1/ρ) yields the running-intersected
confidence sequence ``θ ∈ [θ̂_t − u(I_t)/I_t, θ̂_t + u(I_t)/I_t]`` (the bounds shown).
Promote when the upper end is below the margin. Harm (rollback) is the harm
e-process ``M(S_t, I_t)`` at θ = 0 reaching 1/α, with the mixture of
:func:`streammon.stats.confseq.log_harm_mixture` (uniform over the harms that matter
plus the half-normal): it is the e-value the decider averages across metrics, so one
metric alone decides as the averaged test does. Near the boundary the two can differ
by a window: a rollback may come while the shown lower end still touches 0.

The mixing scale is relative, τ = ``tau_rel`` · |μ̂_baseline|, and **fixed at the start
of the rollout**: μ̂_baseline is the cumulative baseline mean up to the first window with
at least :data:`SCALE_MIN_N` baseline samples, and stays that value afterwards (before
it, the running mean), so the mixture does not follow the data. ``tau_min`` (metric
units, e.g. a non-inferiority margin fixed by the spec) floors τ. See
``docs/statistics.md`` for its tuning.

References
----------
Johari et al. (2017), "Peeking at A/B tests", KDD, mSPRT
``Λ_t = sqrt(V/(V+τ²)) exp(τ² θ̂² / (2V(V+τ²)))`` with V = 1/I_t.
Howard et al. (2021), Ann. Statist. 49(2), normal mixture boundaries.
Waudby-Smith et al. (2024), asymptotic confidence sequences (plug-in variances).

"""

from __future__ import annotations

import numpy as np

from streammon.stats.cells import Cells, FloatArray
from streammon.stats.confseq import half_normal_boundary, log_harm_mixture, running_p_value
from streammon.stats.result import SequenceResult, delta_bounds, harm_signed, running_bounds

MIN_ARM_N = 30.0
SCALE_MIN_N = 100.0
DEFAULT_TAU_REL = 0.05


def compute_mean_diff(
    cells: Cells,
    *,
    kind: str,
    bad_direction: str,
    alpha: float,
    margin: float = 0.0,
    tau_rel: float = DEFAULT_TAU_REL,
    tau_min: float = 0.0,
) -> SequenceResult:
    """Return the matched-cohort estimate and its confidence sequence after every window."""
    with np.errstate(divide="ignore", invalid="ignore"):
        d, w = _cell_effects(cells, kind)
        info = np.cumsum(w.sum(axis=-1), axis=-1)
        effect = np.cumsum((w * d).sum(axis=-1), axis=-1) / info
        base = _baseline_mean(cells)
        scale = _fixed_scale(cells, base)
        tau = np.maximum(tau_rel * np.where(scale != 0.0, np.abs(scale), 1.0), tau_min)
        rho = 1.0 / tau**2
        theta = harm_signed(effect, bad_direction)
        radius = half_normal_boundary(info, rho, alpha) / info
        low, up = running_bounds(theta - radius, theta + radius)
        log_e = log_harm_mixture(np.nan_to_num(info * theta), info, rho)
        peak = np.maximum.accumulate(log_e, axis=-1)
        lower, upper = delta_bounds(low, up, bad_direction)
        return SequenceResult(
            effect=effect,
            relative=effect / base,
            lower=lower,
            upper=upper,
            harm=peak >= np.log(1.0 / alpha),
            noninferior=up < margin,
            p_harm=running_p_value(log_e),
            n_a=np.cumsum(np.where(w > 0, cells.n_a, 0.0).sum(axis=-1), axis=-1),
            n_b=np.cumsum(np.where(w > 0, cells.n_b, 0.0).sum(axis=-1), axis=-1),
            log_e_harm=log_e,
        )


def _cell_effects(cells: Cells, kind: str) -> tuple[FloatArray, FloatArray]:
    """Return per-cell ``d_c`` and weight ``w_c = 1/v_c`` (0 where an arm is empty)."""
    pooled = _cumulative(cells.n_a + cells.n_b, cells.sum_a + cells.sum_b,
                         cells.sumsq_a + cells.sumsq_b, kind, lag=False)
    var_a = _arm_variance(cells.n_a, cells.sum_a, cells.sumsq_a, kind, pooled)
    var_b = _arm_variance(cells.n_b, cells.sum_b, cells.sumsq_b, kind, pooled)
    valid = (cells.n_a > 0) & (cells.n_b > 0)
    n_a = np.where(valid, cells.n_a, 1.0)
    n_b = np.where(valid, cells.n_b, 1.0)
    d = np.where(valid, cells.sum_b / n_b - cells.sum_a / n_a, 0.0)
    w = np.where(valid, 1.0 / (var_a / n_a + var_b / n_b), 0.0)
    return d, w


def _arm_variance(n: FloatArray, total: FloatArray, total_sq: FloatArray, kind: str,
                  pooled: tuple[FloatArray, FloatArray]) -> FloatArray:
    """Return max(pooled variance, the arm's own predictable variance once it has history).

    The pooled (both arms, windows ≤ t) variance is dominated by the large arm and is
    right under the null; the arm's own estimate from earlier windows takes over only
    where it is larger (Welch), so a small, noisy canary arm never shrinks its variance.
    """
    past_var, past_n = _cumulative(n, total, total_sq, kind, lag=True)
    pooled_var, _ = pooled
    return np.where(past_n >= MIN_ARM_N, np.maximum(past_var, pooled_var), pooled_var)


def _cumulative(n: FloatArray, total: FloatArray, total_sq: FloatArray, kind: str,
                *, lag: bool) -> tuple[FloatArray, FloatArray]:
    """Return (variance, n) per segment from windows ``< t`` (lag) or ``≤ t``."""
    cn, c1, c2 = (np.cumsum(x, axis=-2) for x in (n, total, total_sq))
    if lag:
        cn, c1, c2 = cn - n, c1 - total, c2 - total_sq
    safe_n = np.maximum(cn, 1.0)
    mean = c1 / safe_n
    var = np.maximum(c2 - c1 * mean, 0.0) / np.maximum(cn - 1.0, 1.0)
    var = np.maximum(var, 1e-12 * (1.0 + mean * mean))
    if kind == "binary":  # 0/1 per unit (Σx² = Σx, or no Σx² given): the smoothed
        p = (c1 + 0.5) / (cn + 1.0)  # Bernoulli variance; units' ratio pseudo-values
        bernoulli = (c2 == c1) | (c2 <= 0.0)  # (stats.ratio.linearize): their own variance
        return np.where(bernoulli, p * (1.0 - p), var), cn
    return var, cn


def _fixed_scale(cells: Cells, base: FloatArray) -> FloatArray:
    """Return the baseline mean frozen at the first window with ``SCALE_MIN_N`` samples."""
    n = np.cumsum(cells.n_a.sum(axis=-1), axis=-1)
    ready = n >= SCALE_MIN_N
    first = np.where(ready.any(axis=-1), ready.argmax(axis=-1), n.shape[-1])
    t = np.arange(n.shape[-1])
    frozen = np.take_along_axis(base, np.minimum(first, n.shape[-1] - 1)[..., None], axis=-1)
    return np.asarray(np.where(t >= first[..., None], frozen, base), dtype=np.float64)


def _baseline_mean(cells: Cells) -> FloatArray:
    """Return the cumulative baseline mean over all segments after each window."""
    n = np.cumsum(cells.n_a.sum(axis=-1), axis=-1)
    total = np.cumsum(cells.sum_a.sum(axis=-1), axis=-1)
    return np.asarray(np.where(n > 0, total / np.maximum(n, 1.0), 0.0), dtype=np.float64)
