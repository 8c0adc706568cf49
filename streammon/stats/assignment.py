"""The per-window assignment counts the decider checks (sample ratio, stage size).

The one estimate type, from the statistics to the wire, is
:class:`streammon.events.MetricEstimate` (built by :mod:`streammon.decide.policy`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from streammon.stats.cells import FloatArray, StatsInputError


def check_assignment(assignment: Mapping[str, object]) -> tuple[FloatArray, FloatArray,
                                                                   FloatArray]:
    """Return per-window ``(n_a, n_b, fraction)``; 2-D counts are summed over segments."""
    for key in ("n_a", "n_b", "fraction"):
        if key not in assignment:
            raise StatsInputError(f"assignment lacks {key!r}; pass n_a, n_b and fraction")
    n_a, n_b = (_window_totals(assignment[k], k) for k in ("n_a", "n_b"))
    fraction = np.asarray(assignment["fraction"], dtype=np.float64).reshape(-1)
    if not (n_a.shape == n_b.shape == fraction.shape):
        raise StatsInputError(
            f"assignment shapes differ: n_a {n_a.shape}, n_b {n_b.shape}, "
            f"fraction {fraction.shape}; give one value per window"
        )
    return n_a, n_b, fraction


def _window_totals(value: object, key: str) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr.sum(axis=1)
    if arr.ndim != 1:
        raise StatsInputError(f"assignment[{key!r}] must be (windows,) or (windows, segments)")
    return arr


def canary_samples(n_b: FloatArray, windows_in_stage: int) -> float:
    """Return the canary requests in the last ``windows_in_stage`` windows."""
    if windows_in_stage <= 0:
        return 0.0
    return float(n_b[-windows_in_stage:].sum())
