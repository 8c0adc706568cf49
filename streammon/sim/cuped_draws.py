# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Cell-level rollouts with a pre-exposure covariate, judged by the production spec.

Each request has a covariate x ~ Beta(a, b) — the *baseline* model's calibrated score,
computed on every request whatever the arm — and a conversion y | x ~ Bernoulli(c·x),
c = 1 in the baseline and ``1 + relative_effect`` in the canary. With mean μ and
``Var(x) = r² μ(1 − μ)`` the covariate explains a share ``r²`` of Var(y) (R² of the
regression of y on x, since Cov(x, y) = Var(x) in the baseline). Per cell the sums
``(Σx, Σx², Σy, Σxy)`` (Σy² = Σy) are drawn from their exact first two moments
(multivariate normal), as :mod:`streammon.sim.cell_draws` does for latency.

:func:`evaluate_production` runs what the decider runs on such a rollout: conversion
CUPED-adjusted (:mod:`streammon.stats.cuped`), latency and errors on their own cells, the
three harm e-values averaged and rolled back at ``α/2 − α_srm``, the sample-ratio check
halting at α_srm (:mod:`streammon.stats.evidence`, :mod:`streammon.stats.srm`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammon.sim.cell_draws import draw_cells, make_plan
from streammon.stats.cells import Cells, FloatArray
from streammon.stats.cuped import Covariate, adjust_cells
from streammon.stats.evidence import log_mean_e
from streammon.stats.meandiff import DEFAULT_TAU_REL
from streammon.stats.sequence import compute_sequence
from streammon.stats.srm import compute_srm

SRM_ALPHA = 0.001


@dataclass(frozen=True)
class CovariatePlan:
    """One segment at ``mean`` conversion, ``volume`` requests per window, canary ``fraction``."""

    windows: int = 200
    volume: float = 60_000.0
    fraction: float = 0.05
    mean: float = 0.10
    r2: float = 0.2
    relative_effect: float = 0.0


def _beta_moments(a: float, b: float, k: int) -> float:
    out = 1.0
    for r in range(k):
        out *= (a + r) / (a + b + r)
    return out


def _moments(plan: CovariatePlan, c: float) -> tuple[FloatArray, FloatArray]:
    """Return mean and covariance of one request's (x, x², y, xy), y | x ~ Bern(c x)."""
    var = plan.r2 * plan.mean * (1.0 - plan.mean)
    total = plan.mean * (1.0 - plan.mean) / var - 1.0
    a, b = plan.mean * total, (1.0 - plan.mean) * total
    e = [_beta_moments(a, b, k) for k in range(5)]
    # v = (x, x², y, xy); E[v_i v_j] with y² = y and E[y | x] = c x.
    mean = np.array([e[1], e[2], c * e[1], c * e[2]])
    second = np.array([
        [e[2], e[3], c * e[2], c * e[3]],
        [e[3], e[4], c * e[3], c * e[4]],
        [c * e[2], c * e[3], c * e[1], c * e[2]],
        [c * e[3], c * e[4], c * e[2], c * e[3]]])
    return mean, second - np.outer(mean, mean)


def draw_covariate_cells(plan: CovariatePlan, replicates: int,
                         seed: int) -> tuple[Cells, Covariate]:
    """Return conversion cells and covariate sums, shaped (replicates, windows, 1)."""
    rng = np.random.default_rng(seed)
    shape = (replicates, plan.windows, 1)
    requests = rng.poisson(plan.volume, size=shape).astype(np.float64)
    n_b = rng.binomial(requests.astype(np.int64), plan.fraction).astype(np.float64)
    n_a = requests - n_b
    arms = []
    for n, c in ((n_a, 1.0), (n_b, 1.0 + plan.relative_effect)):
        mean, cov = _moments(plan, c)
        chol = np.linalg.cholesky(cov + 1e-15 * np.eye(4))
        z = rng.standard_normal((*shape, 4))
        draw = n[..., None] * mean + np.sqrt(n)[..., None] * (z @ chol.T)
        sx = np.clip(draw[..., 0], 0.0, n)
        sxx = np.clip(draw[..., 1], sx * sx / np.maximum(n, 1.0), sx)
        sy = np.clip(np.round(draw[..., 2]), 0.0, n)
        sxy = np.clip(draw[..., 3], 0.0, np.minimum(sx, sy))
        arms.append((n, sy, sx, sxx, sxy))
    (na, ya, xa, xxa, xya), (nb, yb, xb, xxb, xyb) = arms
    return (Cells(na, ya, ya.copy(), nb, yb, yb.copy()),
            Covariate(xa, xxa, xya, xb, xxb, xyb))


@dataclass(frozen=True)
class ProductionPoint:
    """Rollback rate within the horizon and the median windows to rollback."""

    rollback_rate: float
    median_detection: float
    halted_rate: float


def evaluate_production(plan: CovariatePlan, replicates: int, seed: int, *,
                        alpha: float = 0.05, covariate: bool = True, chunk: int = 100,
                        weights: tuple[float, float, float] | None = None,
                        tau_rel: float = DEFAULT_TAU_REL) -> ProductionPoint:
    """Simulate the production spec (conversion, latency, errors + SRM) on ``plan``.

    ``weights`` are the metrics' spec weights (conversion, latency, errors) in the
    averaged harm e-value; None averages them equally. ``tau_rel`` is the conversion's
    mixture scale (relative to its baseline mean; :mod:`streammon.stats.meandiff`).
    """
    first, halted = [], []
    rollback_alpha = alpha / 2 - SRM_ALPHA
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        conv, cov = draw_covariate_cells(plan, size, seed + start)
        judged = adjust_cells(conv, cov) if covariate else conv
        kind = "continuous" if covariate else "binary"
        log_es = [_log_e(judged, kind, "decrease", alpha, tau_rel)]
        for metric_seed, (mkind, means) in enumerate((("continuous", (100.0,)),
                                                      ("binary", (0.001,)))):
            other = draw_cells(make_plan(mkind, windows=plan.windows, volume=plan.volume,
                                         segment_means=means, fractions=(plan.fraction,)),
                               size, seed + start + 7919 * (metric_seed + 1))
            log_es.append(_log_e(other, mkind, "increase", alpha))
        peak = np.maximum.accumulate(log_mean_e(log_es, weights), axis=-1)
        harm = peak >= np.log(1.0 / rollback_alpha)
        srm = compute_srm(conv.n_a.sum(axis=-1), conv.n_b.sum(axis=-1),
                          np.full(plan.windows, plan.fraction), alpha=SRM_ALPHA).mismatch
        halt_at = np.where(srm.any(axis=-1), srm.argmax(axis=-1), np.inf)
        harm_at = np.where(harm.any(axis=-1), harm.argmax(axis=-1), np.inf)
        first.append(np.where(harm_at < halt_at, harm_at + 1, np.inf))
        halted.append(np.isfinite(halt_at) & (halt_at <= harm_at))
    detect = np.concatenate(first)
    return ProductionPoint(float(np.isfinite(detect).mean()), float(np.median(detect)),
                           float(np.concatenate(halted).mean()))


def _log_e(cells: Cells, kind: str, bad_direction: str, alpha: float,
           tau_rel: float = DEFAULT_TAU_REL) -> FloatArray:
    result = compute_sequence(cells, kind=kind, bad_direction=bad_direction, alpha=alpha / 2,
                              tau_rel=tau_rel)
    assert result.log_e_harm is not None
    return np.asarray(np.nan_to_num(result.log_e_harm, nan=0.0, neginf=-700.0), np.float64)
