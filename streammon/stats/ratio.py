# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""Ratio metrics over units: delta-method pseudo-sums for the mean-difference tests.

The join aggregates a unit's observations in its first-exposure cell (DESIGN rule 10):
unit u has total y_u over m_u observations, and the metric is the per-observation mean
``r = Σy/Σm`` (conversions per request, milliseconds per request). The units, not the
requests, are the independent draws, so the variance of ``r`` is the delta-method
(linearisation) variance of a ratio of means: with ``m̄ = Σm/n``,

    Var(r) ≈ (1/n) · Var(y − r·m) / m̄²
           = (1/n) · (σ_y²/μ_m² − 2 μ_y σ_ym/μ_m³ + μ_y² σ_m²/μ_m⁴)

(Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics: A Practical
Guide with Novel Ideas", KDD, Sec. 2: the variance of Ȳ/X̄ by the delta method;
Kohavi, Tang & Xu 2020, "Trustworthy Online Controlled Experiments", Ch. 18, for why a
unit's requests are not independent draws). That is the variance of the mean of the n
pseudo-values ``z_u = r + (y_u − r·m_u)/m̄``, whose sums are

    Σz = n·r,   Σz² = Σ(y − r·m)²/m̄² + n·r²,   Σ(y − rm)² = Σy² − 2rΣym + r²Σm².

So a cell of units becomes an ordinary ``(n, Σz, Σz²)`` cell with n = units, and the
tests take it unchanged. With one observation per unit (m_u = 1) the pseudo-values are the
observations: ``(Σz, Σz²) = (Σy, Σy²)`` exactly. Pure.
"""

from __future__ import annotations

import numpy as np

from streammon.stats.cells import FloatArray


def linearize(n: FloatArray, total: FloatArray, total_sq: FloatArray, dm: FloatArray,
              dm2: FloatArray, dym: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return (Σz, Σz²) of each cell's delta-method pseudo-values (see the module docstring).

    ``n`` counts units with an observation, ``total`` = Σy_u, ``total_sq`` = Σy_u²; the
    ratio sums come as excesses over one observation per unit (what the join keeps):
    ``dm`` = Σ(m_u − 1), ``dm2`` = Σ(m_u² − 1), ``dym`` = Σy_u(m_u − 1). Add the sums of
    one cell's partitions before linearising, never after. Cells without excess (one
    observation per unit) are returned unchanged.
    """
    n, total, total_sq, dm, dm2, dym = (np.asarray(x, dtype=np.float64)
                                        for x in (n, total, total_sq, dm, dm2, dym))
    ratio = (dm != 0.0) | (dm2 != 0.0) | (dym != 0.0)
    safe_n = np.where(n > 0, n, 1.0)
    sum_m = safe_n + dm
    r = total / np.where(sum_m > 0, sum_m, 1.0)
    m_bar = sum_m / safe_n
    resid = np.maximum(total_sq - 2.0 * r * (total + dym) + r * r * (safe_n + dm2), 0.0)
    sum_z = np.where(ratio & (n > 0), n * r, total)
    sum_z2 = np.where(ratio & (n > 0), resid / (m_bar * m_bar) + n * r * r, total_sq)
    return np.asarray(sum_z, dtype=np.float64), np.asarray(sum_z2, dtype=np.float64)
