# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Exact anytime-valid tests for rare events: conditional binomial e-processes on a rate ratio.

Events in arm x of cell c form a Poisson process with rate λ_x over exposure n_x,c.
Conditional on the cell's total ``k_c = e_a,c + e_b,c`` (Lindon & Malek 2022, Sec. 4:
Poisson processes conditioned on their total are multinomial), the canary's events are::

    e_b,c | k_c ~ Binomial(k_c, π_c(φ)),   π_c(φ) = φ r_c / (1 + φ r_c),   r_c = n_b,c / n_a,c

with φ = λ_b / λ_a the rate ratio. Up to a φ-free constant the log-likelihood is
``ℓ_t(φ) = Σ_{c≤t} [e_b,c log φ − k_c log(1 + φ r_c)]``. For a null φ0 and a prior π on
alternatives the mixture ``M_t(φ0) = Σ_g π_g exp(ℓ_t(φ_g) − ℓ_t(φ0))`` is a nonnegative
martingale under φ0 — exactly, with no normal approximation, and a cell with zero
events (k_c = 0) contributes a factor of 1. With the prior on one side of φ0 it is a
supermartingale for every φ on the other side (monotone likelihood ratio), so it tests
the composite one-sided null. The prior is a discretised N(0, s²) on log φ over a fixed
grid, so every mixture is a finite sum evaluated in log space (``logaddexp``).

References
----------
Lindon & Malek (2022), "Anytime-valid inference for multinomial count data", NeurIPS,
Sec. 4 (time-inhomogeneous Poisson counting processes, conditional multinomial test).
Robbins (1970); Ville (1939) for the inequality ``P(∃t: M_t ≥ 1/α) ≤ α``.

"""

from __future__ import annotations

import numpy as np

from streammon.stats.cells import FloatArray

GRID_LOG_RATIO = np.linspace(-3.0, 3.0, 121)
NULL_INDEX = 60
DEFAULT_PRIOR_SD = 0.5


def log_likelihood_grid(k: FloatArray, events_b: FloatArray, ratio: FloatArray,
                        grid: FloatArray = GRID_LOG_RATIO) -> FloatArray:
    """Return ``ℓ_t(φ_g)`` shaped ``(..., windows, grid)`` from cells ``(..., windows, segments)``.

    ``ratio`` is r_c = n_b/n_a (use 0 and k = 0 for cells where an arm is empty).
    """
    phi = np.exp(grid)
    per_window = (events_b.sum(axis=-1)[..., None] * grid
                  - (k[..., None] * np.log1p(ratio[..., None] * phi)).sum(axis=-2))
    return np.asarray(np.cumsum(per_window, axis=-2), dtype=np.float64)


def log_prior(grid: FloatArray = GRID_LOG_RATIO, sd: float = DEFAULT_PRIOR_SD) -> FloatArray:
    """Return unnormalised log prior weights, N(0, sd²) on log φ, at the grid points."""
    return np.asarray(-0.5 * (grid / sd) ** 2, dtype=np.float64)


def log_e_right(loglik: FloatArray, prior: FloatArray) -> FloatArray:
    """For every grid null φ_g, log M against alternatives φ > φ_g (prior renormalised).

    ``out[..., g] = log Σ_{j>g} π_j e^{ℓ_j} − log Σ_{j>g} π_j − ℓ_g``; the last grid point has
    no alternative above it and gets ``-inf``.
    """
    joint = _suffix_logsumexp(loglik + prior)[..., :-1]
    norm = _suffix_logsumexp(prior)[:-1]
    out = np.empty_like(loglik)
    out[..., :-1] = joint - norm - loglik[..., :-1]
    out[..., -1] = -np.inf
    return np.asarray(out, dtype=np.float64)


def log_e_left(loglik: FloatArray, prior: FloatArray) -> FloatArray:
    """For every grid null φ_g, log M against alternatives φ < φ_g (mirror of the right test)."""
    return np.asarray(log_e_right(loglik[..., ::-1], prior[::-1])[..., ::-1], dtype=np.float64)


def log_e_two_sided(loglik: FloatArray, prior: FloatArray, null_index: int) -> FloatArray:
    """Return log M of the full-grid mixture against the single null ``φ_{null_index}``."""
    mass = np.logaddexp.reduce(prior)
    joint = np.logaddexp.reduce(loglik + prior, axis=-1)
    return np.asarray(joint - mass - loglik[..., null_index], dtype=np.float64)


def _suffix_logsumexp(x: FloatArray) -> FloatArray:
    """Return ``out[..., g] = log Σ_{j>g} exp(x[..., j])`` (``-inf`` for the last g)."""
    rev = np.logaddexp.accumulate(x[..., :0:-1], axis=-1)[..., ::-1]
    tail = np.full((*x.shape[:-1], 1), -np.inf)
    return np.concatenate([rev, tail], axis=-1)


def grid_lower_bound(log_e: FloatArray, threshold: float,
                     grid: FloatArray = GRID_LOG_RATIO) -> FloatArray:
    """Largest grid log φ rejected by a right-sided test (all below it are too), else -inf.

    The confidence sequence's lower end lies above this grid point, so it is conservative.
    """
    rejected = np.logical_and.accumulate(log_e >= threshold, axis=-1)
    count = rejected.sum(axis=-1)
    return np.asarray(np.where(count > 0, grid[np.maximum(count - 1, 0)], -np.inf), np.float64)


def grid_upper_bound(log_e: FloatArray, threshold: float,
                     grid: FloatArray = GRID_LOG_RATIO) -> FloatArray:
    """Smallest grid log φ rejected by a left-sided test (all above it are too), else +inf."""
    return np.asarray(-grid_lower_bound(log_e[..., ::-1], threshold, -grid[::-1]), np.float64)
