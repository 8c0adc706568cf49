"""The scenarios of ``docs/statistics.md`` and their operating characteristics.

Every scenario has 200 one-minute windows, a look after every window, alpha = 0.05 and
1,000 requests/s (60,000 per window) unless it says otherwise. ``evaluate`` runs
streammon's test and the two naive rules on the same seeded replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from streammon.sim.cell_draws import TrafficPlan, draw_cells, make_plan
from streammon.stats.cells import FloatArray
from streammon.stats.naive import naive_rollback
from streammon.stats.sequence import compute_sequence

CONVERSION = (0.15, 0.12, 0.08, 0.05)
LATENCY_MS = (80.0, 100.0, 120.0, 150.0)
ERRORS = (0.001, 0.001, 0.001, 0.001)
RAMP = (0.05, 0.1, 0.2, 0.4, 0.5)
CHUNK = 100


@dataclass(frozen=True)
class Scenario:
    """A named plan, the direction that hurts, and whether a true harm is injected."""

    name: str
    plan: TrafficPlan
    bad_direction: str
    harmful: bool


@dataclass(frozen=True)
class OperatingPoint:
    """Rollback rates within the horizon and detection times for one scenario."""

    name: str
    kind: str
    replicates: int
    rollback_rate: float
    median_detection: float
    naive_pooled_rate: float
    naive_cellwise_rate: float
    fixed_horizon: float = float("nan")


def catalog() -> tuple[Scenario, ...]:
    """Return the scenarios of the docs table: no-difference ones first, then harms."""
    conv, lat = "binary", "continuous"
    return (
        Scenario("conversion A/A", make_plan(conv, segment_means=CONVERSION), "decrease", False),
        Scenario("latency A/A (lognormal)", make_plan(lat, segment_means=LATENCY_MS),
                 "increase", False),
        Scenario("rare errors A/A (count, 0.1%)", make_plan("count", segment_means=ERRORS),
                 "increase", False),
        Scenario("rare errors A/A (binary, 0.1%)", make_plan(conv, segment_means=ERRORS),
                 "increase", False),
        Scenario("ramp 5%->50% + time-of-day drift A/A",
                 make_plan(conv, segment_means=CONVERSION, fractions=RAMP, drift=0.3),
                 "decrease", False),
        Scenario("ramp + segment-mix shift A/A",
                 make_plan(conv, segment_means=CONVERSION, fractions=RAMP, mix_shift=True),
                 "decrease", False),
        Scenario("small lopsided cells A/A (latency, 400/window)",
                 make_plan(lat, volume=400.0, segment_means=LATENCY_MS, sigma_log=1.0),
                 "increase", False),
        Scenario("latency p95 A/A (share above the baseline's p95, 5%)",
                 make_plan(conv, segment_means=(0.05,) * 4), "increase", False),
        Scenario("conversion 10% -> 9.5% (-5% rel.)",
                 make_plan(conv, segment_means=(0.10,), relative_effect=-0.05), "decrease", True),
        Scenario("conversion 10% -> 9.8% (-2% rel.)",
                 make_plan(conv, segment_means=(0.10,), relative_effect=-0.02), "decrease", True),
        Scenario("latency +5%", make_plan(lat, segment_means=LATENCY_MS, relative_effect=0.05),
                 "increase", True),
        Scenario("latency p95: 5% -> 6% of requests above the baseline's p95",
                 make_plan(conv, segment_means=(0.05,) * 4, relative_effect=0.2), "increase",
                 True),
        Scenario("rare errors +50% (count)",
                 make_plan("count", segment_means=ERRORS, relative_effect=0.5), "increase", True),
        Scenario("error rate doubling 0.1% -> 0.2% (count)",
                 make_plan("count", segment_means=(0.001,), relative_effect=1.0), "increase",
                 True),
    )


def fixed_horizon_windows(plan: TrafficPlan, alpha: float = 0.05, power: float = 0.8) -> float:
    """Return the windows a fixed-horizon two-sided level-alpha z-test needs for ``power``.

    With the plan's expected cell sizes and each arm's variance under the alternative
    (σ² = p(1-p) for binary, λ for counts, the lognormal variance for continuous), the
    per-window information of the inverse-variance combined difference is
    ``I₁ = Σ_c 1/(σ²_a,c/n_a,c + σ²_b,c/n_b,c)``, and the textbook sample size is
    ``n = (z_{1-alpha/2} + z_{power})² / (I₁ Δ²)`` windows, Δ the absolute effect averaged
    over segments by their information (Chow, Shao & Wang, "Sample Size Calculations in
    Clinical Research", 2nd ed., Sec. 4.2).
    """
    requests = plan.volume[0] * plan.mix[0]
    n_b = requests * plan.fraction[0]
    n_a = requests - n_b
    mean_a = plan.base_mean[0]
    mean_b = mean_a * (1.0 + plan.relative_effect)
    weight = 1.0 / (_variance(plan, mean_a) / n_a + _variance(plan, mean_b) / n_b)
    delta = float(np.sum(weight * (mean_b - mean_a)) / np.sum(weight))
    if delta == 0.0:
        return float("inf")
    z = scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power)
    return float(z * z / (np.sum(weight) * delta * delta))


def evaluate(scenario: Scenario, replicates: int, seed: int, alpha: float = 0.05) -> OperatingPoint:
    """Simulate ``replicates`` rollouts and summarise streammon's and the naive rules' rates.

    streammon's harm test runs at ``alpha/2``: the decider's rollback half of alpha (the
    other half guards promotion), so the rates are those of a two-sided 1 - alpha design.
    """
    first, pooled, cellwise = [], [], []
    for start in range(0, replicates, CHUNK):
        size = min(CHUNK, replicates - start)
        cells = draw_cells(scenario.plan, size, seed + start)
        kind, bad = scenario.plan.kind, scenario.bad_direction
        harm = compute_sequence(cells, kind=kind, bad_direction=bad, alpha=alpha / 2).harm
        first.append(np.where(harm.any(axis=-1), harm.argmax(axis=-1) + 1, np.inf))
        pooled.append(naive_rollback(cells, kind=kind, bad_direction=bad)[:, -1])
        cellwise.append(naive_rollback(cells, kind=kind, bad_direction=bad, pooled=False)[:, -1])
    detect = np.concatenate(first)
    return OperatingPoint(
        name=scenario.name,
        kind=scenario.plan.kind,
        replicates=replicates,
        rollback_rate=float(np.isfinite(detect).mean()),
        median_detection=float(np.median(detect)),
        naive_pooled_rate=float(np.concatenate(pooled).mean()),
        naive_cellwise_rate=float(np.concatenate(cellwise).mean()),
        fixed_horizon=fixed_horizon_windows(scenario.plan, alpha),
    )


def _variance(plan: TrafficPlan, mean: FloatArray) -> FloatArray:
    if plan.kind == "binary":
        return np.asarray(mean * (1.0 - mean), dtype=np.float64)
    if plan.kind == "count":
        return np.asarray(mean, dtype=np.float64)
    return np.asarray(mean**2 * np.expm1(plan.sigma_log**2), dtype=np.float64)
