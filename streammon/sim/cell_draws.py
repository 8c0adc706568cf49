"""Seeded, vectorized rollout simulations that produce :class:`Cells` for many replicates.

A :class:`TrafficPlan` fixes, per window, the request volume, the segment mix, the
intended canary fraction and the baseline mean of every segment (time-of-day drift is a
baseline mean that changes with the window). :func:`draw_cells` then draws replicates:

* requests per cell ~ Poisson(volume · mix); canary requests ~ Binomial(requests, f_t);
* binary: successes ~ Binomial(n, p); count: events ~ Poisson(n · λ);
* continuous (latency): lognormal with the plan's mean and log-sd ``sigma_log``. Cells
  with at most :data:`EXACT_CELL_N` requests draw every request (small cells are where
  skewness bites); larger ones draw (Σx, Σx²) from their exact first two moments
  (bivariate normal), which is what a window of thousands of requests looks like.

The canary's mean is the baseline's times ``1 + relative_effect`` in every cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streammon.stats.cells import Cells, FloatArray

EXACT_CELL_N = 300
CHUNK_DRAWS = 4_000_000


@dataclass(frozen=True)
class TrafficPlan:
    """Per-window design of a simulated rollout; arrays are (windows,) or (windows, segments)."""

    kind: str
    volume: FloatArray
    mix: FloatArray
    fraction: FloatArray
    base_mean: FloatArray
    relative_effect: float = 0.0
    sigma_log: float = 0.6
    label: str = field(default="")

    @property
    def windows(self) -> int:
        """Return the number of windows in the plan."""
        return int(self.volume.shape[0])


def make_plan(
    kind: str,
    *,
    windows: int = 200,
    volume: float = 60_000.0,
    segment_means: tuple[float, ...] = (0.10,),
    fractions: tuple[float, ...] = (0.05,),
    drift: float = 0.0,
    mix_shift: bool = False,
    relative_effect: float = 0.0,
    sigma_log: float = 0.6,
) -> TrafficPlan:
    """Build a plan for ``windows`` windows of ``volume`` requests.

    ``fractions`` is a ramp split evenly over the windows; ``drift`` is the relative
    swing of base rate and volume over the run (time of day, falling); ``mix_shift``
    moves traffic from the first segment towards the last.
    """
    t = np.arange(windows, dtype=np.float64)
    day = np.cos(np.pi * t / max(windows - 1, 1))
    segments = len(segment_means)
    base = np.outer(1.0 + drift * day, np.asarray(segment_means, dtype=np.float64))
    stage = np.minimum((t * len(fractions) / windows).astype(int), len(fractions) - 1)
    return TrafficPlan(
        kind=kind,
        volume=volume * (1.0 + drift * day),
        mix=_mix(windows, segments, mix_shift),
        fraction=np.asarray(fractions, dtype=np.float64)[stage],
        base_mean=base,
        relative_effect=relative_effect,
        sigma_log=sigma_log,
    )


def _mix(windows: int, segments: int, shift: bool) -> FloatArray:
    start = np.linspace(2.0, 1.0, segments) if segments > 1 else np.ones(1)
    end = start[::-1] if shift else start
    w = np.linspace(0.0, 1.0, windows)[:, None]
    raw = (1.0 - w) * start**3 + w * end**3
    return np.asarray(raw / raw.sum(axis=1, keepdims=True), dtype=np.float64)


def draw_cells(plan: TrafficPlan, replicates: int, seed: int) -> Cells:
    """Draw ``replicates`` independent rollouts; arrays are (replicates, windows, segments)."""
    rng = np.random.default_rng(seed)
    shape = (replicates, *plan.mix.shape)
    requests = rng.poisson(plan.volume[:, None] * plan.mix, size=shape).astype(np.float64)
    n_b = rng.binomial(requests.astype(np.int64), plan.fraction[:, None]).astype(np.float64)
    n_a = requests - n_b
    mean_b = plan.base_mean * (1.0 + plan.relative_effect)
    sum_a, sq_a = _draw_metric(rng, plan, n_a, np.broadcast_to(plan.base_mean, shape))
    sum_b, sq_b = _draw_metric(rng, plan, n_b, np.broadcast_to(mean_b, shape))
    return Cells(n_a, sum_a, sq_a, n_b, sum_b, sq_b)


def _draw_metric(rng: np.random.Generator, plan: TrafficPlan, n: FloatArray,
                 mean: FloatArray) -> tuple[FloatArray, FloatArray]:
    if plan.kind == "binary":
        s = rng.binomial(n.astype(np.int64), np.clip(mean, 0.0, 1.0)).astype(np.float64)
        return s, s.copy()
    if plan.kind == "count":
        s = rng.poisson(n * mean).astype(np.float64)
        return s, s.copy()
    total, total_sq = _lognormal_moments(rng, n, mean, plan.sigma_log)
    flat_n, flat_mean = n.ravel(), np.ascontiguousarray(mean).ravel()
    small = np.flatnonzero(flat_n <= EXACT_CELL_N)
    chunk = np.cumsum(flat_n[small]) // CHUNK_DRAWS
    for part in np.split(small, np.flatnonzero(np.diff(chunk)) + 1):
        exact = _lognormal_exact(rng, flat_n[part], flat_mean[part], plan.sigma_log)
        total.ravel()[part], total_sq.ravel()[part] = exact
    return total, total_sq


def _lognormal_exact(rng: np.random.Generator, n: FloatArray, mean: FloatArray,
                     sigma: float) -> tuple[FloatArray, FloatArray]:
    counts = n.astype(np.int64).ravel()
    idx = np.repeat(np.arange(counts.size), counts)
    mu = np.log(mean.ravel()) - 0.5 * sigma * sigma
    x = np.exp(mu[idx] + sigma * rng.standard_normal(idx.size))
    total = np.bincount(idx, x, minlength=counts.size).reshape(n.shape)
    total_sq = np.bincount(idx, x * x, minlength=counts.size).reshape(n.shape)
    return np.asarray(total, np.float64), np.asarray(total_sq, np.float64)


def _lognormal_moments(rng: np.random.Generator, n: FloatArray, mean: FloatArray,
                       sigma: float) -> tuple[FloatArray, FloatArray]:
    s2 = sigma * sigma
    cov = np.array([[np.expm1(s2), np.exp(3 * s2) - np.exp(s2)],
                    [np.exp(3 * s2) - np.exp(s2), np.exp(6 * s2) - np.exp(2 * s2)]])
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal((2, *n.shape))
    root = np.sqrt(n)
    total = n * mean + root * mean * (chol[0, 0] * z[0])
    total_sq = n * mean**2 * np.exp(s2) + root * mean**2 * (chol[1, 0] * z[0] + chol[1, 1] * z[1])
    total = np.maximum(total, 0.0)
    total_sq = np.maximum(total_sq, total * total / np.maximum(n, 1.0))
    return total, total_sq
