"""The scenarios of ``docs/statistics.md`` and their operating characteristics.

Every scenario has 200 one-minute windows, a look after every window, alpha = 0.05 and
1,000 requests/s (60,000 per window) unless it says otherwise. ``evaluate`` runs
streammon's test and the two naive rules on the same seeded replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streammon.sim.cell_draws import TrafficPlan, draw_cells, make_plan
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
        Scenario("conversion 10% -> 9.5% (-5% rel.)",
                 make_plan(conv, segment_means=(0.10,), relative_effect=-0.05), "decrease", True),
        Scenario("conversion 10% -> 9.8% (-2% rel.)",
                 make_plan(conv, segment_means=(0.10,), relative_effect=-0.02), "decrease", True),
        Scenario("latency +5%", make_plan(lat, segment_means=LATENCY_MS, relative_effect=0.05),
                 "increase", True),
        Scenario("rare errors +50% (count)",
                 make_plan("count", segment_means=ERRORS, relative_effect=0.5), "increase", True),
    )


def evaluate(scenario: Scenario, replicates: int, seed: int, alpha: float = 0.05) -> OperatingPoint:
    """Simulate ``replicates`` rollouts and summarise streammon's and the naive rules' rates."""
    first, pooled, cellwise = [], [], []
    for start in range(0, replicates, CHUNK):
        size = min(CHUNK, replicates - start)
        cells = draw_cells(scenario.plan, size, seed + start)
        kind, bad = scenario.plan.kind, scenario.bad_direction
        harm = compute_sequence(cells, kind=kind, bad_direction=bad, alpha=alpha).harm
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
    )
