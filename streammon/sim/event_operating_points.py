"""The event-level scenarios of ``docs/statistics.md``, judged by ``replay_events``.

Each scenario is an :class:`~streammon.sim.event_draws.EventPlan` (requests, units,
outcomes) and a rollout spec; :func:`evaluate_events` draws seeded replicates, runs
:func:`streammon.backtest.replay_events` on each (the worker's join and decider, in event
time) and counts first rollbacks, promotions and holds, with Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streammon.sim.event_draws import EventPlan, draw_events

RAMP = (0.05, 0.1, 0.2, 0.4, 0.5)
WINDOWS = 40
REQUESTS = 1000
WINDOW_MS = 60_000


@dataclass(frozen=True)
class EventScenario:
    """A named event plan, the spec it runs under and whether the candidate harms users."""

    name: str
    plan: EventPlan
    spec: dict[str, Any]
    harmful: bool
    commands: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class EventOutcome:
    """Rates over replicates: first action, with Wilson 95% intervals, and detection times."""

    name: str
    replicates: int
    rollback: float
    rollback_ci: tuple[float, float]
    promote: float
    promote_ci: tuple[float, float]
    hold: float
    median_rollback_window: float


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Return the Wilson score interval of a binomial proportion (Wilson 1927, JASA 22)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def production_spec(**kw: Any) -> dict[str, Any]:
    """Return the three-metric spec (conversion, latency, errors) the scenarios run under."""
    spec: dict[str, Any] = {
        "rollout_id": "sim", "baseline": "baseline", "candidate": "canary",
        "metrics": [
            {"name": "label", "kind": "binary", "bad_direction": "decrease", "margin": 0.002},
            {"name": "latency_ms", "kind": "continuous", "bad_direction": "increase",
             "margin": 2.0},
            {"name": "error", "kind": "binary", "bad_direction": "increase", "margin": 0.002}],
        "f0": 0.05, "f_max": 0.5, "step_windows": 5, "min_samples_per_stage": 100,
        "window_ms": WINDOW_MS, "grace_ms": 10_000}
    spec.update(kw)
    return spec


def tail_spec(**kw: Any) -> dict[str, Any]:
    """Return the production spec with latency judged on its p95 and timeouts guarded."""
    spec = production_spec(**kw)
    spec["metrics"] = [
        spec["metrics"][0],
        {"name": "latency_ms", "kind": "continuous", "bad_direction": "increase",
         "quantile": 0.95, "margin": 0.01},
        spec["metrics"][2],
        {"name": "timeout", "kind": "binary", "bad_direction": "increase", "margin": 0.002}]
    return spec


def _with_label_horizon(horizon_ms: int, **kw: Any) -> dict[str, Any]:
    """Return the production spec with the conversion's attribution horizon set.

    As a user whose outcomes take minutes would: under the default horizon (one window)
    a canary whose labels arrive after a mean 50 s has about 14% of its labels missing
    when its cohort is judged, and the per-arm coverage guard holds every such rollout.
    """
    spec = production_spec(**kw)
    spec["metrics"][0] = {**spec["metrics"][0], "horizon_ms": horizon_ms}
    return spec


def _plan(**kw: Any) -> EventPlan:
    base: dict[str, Any] = {"windows": WINDOWS, "requests_per_window": REQUESTS,
                            "fractions": RAMP, "step_windows": 5, "error_rate": 0.002}
    base.update(kw)
    return EventPlan(**base)


def event_catalog() -> tuple[EventScenario, ...]:
    """Return the event-level scenarios: no-difference ones first, then harms."""
    start = _plan().start_ms
    tiny = (("s1", 0.5, 0.10), ("s2", 0.3, 0.12), ("s3", 0.1, 0.08), ("s4", 0.05, 0.15),
            ("s5", 0.03, 0.05), ("s6", 0.02, 0.2))
    return (
        EventScenario("sticky users, persistent tastes A/A (100 of 4,000 users a window, "
                      "10 req each, ICC~0.02)",
                      _plan(units=40 * REQUESTS // 10, active_units=REQUESTS // 10, unit_sd=0.5),
                      # samples are units: 5 new canary users a window at 5%
                      production_spec(min_samples_per_stage=20), False),
        EventScenario("errors in retry bursts A/A (1%, mean burst 5)",
                      _plan(units=20 * REQUESTS, error_rate=0.01, burst_mean=5.0),
                      production_spec(), False),
        EventScenario("outcome delay 5 s vs 50 s by arm, equal rates A/A",
                      _plan(delay_mean_ms=(5_000.0, 50_000.0)), _with_label_horizon(600_000),
                      False),
        EventScenario("base rate rising 30% during the ramp A/A", _plan(drift=0.3),
                      production_spec(), False),
        EventScenario("1% canary, six tiny segments A/A",
                      _plan(fractions=(0.01,), step_windows=0, segments=tiny),
                      production_spec(strategy="stages", stages=[0.01]), False),
        EventScenario("SRM halt (canary loss, windows 0-7), fixed, resumed at 10 A/A",
                      _plan(fractions=(0.05,), step_windows=0, srm_canary_loss=0.5,
                            srm_windows=(0, 8)),
                      production_spec(strategy="stages", stages=[0.05]), False,
                      ({"action": "resume", "ts_ms": start + 10 * WINDOW_MS + 5},)),
        EventScenario("heavy-tailed latency (sigma 1.2) with 1 s timeouts A/A",
                      _plan(latency_sigma=1.2, timeout_ms=1000.0), production_spec(), False),
        EventScenario("same, judged on p95 latency and timeouts (4 metrics) A/A",
                      _plan(latency_sigma=1.2, timeout_ms=1000.0), tail_spec(), False),
        EventScenario("novelty: conversion +5% for 15 windows, then -5%",
                      _plan(effect=(0.05,) * 15 + (-0.05,)), production_spec(), True),
        EventScenario("conversion -30% (event level)", _plan(effect=(-0.3,)),
                      production_spec(), True),
        EventScenario("p95 latency: 3% of canary requests 5x slower (mean +12%), p95 spec",
                      _plan(latency_slow_share=0.03, latency_slow_factor=5.0,
                            timeout_ms=1000.0), tail_spec(), True),
    )


def evaluate_events(scenario: EventScenario, replicates: int, seed: int) -> EventOutcome:
    """Replay ``replicates`` seeded rollouts of ``scenario`` and summarise their first actions."""
    from streammon.backtest import replay_events

    rollbacks, promotes, holds, when = 0, 0, 0, []
    for r in range(replicates):
        preds, outs = draw_events(scenario.plan, seed + r)
        decisions = replay_events(scenario.spec, preds, outs, commands=scenario.commands)
        actions = [d["action"] for d in decisions]
        if "rollback" in actions:
            rollbacks += 1
            when.append(actions.index("rollback") + 1)
        promotes += "promote" in actions
        holds += "hold" in actions
    n = replicates
    return EventOutcome(
        name=scenario.name, replicates=n, rollback=rollbacks / n,
        rollback_ci=wilson(rollbacks, n), promote=promotes / n, promote_ci=wilson(promotes, n),
        hold=holds / n, median_rollback_window=float(np.median(when)) if when else math.inf)
