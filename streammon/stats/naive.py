# ruff: noqa: RUF002  (formulas use Greek letters and math signs)
"""The naive rule most teams use, for comparison only: a repeated fixed-horizon 95% CI.

After every window, compute the cumulative Δ̂ = μ̂_canary − μ̂_baseline and its Wald
interval ``Δ̂ ± z · se`` (z = 1.96); roll back as soon as the interval lies entirely on
the harmful side. ``pooled=True`` sums every window and segment per arm first (what a
dashboard does; biased under ramps with drift — Simpson's paradox); ``pooled=False``
uses the matched-cohort estimate of :mod:`streammon.stats.meandiff` but still the
fixed-horizon interval, which isolates the cost of peeking. Neither is anytime-valid:
each look spends α again, so false rollbacks accumulate with the number of looks
(Armitage, McPherson & Rowe 1969, "Repeated significance tests on accumulating data").
"""

from __future__ import annotations

import numpy as np

from streammon.stats.cells import Cells, FloatArray
from streammon.stats.meandiff import _cell_effects
from streammon.stats.result import BoolArray, harm_signed

Z_95 = 1.959963984540054


def naive_rollback(cells: Cells, *, kind: str, bad_direction: str, pooled: bool = True,
                   z: float = Z_95) -> BoolArray:
    """Return the absorbing rollback flag of the repeated-CI rule after every window."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if pooled:
            effect, se = _pooled(cells, kind)
        else:
            d, w = _cell_effects(cells, "binary" if kind == "count" else kind)
            info = np.cumsum(w.sum(axis=-1), axis=-1)
            effect = np.cumsum((w * d).sum(axis=-1), axis=-1) / info
            se = 1.0 / np.sqrt(info)
        hit = np.nan_to_num(harm_signed(effect, bad_direction) / se) > z
    return np.asarray(np.logical_or.accumulate(hit, axis=-1), dtype=np.bool_)


def _pooled(cells: Cells, kind: str) -> tuple[FloatArray, FloatArray]:
    mean_a, var_a, n_a = _arm(cells.n_a, cells.sum_a, cells.sumsq_a, kind)
    mean_b, var_b, n_b = _arm(cells.n_b, cells.sum_b, cells.sumsq_b, kind)
    return mean_b - mean_a, np.sqrt(var_a / n_a + var_b / n_b)


def _arm(n: FloatArray, total: FloatArray, total_sq: FloatArray,
         kind: str) -> tuple[FloatArray, FloatArray, FloatArray]:
    cn, c1, c2 = (np.cumsum(x.sum(axis=-1), axis=-1) for x in (n, total, total_sq))
    mean = c1 / cn
    if kind == "binary":
        return mean, mean * (1.0 - mean), cn
    if kind == "count":
        return mean, mean, cn
    return mean, (c2 - c1 * mean) / (cn - 1.0), cn
