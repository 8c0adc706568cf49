# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Incremental (O(1) per window) forms of the sequential tests, with judge-once checkpoints.

The vectorized tests (:func:`streammon.stats.meandiff.compute_mean_diff`,
:func:`streammon.stats.rates.compute_rate_test`, :func:`streammon.stats.srm.compute_srm`,
:func:`streammon.stats.drift.compute_drift`) recompute a whole history of windows. Every
quantity they report after window t is a function of *running sums* over windows ≤ t
(cumulative per-segment moments, information ``I_t = Σ w_c``, ``Σ w_c d_c``, the grid
log-likelihood ``ℓ_t(φ)``, running maxima and minima). A *tracker* holds exactly those
sums: :meth:`fold` takes one window's cells and returns the new state and the point after
it, with the same formulas and the same order of floating-point additions, so a tracker
and the vectorized test agree window for window (``tests/property`` checks it).

:class:`History` keeps the rows a tracker has folded and a checkpoint after each. A
caller hands it the rows judged so far: rows it folded before and that did not change
cost nothing (one vectorized comparison), a row revised before it was frozen (late
labels) is refolded from the checkpoint before it, and a new row is one fold. A frozen
row (the caller reads judged cohorts from a store, :mod:`streammon.stats.horizon`) never
changes, so a decision costs O(1) work per metric per window.

References are those of the vectorized tests: Howard et al. (2021), Ann. Statist. 49(2),
Props. 4–5 (normal mixture boundary); Johari et al. (2017), KDD (mSPRT); Lindon & Malek
(2022), NeurIPS, Sec. 4 (conditional binomial e-process); Johari et al. (2017) and
Howard et al. (2021), Sec. 3 (the d-variate mixture of the drift test). Pure: numpy in,
numbers out.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import numpy as np
from scipy import special

from streammon.stats.cells import FloatArray
from streammon.stats.confseq import HARM_RANGE, HARM_RANGE_WEIGHT, log_gaussian_chi2_mixture
from streammon.stats.counts import (
    DEFAULT_PRIOR_SD,
    GRID_LOG_RATIO,
    NULL_INDEX,
    log_e_two_sided,
    log_prior,
)
from streammon.stats.meandiff import DEFAULT_TAU_REL, MIN_ARM_N, SCALE_MIN_N
from streammon.stats.srm import SRM_GRID, SRM_NULL_INDEX, SRM_PRIOR_SD

_PHI = np.exp(GRID_LOG_RATIO)
_SRM_PHI = np.exp(SRM_GRID)


@dataclass(frozen=True)
class Point:
    """A sequential test's report after one window (the last entry of a SequenceResult)."""

    effect: float
    relative: float
    lower: float
    upper: float
    harm: bool
    noninferior: bool
    p_harm: float
    n_a: float
    n_b: float
    log_e_harm: float


S = TypeVar("S")


class Tracker(Protocol[S]):
    """A pure fold: ``fold(state, row) -> (state, point)``; ``start()`` the empty state."""

    def start(self, segments: int) -> S:
        """Return the state before any window."""

    def fold(self, state: S, row: FloatArray) -> tuple[S, Point]:
        """Return the state and the report after one more window (``row``: (6, segments))."""


# ---------------------------------------------------------------- mean difference


@dataclass(frozen=True)
class MeanDiffState:
    """Running sums of :func:`streammon.stats.meandiff.compute_mean_diff` after a window."""

    pool: FloatArray
    """(3, segments): cumulative n, Σx, Σx² of both arms, windows ≤ t."""
    arm_a: FloatArray
    arm_b: FloatArray
    info: float = 0.0
    weighted: float = 0.0
    base_n: float = 0.0
    base_sum: float = 0.0
    scale: float | None = None
    low: float = -math.inf
    up: float = math.inf
    peak: float = -math.inf
    used_a: float = 0.0
    used_b: float = 0.0


@dataclass(frozen=True)
class MeanDiffTracker:
    """Incremental matched-cohort mixture SPRT (:mod:`streammon.stats.meandiff`).

    Per cell ``w_c = 1/(σ̂²_a/n_a + σ̂²_b/n_b)``, ``d_c = x̄_b − x̄_a``; ``I_t = I_{t−1} + Σ_s
    w_c`` and ``Σ w d`` likewise; the boundary ``u(I_t)`` of the half-normal mixture
    (Howard et al. 2021, Props. 4–5) and the running intersection of the bounds; harm
    when the peak of the harm e-process (:func:`log_harm`) reaches 1/α. The
    per-segment variances are computed on Python floats (IEEE doubles, the same
    operations in the same order as the vectorized test): a window has a handful of
    segments, where numpy's per-call overhead would dominate.
    """

    kind: str
    bad_direction: str
    alpha: float
    margin: float = 0.0
    tau_rel: float = DEFAULT_TAU_REL
    tau_min: float = 0.0

    def start(self, segments: int) -> MeanDiffState:
        """Return the state before any window."""
        zero = np.zeros((3, segments))
        return MeanDiffState(zero, zero, zero)

    def fold(self, state: MeanDiffState, row: FloatArray) -> tuple[MeanDiffState, Point]:
        """Fold one window's cells ``row = (n_a, sum_a, sumsq_a, n_b, sum_b, sumsq_b)``."""
        a, b = row[0:3], row[3:6]
        pool, arm_a, arm_b = state.pool + (a + b), state.arm_a + a, state.arm_b + b
        binary = self.kind == "binary"
        n_a, s_a, _ = a.tolist()
        n_b, s_b, _ = b.tolist()
        pool_n, pool_1, pool_2 = pool.tolist()
        past_a, past_b = (arm_a - a).tolist(), (arm_b - b).tolist()
        w_sum = wd_sum = used_a = used_b = 0.0
        for j in range(len(n_a)):
            if not (n_a[j] > 0 and n_b[j] > 0):
                continue
            pooled = _variance(pool_n[j], pool_1[j], pool_2[j], binary)
            var_a = _arm_variance(past_a, j, binary, pooled)
            var_b = _arm_variance(past_b, j, binary, pooled)
            w = 1.0 / (var_a / n_a[j] + var_b / n_b[j])
            w_sum += w
            wd_sum += w * (s_b[j] / n_b[j] - s_a[j] / n_a[j])
            if w > 0:
                used_a += n_a[j]
                used_b += n_b[j]
        info = state.info + w_sum
        weighted = state.weighted + wd_sum
        base_n = state.base_n + sum(n_a)
        base_sum = state.base_sum + sum(s_a)
        base = base_sum / max(base_n, 1.0) if base_n > 0 else 0.0
        scale = state.scale
        current = base if scale is None else scale
        if scale is None and base_n >= SCALE_MIN_N:
            scale = current = base
        tau = max(self.tau_rel * (abs(current) if current != 0.0 else 1.0), self.tau_min)
        rho = 1.0 / tau**2
        effect = weighted / info if info != 0.0 else math.nan
        theta = -effect if self.bad_direction == "decrease" else effect
        radius = half_normal_radius(info, rho, self.alpha)
        low = max(state.low, _nan_to(theta - radius, -math.inf))
        up = min(state.up, _nan_to(theta + radius, math.inf))
        s = info * theta
        log_e = log_harm(0.0 if math.isnan(s) else s, info, rho)
        peak = max(state.peak, log_e)
        used_a += state.used_a
        used_b += state.used_b
        lower, upper = (-up, -low) if self.bad_direction == "decrease" else (low, up)
        relative = effect / base if base != 0.0 else _div0(effect)
        new = MeanDiffState(pool, arm_a, arm_b, info, weighted, base_n, base_sum, scale, low,
                            up, peak, used_a, used_b)
        return new, Point(effect, relative, lower, upper, peak >= math.log(1.0 / self.alpha),
                          up < self.margin,
                          min(1.0, math.exp(-peak)), used_a, used_b, log_e)


def _variance(cn: float, c1: float, c2: float, binary: bool) -> float:
    """Return the variance of cumulative ``(n, Σx, Σx²)`` (as in meandiff's ``_cumulative``)."""
    if binary:
        p = (c1 + 0.5) / (cn + 1.0)
        return p * (1.0 - p)
    mean = c1 / max(cn, 1.0)
    var = max(c2 - c1 * mean, 0.0) / max(cn - 1.0, 1.0)
    return max(var, 1e-12 * (1.0 + mean * mean))


def _arm_variance(past: list[list[float]], j: int, binary: bool, pooled: float) -> float:
    """Return max(pooled, the arm's own variance from earlier windows) where it has history."""
    if past[0][j] < MIN_ARM_N:
        return pooled
    return max(_variance(past[0][j], past[1][j], past[2][j], binary), pooled)


_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def half_normal_radius(info: float, rho: float, alpha: float) -> float:
    """Return ``u(I)/I`` of :func:`streammon.stats.confseq.half_normal_boundary` for one I.

    Same Newton iteration (8 steps from ``sqrt(2c)``) on ``x²/2 + log Φ(x) = c``; x stays
    positive, where ``log Φ(x) = log1p(−erfc(x/√2)/2)`` is exact in floating point.
    """
    if info <= 0.0:
        return math.inf
    total = info + rho
    c = math.log(1.0 / (2.0 * alpha)) + 0.5 * math.log(total / rho)
    x = math.sqrt(2.0 * c)
    for _ in range(8):
        log_cdf = math.log1p(-0.5 * math.erfc(x / _SQRT2))
        g = 0.5 * x * x + log_cdf - c
        slope = x + math.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_cdf)
        x = x - g / slope
    return x * math.sqrt(total) / info


def log_half_normal(s: float, v: float, rho: float) -> float:
    """Return :func:`streammon.stats.confseq.log_half_normal_mixture` for one (S, V)."""
    total = v + rho
    return (math.log(2.0) + 0.5 * math.log(rho / total) + s * s / (2.0 * total)
            + float(special.log_ndtr(s / math.sqrt(total))))


_LOG_RANGE_WEIGHTS = (math.log(HARM_RANGE_WEIGHT), math.log1p(-HARM_RANGE_WEIGHT))


def log_harm(s: float, v: float, rho: float) -> float:
    """Return :func:`streammon.stats.confseq.log_harm_mixture` for one (S, V)."""
    half = log_half_normal(s, v, rho)
    uniform = 0.0
    if v > 0.0:
        tau = 1.0 / math.sqrt(rho)
        low, high = HARM_RANGE[0] * tau, HARM_RANGE[1] * tau
        root = math.sqrt(v)
        x_high, x_low = (high * v - s) / root, (low * v - s) / root
        if x_low > 0.0:
            big, small = float(special.log_ndtr(-x_low)), float(special.log_ndtr(-x_high))
        else:
            big, small = float(special.log_ndtr(x_high)), float(special.log_ndtr(x_low))
        gap = -math.expm1(min(small - big, 0.0))
        mass = big + math.log(gap) if gap > 0.0 else -math.inf
        uniform = (s * s / (2.0 * v) + _LOG_SQRT_2PI - math.log(root) - math.log(high - low)
                   + mass)
    a, b = _LOG_RANGE_WEIGHTS[0] + uniform, _LOG_RANGE_WEIGHTS[1] + half
    top = max(a, b)
    return top + math.log1p(math.exp(min(a, b) - top)) if top > -math.inf else top


def _arr(x: float) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _nan_to(x: float, fill: float) -> float:
    return fill if math.isnan(x) else x


def _div0(x: float) -> float:
    """Return ``x / 0.0`` as numpy would (inf with the sign of x, NaN for 0 or NaN)."""
    if math.isnan(x) or x == 0.0:
        return math.nan
    return math.copysign(math.inf, x)


# ---------------------------------------------------------------- rare-event rate ratio


@dataclass(frozen=True)
class RateState:
    """Running sums of :func:`streammon.stats.rates.compute_rate_test` after a window."""

    loglik: FloatArray
    events_a: float = 0.0
    exposure_a: float = 0.0
    mh_num: float = 0.0
    mh_den: float = 0.0
    used_a: float = 0.0
    used_b: float = 0.0
    low: float = -math.inf
    up: float = math.inf
    harm: bool = False
    noninferior: bool = False
    peak: float = -math.inf


@dataclass(frozen=True)
class RateTracker:
    """Incremental exact conditional-binomial e-process on the rate ratio (Lindon & Malek 2022).

    ``ℓ_t(φ_g) = ℓ_{t−1}(φ_g) + Σ_c [e_b,c log φ_g − k_c log(1 + φ_g r_c)]`` on the fixed grid;
    the one-sided mixtures of :mod:`streammon.stats.counts` are read off ``ℓ_t``.
    """

    bad_direction: str
    alpha: float
    margin: float = 0.0
    prior_sd: float = DEFAULT_PRIOR_SD

    def start(self, segments: int) -> RateState:
        """Return the state before any window."""
        return RateState(np.zeros(GRID_LOG_RATIO.size))

    def fold(self, state: RateState, row: FloatArray) -> tuple[RateState, Point]:
        """Fold one window's cells (``n`` exposures, ``sum`` events)."""
        n_a, sum_a, _, n_b, sum_b, _ = row.tolist()
        events_b = events_a = exposure_a = mh_num = mh_den = used_b = 0.0  # this window
        penalty: FloatArray | None = None
        for j in range(len(n_a)):
            if not (n_a[j] > 0 and n_b[j] > 0):
                continue
            k = sum_a[j] + sum_b[j]
            term = k * np.log1p(n_b[j] / n_a[j] * _PHI)
            penalty = term if penalty is None else penalty + term
            events_b += sum_b[j]
            events_a += sum_a[j]
            exposure_a += n_a[j]
            used_b += n_b[j]
            total = n_a[j] + n_b[j]
            mh_num += sum_b[j] * n_a[j] / total
            mh_den += sum_a[j] * n_b[j] / total
        per_window = events_b * GRID_LOG_RATIO
        loglik = state.loglik + (per_window if penalty is None else per_window - penalty)
        right, left = _one_sided_log_e(loglik, self.prior_sd)
        threshold = math.log(1.0 / self.alpha)
        used_a = state.used_a + exposure_a
        events_a += state.events_a
        exposure_a += state.exposure_a
        rate_a = events_a / max(exposure_a, 1e-300) if exposure_a > 0 else 0.0
        low = max(state.low, _lower_grid_bound(right, threshold))
        up = min(state.up, _upper_grid_bound(left, threshold))
        harm_value, ni_value = _rate_evidence(right, left, rate_a, self.margin,
                                              self.bad_direction)
        mh_num += state.mh_num
        mh_den += state.mh_den
        phi_hat = mh_num / mh_den if mh_den > 0 else math.nan
        used_b += state.used_b
        peak = max(state.peak, harm_value)
        new = RateState(loglik, events_a, exposure_a, mh_num, mh_den, used_a, used_b, low, up,
                        state.harm or harm_value >= threshold,
                        state.noninferior or ni_value >= threshold, peak)
        lower = math.expm1(low) * rate_a if rate_a > 0 else -math.inf
        upper = math.expm1(up) * rate_a if rate_a > 0 else math.inf
        return new, Point((phi_hat - 1.0) * rate_a, phi_hat - 1.0, lower, upper, new.harm,
                          new.noninferior, min(1.0, math.exp(-peak)), used_a, used_b, harm_value)


_GRID = GRID_LOG_RATIO.tolist()


@functools.lru_cache(maxsize=8)
def _prior_norms(prior_sd: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return the log prior and its normalisers above and below each grid point."""
    prior = log_prior(GRID_LOG_RATIO, prior_sd)
    above = np.logaddexp.accumulate(prior[:0:-1])[::-1]
    below = np.logaddexp.accumulate(prior[:-1])
    return prior, above, below


def _one_sided_log_e(loglik: FloatArray, prior_sd: float) -> tuple[FloatArray, FloatArray]:
    """Return :func:`streammon.stats.counts.log_e_right` and ``log_e_left`` of one ℓ_t.

    The same accumulations in the same order, with the prior's normalisers cached.
    """
    prior, above, below = _prior_norms(prior_sd)
    joint = loglik + prior
    right = np.empty_like(loglik)
    right[:-1] = np.logaddexp.accumulate(joint[:0:-1])[::-1] - above - loglik[:-1]
    right[-1] = -np.inf
    left = np.empty_like(loglik)
    left[1:] = np.logaddexp.accumulate(joint[:-1]) - below - loglik[1:]
    left[0] = -np.inf
    return right, left


def _lower_grid_bound(right: FloatArray, threshold: float) -> float:
    """:func:`streammon.stats.counts.grid_lower_bound` of one window."""
    ok = right >= threshold
    count = ok.size if ok.all() else int(ok.argmin())
    return float(GRID_LOG_RATIO[count - 1]) if count > 0 else -math.inf


def _upper_grid_bound(left: FloatArray, threshold: float) -> float:
    """:func:`streammon.stats.counts.grid_upper_bound` of one window."""
    ok = left[::-1] >= threshold
    count = ok.size if ok.all() else int(ok.argmin())
    return float(GRID_LOG_RATIO[ok.size - count]) if count > 0 else math.inf


def _rate_evidence(right: FloatArray, left: FloatArray, rate_a: float, margin: float,
                   bad_direction: str) -> tuple[float, float]:
    """Return (log e for harm at φ = 1, log e for non-inferiority at the margin's ratio).

    :func:`streammon.stats.rates._decision_evidence` for one window: the margin's rate
    ratio ``φ_m = 1 ± margin/λ̂_a`` rounded on the grid towards the stricter claim.
    """
    log_m = 0.0
    if rate_a > 0:
        phi_m = 1.0 + (margin if bad_direction == "increase" else -margin) / rate_a
        log_m = math.log(max(phi_m, 1e-300))
    if bad_direction == "increase":
        index = bisect.bisect_right(_GRID, log_m) - 1
        harm, ni_side = float(right[NULL_INDEX]), left
    else:
        index = bisect.bisect_left(_GRID, log_m)
        harm, ni_side = float(left[NULL_INDEX]), right
    inside = 0 <= index < len(_GRID)
    return harm, float(ni_side[index]) if inside else -math.inf


# ---------------------------------------------------------------- sample ratio and drift


@dataclass(frozen=True)
class SrmState:
    """Running grid log-likelihood of the sample-ratio e-process and its peak."""

    loglik: FloatArray
    peak: float = -math.inf


@dataclass(frozen=True)
class SrmTracker:
    """Incremental :func:`streammon.stats.srm.compute_srm` (Lindon & Malek 2022).

    A row is ``(n_a, n_b, fraction)`` of one window (fraction NaN: left out, zero counts).
    The point's ``log_e_harm`` is log M_t; ``harm`` is the mismatch flag at ``alpha``.
    """

    alpha: float

    def start(self, segments: int) -> SrmState:
        """Return the state before any window."""
        return SrmState(np.zeros(SRM_GRID.size))

    def fold(self, state: SrmState, row: FloatArray) -> tuple[SrmState, Point]:
        """Fold one window's assignment counts."""
        n_a, n_b, fraction = (float(x) for x in row[:, 0])
        if not math.isfinite(fraction):
            n_a, n_b, fraction = 0.0, 0.0, 0.5
        ratio = fraction / (1.0 - fraction)
        loglik = state.loglik + (n_b * SRM_GRID - (n_a + n_b) * np.log1p(ratio * _SRM_PHI))
        log_e = float(log_e_two_sided(loglik, log_prior(SRM_GRID, SRM_PRIOR_SD),
                                      SRM_NULL_INDEX))
        peak = max(state.peak, log_e)
        mismatch = peak >= math.log(1.0 / self.alpha)
        p = min(1.0, math.exp(-peak))
        nan = math.nan
        return SrmState(loglik, peak), Point(nan, nan, nan, nan, mismatch, False, p, n_a, n_b,
                                             log_e)


@dataclass(frozen=True)
class DriftState:
    """Running sums of :func:`streammon.stats.drift.compute_drift` after a window."""

    info: float
    weighted: FloatArray
    pooled: FloatArray
    peak: float = -math.inf


@dataclass(frozen=True)
class DriftTracker:
    """Incremental sequential chi-square over score histograms (:mod:`streammon.stats.drift`).

    A row is ``(2, bins)``: the baseline's and the canary's histogram of one window.
    """

    tau: float = 0.05

    def start(self, segments: int) -> DriftState:
        """Return the state before any window (``segments`` is the number of bins)."""
        return DriftState(0.0, np.zeros(segments), np.zeros(segments))

    def fold(self, state: DriftState, row: FloatArray) -> tuple[DriftState, Point]:
        """Fold one window's two histograms; the point's ``p_harm`` is the drift p-value."""
        h_a, h_b = row[0], row[1]
        n_a, n_b = float(h_a.sum()), float(h_b.sum())
        valid = n_a > 0 and n_b > 0
        weight = n_a * n_b / (n_a + n_b) if valid else 0.0
        diff = h_b / n_b - h_a / n_a if valid else np.zeros_like(h_a)
        info = state.info + weight
        weighted = state.weighted + weight * diff
        pooled = state.pooled + (h_a + h_b if valid else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_diff = weighted / info
            p_bar = pooled / pooled.sum()
            terms = np.where(p_bar > 0, mean_diff**2 / p_bar, 0.0)
            chi2 = info * float(terms.sum()) if info > 0 else 0.0
        dof = max(int((p_bar > 0).sum()) - 1, 0)
        log_e = float(log_gaussian_chi2_mixture(_arr(chi2), _arr(info),
                                                _arr(dof), self.tau)) if dof > 0 else 0.0
        peak = max(state.peak, log_e)
        nan = math.nan
        return (DriftState(info, weighted, pooled, peak),
                Point(nan, nan, nan, nan, False, False, min(1.0, math.exp(-peak)), n_a, n_b,
                      log_e))


# ---------------------------------------------------------------- judge-once history


class History:
    """The rows a tracker folded, a checkpoint after each, and the points it reported.

    :meth:`sync` brings it to a new sequence of rows: unchanged rows are kept, the first
    changed row and everything after it are refolded, new rows are folded.
    """

    def __init__(self, tracker: Tracker[Any]) -> None:
        self.tracker = tracker
        self.rows: FloatArray | None = None
        self.states: list[Any] = []
        self.points: list[Point] = []
        self.refolded = 0
        """Rows folded again because an earlier row was revised (diagnostics, tests)."""

    def __len__(self) -> int:
        return len(self.points)

    def sync(self, rows: FloatArray,
             check: Callable[[FloatArray], None] | None = None) -> int:
        """Make the history match ``rows`` (``(windows, fields, columns)``).

        Returns the first index whose point changed (``len(rows)`` when none did).

        ``check`` (it raises on bad input) is called on the rows about to be folded, before
        any of them is: rows folded earlier and unchanged were checked when folded.
        """
        count = rows.shape[0]
        if self.rows is None or self.rows.shape[1:] != rows.shape[1:]:
            self._reset(rows.shape[1:])
        kept = min(len(self.points), count)
        assert self.rows is not None
        old, new = self.rows[:kept], rows[:kept]
        if kept and not (old == new).all() and not np.array_equal(old, new, equal_nan=True):
            differs = (old != new) & ~(np.isnan(old) & np.isnan(new))
            changed = np.flatnonzero(differs.reshape(kept, -1).any(axis=1))
            kept = int(changed[0])  # the first revised row
        first = int(kept)
        if check is not None and kept < count:
            check(rows[kept:])
        if kept < len(self.points):
            self.refolded += min(len(self.points), count) - kept
            del self.states[kept + 1:]
            del self.points[kept:]
        self._grow(count)
        for t in range(kept, count):
            state, point = self.tracker.fold(self.states[t], rows[t])
            self.rows[t] = rows[t]
            self.states.append(state)
            self.points.append(point)
        return first

    @property
    def last(self) -> Point | None:
        """Return the point after the last folded row (None before any)."""
        return self.points[-1] if self.points else None

    def _reset(self, shape: tuple[int, ...]) -> None:
        self.rows = np.zeros((16, *shape))
        self.states = [self.tracker.start(shape[-1])]
        self.points = []

    def _grow(self, count: int) -> None:
        assert self.rows is not None
        if count > self.rows.shape[0]:
            bigger = np.zeros((max(count, 2 * self.rows.shape[0]), *self.rows.shape[1:]))
            bigger[:self.rows.shape[0]] = self.rows
            self.rows = bigger


def stack_rows(fields: Sequence[FloatArray], start: int, stop: int) -> FloatArray:
    """Return rows ``start..stop`` of per-field ``(windows, columns)`` arrays, stacked.

    The result is ``(windows, fields, columns)``, the layout :meth:`History.sync` takes.
    """
    return np.stack([np.asarray(f, dtype=np.float64)[start:stop] for f in fields], axis=1)


def with_margin(tracker: MeanDiffTracker, margin: float) -> MeanDiffTracker:
    """Return ``tracker`` with another margin (the promotion check floors τ at it)."""
    return replace(tracker, margin=margin, tau_min=margin)
