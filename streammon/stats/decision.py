"""One metric's estimate and verdict after its last judged window; assignment checks.

:class:`MetricEstimate` is the one in-process estimate type: the statistics build it and
the decider (:mod:`streammon.decide.policy`) judges it; it becomes the wire's
:class:`streammon.events.MetricEstimate` only when a diagnosis is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from streammon.stats.cells import FloatArray, StatsInputError, as_cells
from streammon.stats.sequence import compute_sequence


class Verdict(StrEnum):
    """Argo-style phases; :func:`streammon.decide.policy.worst` picks the most severe."""

    PROMOTE = "Promote"
    STEP = "Step"
    PENDING = "Pending"
    RUNNING = "Running"
    INCONCLUSIVE = "Inconclusive"
    HALT = "Halt"
    ERROR = "Error"
    ROLLBACK = "Rollback"


@dataclass(frozen=True)
class MetricEstimate:
    """One metric's state after the last judged window (absolute Δ = canary - baseline)."""

    name: str
    verdict: Verdict
    effect: float
    relative: float
    lower: float
    upper: float
    p_harm: float
    n_a: float
    n_b: float
    windows_judged: int
    changed: bool = False
    """The effect changed during the rollout: effect and bounds are the current stage's."""


def summarize_metric(name: str, cells: Mapping[str, object], *, kind: str, bad_direction: str,
                     margin: float, label_delay_windows: int, alpha: float) -> MetricEstimate:
    """Run the metric's test on its matured windows and return the state after the last one."""
    data = as_cells(cells, kind)
    if data.n_a.ndim != 2:
        raise StatsInputError(f"metric cells must be (windows, segments), got {data.shape}")
    judged = data.shape[0] - label_delay_windows
    if judged <= 0:
        nan = float("nan")
        return MetricEstimate(name, Verdict.PENDING, nan, nan, -np.inf, np.inf, 1.0, 0.0, 0.0, 0)
    result = compute_sequence(data.head(judged), kind=kind, bad_direction=bad_direction,
                              alpha=alpha, margin=margin)
    # Unlike replay, non-inferiority is not terminal here: below f_max the rollout goes on,
    # and harm that appears later must still roll back.
    verdict = Verdict.RUNNING
    if result.harm[-1]:
        verdict = Verdict.ROLLBACK
    elif result.noninferior[-1]:
        verdict = Verdict.PROMOTE
    elif result.n_b[-1] == 0:
        verdict = Verdict.PENDING
    return MetricEstimate(
        name=name,
        verdict=verdict,
        effect=float(result.effect[-1]),
        relative=float(result.relative[-1]),
        lower=float(result.lower[-1]),
        upper=float(result.upper[-1]),
        p_harm=float(result.p_harm[-1]),
        n_a=float(result.n_a[-1]),
        n_b=float(result.n_b[-1]),
        windows_judged=judged,
    )


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
