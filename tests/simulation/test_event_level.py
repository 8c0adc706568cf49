# ruff: noqa: RUF002
"""Event-level rollouts replayed by replay_events: false rollbacks, novelty, detection.

The fast subset runs a handful of replicates in `make test`; the slow-marked run uses
300 replicates per scenario, as the event-level table of docs/statistics.md.
"""

from __future__ import annotations

import pytest

from streammon.sim.event_operating_points import evaluate_events, event_catalog, wilson

SLOW_TIMEOUT_S = 3600
"""300 event-level replicates of one scenario take 5 to 10 minutes on two shared cores,
past the suite's default per-test timeout."""
SCENARIOS = {s.name: s for s in event_catalog()}
HOLDING_NULLS = [
    "outcome delay 5 s vs 50 s by arm, equal rates A/A",
    "base rate rising 30% during the ramp A/A",
    "1% canary, six tiny segments A/A",
    "SRM halt (canary loss, windows 0-7), fixed, resumed at 10 A/A",
    "heavy-tailed latency (sigma 1.2) with 1 s timeouts A/A",
    "same, judged on p95 latency and timeouts (4 metrics) A/A",
]
TAIL_HARM = "p95 latency: 3% of canary requests 5x slower (mean +12%), p95 spec"
NOVELTY = "novelty: conversion +5% for 15 windows, then -5%"


def test_fast_a_clear_harm_is_rolled_back_at_event_level() -> None:
    """A 30% conversion drop, replayed from events, is rolled back in every replicate."""
    outcome = evaluate_events(SCENARIOS["conversion -30% (event level)"], 4, seed=1)
    assert outcome.rollback == 1.0
    assert outcome.promote == 0.0


def test_fast_a_resumed_srm_halt_does_not_halt_again() -> None:
    """After the router is fixed and the rollout resumed, no replicate is rolled back."""
    outcome = evaluate_events(SCENARIOS[HOLDING_NULLS[3]], 3, seed=2)
    assert outcome.hold == 1.0  # the broken router was caught
    assert outcome.rollback == 0.0


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
@pytest.mark.parametrize("name", HOLDING_NULLS)
def test_slow_event_level_false_rollbacks_at_most_half_alpha(name: str) -> None:
    """300 event-level A/A rollouts: the false-rollback rate is consistent with ≤ α/2 = 2.5%."""
    outcome = evaluate_events(SCENARIOS[name], 300, seed=11)
    assert outcome.rollback_ci[0] <= 0.025


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
def test_slow_novelty_is_almost_never_promoted() -> None:
    """A canary better at first and worse now is promoted in ≤ 2.5% of 300 rollouts."""
    outcome = evaluate_events(SCENARIOS[NOVELTY], 300, seed=12)
    assert wilson(round(outcome.promote * 300), 300)[0] <= 0.025
    assert outcome.promote <= 0.025


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
def test_slow_a_heavier_latency_tail_is_rolled_back_on_its_p95() -> None:
    """300 rollouts whose canary slows 3% of requests 5x: nearly all rolled back."""
    outcome = evaluate_events(SCENARIOS[TAIL_HARM], 300, seed=13)
    assert outcome.rollback >= 0.95
