# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""CUPED: variance reduction with a pre-exposure covariate, θ fixed before each window.

Each judged request carries an outcome y and a covariate x known before the request was
exposed to either model — the *baseline* model's score computed on every request
(whatever the arm), or the unit's own metric before the rollout; never the candidate's
own score, which the treatment moves. Because the router assigns arms at random, x has
the same distribution in both arms, so for any constants θ and m the adjusted outcome
``y' = y − θ (x − m)`` has the same difference of arm means as y, and its variance is
``Var(y) − 2θ Cov(x, y) + θ² Var(x)``, smallest at ``θ* = Cov(x, y)/Var(x)``, where it is
``(1 − R²) Var(y)`` (Deng, Xu, Kohavi & Walker 2013, "Improving the sensitivity of
online controlled experiments by utilizing pre-experiment data", WSDM, Sec. 3, eqs. 3–4).

Anytime validity. θ and m used for window t are estimated only from windows before t
(both arms pooled; the covariance within cells, so segments and windows with different
base rates do not bias it), so they are *predictable*: given the past, window t's
adjusted cells are a fixed transformation of its requests, and the matched-cohort mixture
martingale of :mod:`streammon.stats.meandiff` stays one (the same argument as for its
plug-in variances; Waudby-Smith et al. 2024, asymptotic confidence sequences). The
first window has no past: it uses its own θ and m, computed from its requests with both
arms pooled (θ centred per cell over both arms). Under no effect the assignment only
permutes those pooled requests between the arms, so θ_0 and m_0 are fixed given them,
and the window's adjusted difference of arm means still has mean zero over the random
assignment (a randomization argument, as in CUPED's fixed-horizon use, Deng et al.
2013). Left unadjusted, that window's full variance stayed in the pooled variance
plug-in of every later window and cost about half a window of detection. m, the
covariate's running mean, keeps the adjusted mean near the unadjusted one, so the
mixture's scale (τ = 5% of the baseline mean) is unchanged.

The cells of the adjusted metric follow from per-arm sums ``n, Σy, Σy², Σx, Σx², Σxy``::

    Σy'  = Σy − θ (Σx − n m)
    Σy'² = Σy² − 2θ (Σxy − m Σy) + θ² (Σx² − 2m Σx + n m²)

Pure functions of numpy arrays shaped ``(..., windows, segments)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streammon.stats.cells import Cells, FloatArray, StatsInputError

COVARIATE_FIELDS = ("sum_x_a", "sumsq_x_a", "sum_xy_a", "sum_x_b", "sumsq_x_b", "sum_xy_b")
"""Per-arm covariate sums over the requests of the outcome cells: Σx, Σx², Σxy."""


@dataclass(frozen=True)
class Covariate:
    """Per-window covariate sums of both arms, aligned with an outcome metric's cells."""

    sum_x_a: FloatArray
    sumsq_x_a: FloatArray
    sum_xy_a: FloatArray
    sum_x_b: FloatArray
    sumsq_x_b: FloatArray
    sum_xy_b: FloatArray


def as_covariate(sums: Mapping[str, object], shape: tuple[int, ...]) -> Covariate:
    """Validate the six covariate arrays (finite, shaped like the outcome cells)."""
    missing = [f for f in COVARIATE_FIELDS if f not in sums]
    if missing:
        raise StatsInputError(f"covariate sums lack {missing}; pass all of {COVARIATE_FIELDS}")
    arrays = {f: np.asarray(sums[f], dtype=np.float64) for f in COVARIATE_FIELDS}
    for field, arr in arrays.items():
        if arr.shape != shape:
            raise StatsInputError(f"covariate[{field!r}] has shape {arr.shape}, the outcome "
                                  f"cells {shape}: one value per (window, segment)")
        if not np.all(np.isfinite(arr)):
            raise StatsInputError(f"covariate[{field!r}] contains NaN or inf")
    return Covariate(**arrays)


def adjustment(cells: Cells, cov: Covariate) -> tuple[FloatArray, FloatArray]:
    """Return (θ_t, m_t) per window from windows before t (the first window: its own).

    ``θ_t = Σ_{s<t} Σ_c S_xy,c / Σ_{s<t} Σ_c S_xx,c`` with the within-cell centred sums
    ``S_xy = Σxy − Σx Σy / n`` and ``S_xx = Σx² − (Σx)²/n`` of each arm, and ``m_t`` the
    mean of x over windows before t. The first window has no past: its θ_0 is centred
    per cell over both arms pooled, and m_0 is its own mean of x, so both are functions
    of the pooled requests, which the assignment only permutes under no effect.
    """
    s_xy = np.zeros(cells.n_a.shape[:-1])
    s_xx = np.zeros(cells.n_a.shape[:-1])
    total_x = np.zeros(cells.n_a.shape[:-1])
    total_n = np.zeros(cells.n_a.shape[:-1])
    for n, y, x, xx, xy in ((cells.n_a, cells.sum_a, cov.sum_x_a, cov.sumsq_x_a, cov.sum_xy_a),
                            (cells.n_b, cells.sum_b, cov.sum_x_b, cov.sumsq_x_b, cov.sum_xy_b)):
        safe = np.maximum(n, 1.0)
        s_xy = s_xy + (xy - x * y / safe).sum(axis=-1)
        s_xx = s_xx + np.maximum(xx - x * x / safe, 0.0).sum(axis=-1)
        total_x = total_x + x.sum(axis=-1)
        total_n = total_n + n.sum(axis=-1)
    pooled_xy, pooled_xx = _pooled_centred(cells, cov)
    past_xy, past_xx = _before(s_xy, pooled_xy), _before(s_xx, pooled_xx)
    past_x, past_n = _before(total_x, total_x), _before(total_n, total_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(past_xx > 0, past_xy / past_xx, 0.0)
        mean = np.where(past_n > 0, past_x / np.maximum(past_n, 1.0), 0.0)
    return np.asarray(theta, dtype=np.float64), np.asarray(mean, dtype=np.float64)


def _pooled_centred(cells: Cells, cov: Covariate) -> tuple[FloatArray, FloatArray]:
    """Return per window ``Σ_c S_xy,c`` and ``Σ_c S_xx,c`` centred over both arms of a cell."""
    n = cells.n_a + cells.n_b
    safe = np.maximum(n, 1.0)
    x, y = cov.sum_x_a + cov.sum_x_b, cells.sum_a + cells.sum_b
    s_xy = (cov.sum_xy_a + cov.sum_xy_b - x * y / safe).sum(axis=-1)
    s_xx = np.maximum(cov.sumsq_x_a + cov.sumsq_x_b - x * x / safe, 0.0).sum(axis=-1)
    return np.asarray(s_xy, dtype=np.float64), np.asarray(s_xx, dtype=np.float64)


def _before(sums: FloatArray, first: FloatArray) -> FloatArray:
    """Return the sum over windows before t; for the first window, ``first``'s own value."""
    past = np.cumsum(sums, axis=-1) - sums
    if sums.shape[-1]:
        past[..., 0] = first[..., 0]
    return np.asarray(past, dtype=np.float64)


def adjust_cells(cells: Cells, cov: Covariate) -> Cells:
    """Return the cells of ``y' = y − θ_t (x − m_t)`` (a continuous metric), per window."""
    theta, mean = adjustment(cells, cov)
    th, m = theta[..., None], mean[..., None]
    out = []
    for n, y, yy, x, xx, xy in (
            (cells.n_a, cells.sum_a, cells.sumsq_a, cov.sum_x_a, cov.sumsq_x_a, cov.sum_xy_a),
            (cells.n_b, cells.sum_b, cells.sumsq_b, cov.sum_x_b, cov.sumsq_x_b, cov.sum_xy_b)):
        total = y - th * (x - n * m)
        square = yy - 2.0 * th * (xy - m * y) + th * th * (xx - 2.0 * m * x + n * m * m)
        out += [n, np.where(n > 0, total, 0.0), np.where(n > 0, np.maximum(square, 0.0), 0.0)]
    return Cells(*out)
