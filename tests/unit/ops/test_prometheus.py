"""Prometheus collectors: join, lag and decider state of the worker; actuator counters."""

from __future__ import annotations

import urllib.request
from collections import Counter
from types import SimpleNamespace
from typing import Any, cast

import msgspec
from helpers import outcome, pred

from streammon.app import AppParts
from streammon.control import commands
from streammon.decide import progress
from streammon.devstack import free_port
from streammon.events import MetricSpecWire, RolloutSpec
from streammon.join.state import JoinConfig, JoinState
from streammon.ops.prometheus import actuator_metrics, start_metrics_server, worker_registry
from tests.helpers import DECIDER_KEY

TP = msgspec.defstruct("TP", [("topic", str), ("partition", int)], frozen=True)
KEY = DECIDER_KEY
SPEC = RolloutSpec(rollout_id="r1", baseline="v1", candidate="v2",
                   metrics=[MetricSpecWire(name="label", kind="binary",
                                           bad_direction="decrease")])


def joined_state() -> JoinState:
    """Three predictions, two joined outcomes, one duplicate outcome, one orphan."""
    state = JoinState(config=JoinConfig(window_ms=1000, ttl_ms=10_000))
    for i in range(3):
        state.add_prediction(pred(f"q{i}", ts_ms=1_000 + i))
    state.add_outcome(outcome("q0"))
    state.add_outcome(outcome("q1"))
    state.add_outcome(outcome("q1"))
    state.add_outcome(outcome("orphan"))
    return state


def rolled_back_table() -> dict[bytes, bytes]:
    start = commands.make_command(rollout_id="r1", seq=1, action="start", baseline="v1",
                                 candidate="v2", fraction=0.1, now_ms=0, spec=SPEC)
    state = progress.start_state(start)
    state = progress.apply_command(state, commands.make_command(
        rollout_id="r1", seq=2, action="rollback", baseline="v1", candidate="v2",
        fraction=0.0, now_ms=1))
    return {b"r1": msgspec.json.encode(state)}


def fake_app(*, decide: bool = True) -> AppParts:
    """The parts create_app returns, with stand-in agents and Faust's monitor."""
    join = SimpleNamespace(counters=Counter(messages=5, dead_lettered=2),
                           joins={3: SimpleNamespace(state=joined_state())})
    decider = SimpleNamespace(rollouts_table=rolled_back_table(),
                             counters=Counter(diagnoses=4, command_rollback=1))
    monitor = SimpleNamespace(tp_end_offsets={TP("p", 3): 120, TP("o", 3): 50},
                              tp_committed_offsets={TP("p", 3): 100},
                              tp_read_offsets={TP("o", 3): 44})
    return AppParts(app=SimpleNamespace(monitor=monitor), join=cast(Any, join),
                    decide=cast(Any, decider) if decide else None)


def test_worker_collector_reads_join_counters_and_pending_size() -> None:
    """Consumed, dead-lettered, joined, duplicate counts and the pending size are exposed
    from the agent's and the partition state's own counters."""
    reg = worker_registry(fake_app())
    assert reg.get_sample_value("streammon_join_events_consumed_total") == 7
    assert reg.get_sample_value("streammon_join_dead_lettered_total") == 2
    assert reg.get_sample_value("streammon_join_agent_total", {"kind": "messages"}) == 5
    kind = {"partition": "3"}
    assert reg.get_sample_value("streammon_join_events_total", {**kind, "kind": "joined"}) == 2
    assert reg.get_sample_value("streammon_join_events_total",
                                {**kind, "kind": "duplicate_outcomes"}) == 1
    assert reg.get_sample_value("streammon_join_events_total",
                                {**kind, "kind": "predictions"}) == 3
    # q2 waits for its outcome, the orphan for its prediction, q0/q1 are kept as joined ids
    assert reg.get_sample_value("streammon_join_pending", kind) == 4


def test_worker_collector_computes_lag_from_committed_or_read_offsets() -> None:
    """Lag is end offset minus committed offset, or minus (read offset + 1) before a commit."""
    reg = worker_registry(fake_app())
    assert reg.get_sample_value("streammon_consumer_lag", {"topic": "p", "partition": "3"}) == 20
    assert reg.get_sample_value("streammon_consumer_lag", {"topic": "o", "partition": "3"}) == 5


def test_worker_collector_shows_the_deciders_verdict() -> None:
    """A rolled-back rollout in the decider's table shows phase rolled_back and 0% canary."""
    reg = worker_registry(fake_app())
    phase = {"rollout_id": "r1"}
    assert reg.get_sample_value("streammon_rollout_phase", {**phase, "phase": "rolled_back"}) == 1
    assert reg.get_sample_value("streammon_rollout_phase", {**phase, "phase": "running"}) == 0
    assert reg.get_sample_value("streammon_rollout_canary_fraction", phase) == 0.0
    assert reg.get_sample_value("streammon_decider_events_total",
                                {"kind": "command_rollback"}) == 1


def test_worker_collector_without_agents_still_serves_lag() -> None:
    """An app without the decider (decide=False) yields the join and lag metrics only."""
    reg = worker_registry(fake_app(decide=False))
    assert reg.get_sample_value("streammon_join_events_consumed_total") == 7
    assert reg.get_sample_value("streammon_rollout_phase",
                                {"rollout_id": "r1", "phase": "rolled_back"}) is None


def test_actuator_metrics_count_results_and_the_applied_rollback() -> None:
    """The stats hash becomes commands by result; the route log counts applied actions."""
    cmds = [commands.make_command(rollout_id="r1", seq=s, action=a, baseline="v1",
                                 candidate="v2", fraction=f, now_ms=s)
            for s, a, f in ((1, "start", 0.1), (2, "step", 0.2), (3, "rollback", 0.0))]
    log = [commands.route_state_for(c) for c in cmds]
    families = actuator_metrics({b"applied": b"3", b"rejected_signature": b"1"},
                                [(log[-1], log)])
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in families for s in fam.samples}
    assert samples[("streammon_actuator_commands_total", (("result", "applied"),))] == 3
    assert samples[("streammon_actuator_commands_total",
                    (("result", "rejected_signature"),))] == 1
    assert samples[("streammon_route_commands_total",
                    (("action", "rollback"), ("rollout_id", "r1")))] == 1
    assert samples[("streammon_route_phase",
                    (("phase", "rolled_back"), ("rollout_id", "r1")))] == 1
    assert samples[("streammon_route_canary_fraction", (("rollout_id", "r1"),))] == 0.0


def test_metrics_server_serves_the_registry_on_loopback() -> None:
    """start_metrics_server answers /metrics on 127.0.0.1 with the collector's samples."""
    port = free_port()
    server = start_metrics_server(port, worker_registry(fake_app()))
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert "streammon_join_events_consumed_total 7.0" in body
    finally:
        server.shutdown()
        server.server_close()
