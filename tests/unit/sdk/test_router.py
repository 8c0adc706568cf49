"""Unit tests for sticky weighted assignment (no Redis)."""

from __future__ import annotations

import itertools

import pytest
import redis

from streammon.control.commands import RouteState, make_command, route_state_for
from streammon.events import Action
from streammon.sdk.router import Router, assign, unit_position
from tests.helpers import DECIDER_KEY, DEV_KEYS, SERVING_NODE_KEY

KEY = DECIDER_KEY


def _state(fraction: float, seq: int = 1, action: Action = "step") -> RouteState:
    cmd = make_command(
        rollout_id="r1",
        seq=seq,
        action=action,
        baseline="v1",
        candidate="v2",
        fraction=fraction,
        now_ms=0,
    )
    return route_state_for(cmd)


def _canary_units(fraction: float, n_units: int) -> set[str]:
    state = _state(fraction)
    ids = (f"user-{i}" for i in range(n_units))
    return {u for u in ids if assign(u, state, default_version="v1").arm == "canary"}


def test_assignment_is_sticky() -> None:
    """The same unit under the same state always gets the same version."""
    state = _state(0.3)
    first = [assign(f"u{i}", state, default_version="v1") for i in range(500)]
    again = [assign(f"u{i}", state, default_version="v1") for i in range(500)]
    assert first == again


def test_sticky_routing_is_monotone_in_fraction() -> None:
    """Every unit in the canary at a smaller fraction stays in it at every larger one."""
    fractions = [0.01, 0.05, 0.1, 0.2, 0.5, 0.9]
    cohorts = [_canary_units(f, 5000) for f in fractions]
    for smaller, larger in itertools.pairwise(cohorts):
        assert smaller < larger


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5])
def test_empirical_split_matches_fraction(fraction: float) -> None:
    """Over 20k ids the canary share is within 4 binomial standard errors of the fraction."""
    n_units = 20_000
    share = len(_canary_units(fraction, n_units)) / n_units
    tolerance = 4 * (fraction * (1 - fraction) / n_units) ** 0.5
    assert abs(share - fraction) < tolerance


def test_unit_position_is_uniform_range_and_salted() -> None:
    """Positions lie in [0, 1) and differ between rollouts for the same unit."""
    positions = [unit_position(f"u{i}", "r1") for i in range(1000)]
    assert all(0.0 <= p < 1.0 for p in positions)
    others = [unit_position(f"u{i}", "r2") for i in range(1000)]
    assert positions != others


def test_no_state_routes_to_default_baseline() -> None:
    """With no route state ever, every unit goes to the pinned baseline with no seq."""
    got = assign("anyone", None, default_version="v-pinned")
    assert (got.version, got.arm, got.weights_seq) == ("v-pinned", "baseline", None)


def test_rollback_and_promote_extremes() -> None:
    """Rollback sends everyone to the baseline and promote everyone to the candidate."""
    rolled = _state(0.5, action="rollback")
    promoted = _state(0.5, action="promote")
    ids = [f"u{i}" for i in range(1000)]
    assert {assign(u, rolled, default_version="x").version for u in ids} == {"v1"}
    assert {assign(u, promoted, default_version="x").version for u in ids} == {"v2"}


def _offline_router() -> Router:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    return Router(client=client, rollout_id="r1", default_version="v1", keys=DEV_KEYS)


def test_router_fast_path_takes_only_newer_signed_commands() -> None:
    """offer() applies a newer signed command and rejects forged, unsigned and replayed ones."""
    router = _offline_router()
    common = {
        "rollout_id": "r1",
        "action": "step",
        "baseline": "v1",
        "candidate": "v2",
        "now_ms": 0,
    }
    good = make_command(seq=2, fraction=0.5, key=KEY, **common)
    assert router.offer(good)
    forged = make_command(seq=3, fraction=1.0, key=SERVING_NODE_KEY, **common)
    unsigned = make_command(seq=3, fraction=1.0, **common)
    replayed = make_command(seq=1, fraction=0.0, key=KEY, **common)
    assert not router.offer(forged)
    assert not router.offer(unsigned)
    assert not router.offer(replayed)
    assert router.snapshot is not None and router.snapshot.seq == 2
    assert router.stats["rejected_signature"] == 1 and router.stats["rejected_unsigned"] == 1
    assert router.stats["rejected_stale"] == 1


def test_router_hold_keeps_current_weights() -> None:
    """A hold through the fast path freezes traffic at the current weights."""
    router = _offline_router()
    common = {"rollout_id": "r1", "baseline": "v1", "candidate": "v2", "now_ms": 0, "key": KEY}
    router.offer(make_command(seq=1, action="step", fraction=0.2, **common))
    router.offer(make_command(seq=2, action="hold", fraction=0.9, **common))
    assert router.snapshot is not None
    assert router.snapshot.phase == "held"
    assert router.snapshot.weights == {"v1": 0.8, "v2": 0.2}
