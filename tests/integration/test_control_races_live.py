"""Operator/decider races and an operator hold, end to end: commands travel through the
embedded broker to a real ``streammon actuator`` process, which writes Redis; routers that
hold only public keys read the result.

The races: an operator's step, hold or promote and the decider's rollback are proposed on
the same applied state (so both carry the same seq) and produced back to back, in either
order. Whichever the actuator sees first, the rollout ends rolled back and routers send
every unit to the baseline. The hold: a real worker (join + decider) ramps a healthy
rollout under simulated traffic; after the operator's hold it proposes nothing for many
windows, and after a resume it steps again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
import redis

from streammon.config.settings import Settings
from streammon.control import operator_commands
from streammon.control.commands import RouteState, log_key, make_command, route_key
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import stop_process
from streammon.events import Action, Command
from streammon.kafka.topics import apply_topics
from streammon.sdk.publisher import Publisher
from streammon.sdk.router import Router
from streammon.sim.serve import demo_spec, pin_baseline
from streammon.sim.traffic_model import Scenario, TrafficSim
from tests.helpers import DECIDER_KEY, DEV_KEYS, NOW_MS, OPERATOR_KEY, wait_until

UNITS = [f"user-{i}" for i in range(500)]


def _log(client: redis.Redis, rid: str) -> list[dict[str, Any]]:
    return [json.loads(e) for e in client.lrange(log_key(rid), 0, -1)]


def _log_len(client: redis.Redis, rid: str) -> int:
    return int(client.llen(log_key(rid)))


def _state(client: redis.Redis, rid: str) -> RouteState:
    return msgspec.json.decode(client.get(route_key(rid)) or b"", type=RouteState)


def _cmd(rid: str, seq: int, action: Action, fraction: float, key: Any,
         baseline: str = "v1") -> Command:
    return make_command(rollout_id=rid, seq=seq, action=action, baseline=baseline,
                        candidate="v2",
                        fraction=fraction, now_ms=NOW_MS + seq, key=key, epoch="ep")


RACES: list[tuple[Action, str]] = [(action, order) for action in ("step", "hold", "promote")
                                   for order in ("operator_first", "decider_first")]


def test_operator_commands_and_decider_rollbacks_racing_for_one_seq_end_rolled_back(
    settings: Settings, spawn: Any, redis_client: redis.Redis, unique: str,
) -> None:
    """An operator's step, hold or promote and the decider's rollback, both made on seq 2 and
    sent back to back through the broker in either order (six rollouts, one actuator), end
    with every rollout rolled back (the rollback applied once, by the decider) and every unit
    routed to the baseline."""
    from confluent_kafka import Producer

    from streammon import events

    apply_topics(settings.kafka, settings.topics)
    base = f"base-{unique}"  # Redis is shared by the session: a version of this test's own
    Registry(redis_client).pin(Checkpoint(version=base, weights_uri=f"s3://m/{base}",
                                          content_hash="sha256:" + "d" * 64))
    spawn("actuator")
    rids = {race: f"race-{race[0]}-{race[1]}-{unique}" for race in RACES}
    ramp: list[tuple[int, Action, float]] = [(1, "start", 0.1), (2, "step", 0.2)]
    for rid in rids.values():
        for seq, action, fraction in ramp:
            operator_commands.produce_command(settings, _cmd(rid, seq, action, fraction,
                                                             DECIDER_KEY, base))
    assert wait_until(lambda: all(_log_len(redis_client, rid) == 2 for rid in rids.values()),
                      timeout_s=30)
    producer = Producer(settings.kafka.to_librdkafka(acks="all"))
    for (operator_action, order), rid in rids.items():
        fraction = {"step": 0.4, "hold": 0.2, "promote": 1.0}[operator_action]
        operator = _cmd(rid, 3, operator_action, fraction, OPERATOR_KEY, base)
        rollback = _cmd(rid, 3, "rollback", 0.0, DECIDER_KEY, base)
        for cmd in [operator, rollback] if order == "operator_first" else [rollback, operator]:
            producer.produce(settings.topics.control, key=rid, value=events.encode(cmd))
    assert producer.flush(10) == 0  # one flush: the actuator finds each pair at once
    assert wait_until(lambda: all(_state(redis_client, rid).phase == "rolled_back"
                                  for rid in rids.values()), timeout_s=30)
    time.sleep(1.0)  # the command behind each rollback has been looked at by now
    for (operator_action, order), rid in rids.items():
        state = _state(redis_client, rid)
        assert (state.phase, state.weights, state.issued_by) == (
            "rolled_back", {base: 1.0}, "decider"), (operator_action, order)
        log = _log(redis_client, rid)
        assert [e["action"] for e in log].count("rollback") == 1
        assert len({e["seq"] for e in log}) == len(log)
        if order == "operator_first":  # the operator won seq 3; the rollback applied at 4
            assert [(e["seq"], e["action"]) for e in log[2:]] == [(3, operator_action),
                                                                   (4, "rollback")]
        else:  # the rollback took seq 3; the operator's command came too late: refused
            assert [(e["seq"], e["action"]) for e in log[2:]] == [(3, "rollback")]
        router = Router(keys=DEV_KEYS, client=redis_client, rollout_id=rid,
                        default_version="v2")
        assert router.load()
        assert {router.route(u).version for u in UNITS} == {base}


def _serve(router: Router, publisher: Publisher, sim: TrafficSim, candidate: str, t0: float,
           until_s: float) -> None:
    """Serve simulated traffic through ``router`` until ``until_s`` after ``t0``."""
    last = time.monotonic()
    while (now := time.monotonic()) - t0 < until_s:
        wall_s = time.time()
        for _ in range(sim.arrivals(now - last)):
            unit = f"user-{int(sim.rng.integers(1 << 40))}"
            a = router.route(unit)
            publisher.prediction(**sim.request(unit_id=unit, version=a.version, arm=a.arm,
                                               candidate=candidate, weights_seq=a.weights_seq,
                                               now_s=wall_s, elapsed_s=now - t0))
        for outcome in sim.due_outcomes(wall_s):
            publisher.outcome(**outcome)
        last = now
        time.sleep(0.01)


def test_the_decider_honours_an_operator_hold_and_steps_again_after_resume(
    settings: Settings, spawn: Any, redis_client: redis.Redis, unique: str, tmp_path: Path,
) -> None:
    """A real decider ramping a healthy rollout proposes no step or promote for the 12 s
    (12 windows) that an operator's hold lasts, and steps again once the operator resumes.

    The resume is sent while the actuator is down, so the decider reads it on the control
    topic before Redis shows it (the order a busy CI host once produced by chance, which
    left the rollout held for the decider forever): it must still step once the actuator
    is back and applies the resume."""
    apply_topics(settings.kafka, settings.topics)
    spawn("worker", "--window-ms", "1000", "--ttl-ms", "30000")
    actuator = spawn("actuator")
    spec = msgspec.structs.replace(
        demo_spec(f"hold-{unique}", window_ms=1000, grace_ms=800, alpha=0.01),
        step_windows=2, min_samples_per_stage=100)
    pin_baseline(redis_client, tmp_path, spec.baseline)
    operator_commands.start_rollout(settings, spec, client=redis_client)
    rid = spec.rollout_id
    sim = TrafficSim(Scenario(regression_at_s=None, rate_per_s=250.0), rollout_id=rid, seed=3)
    with Router.from_settings(settings, rollout_id=rid, default_version=spec.baseline,
                              refresh_s=0.2) as router, \
            Publisher(settings=settings, batch_linger_ms=100) as publisher:
        assert router.wait_for_seq(1, timeout_s=30)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90 and "step" not in [e["action"] for e in
                                                             _log(redis_client, rid)]:
            _serve(router, publisher, sim, spec.candidate, t0, time.monotonic() - t0 + 1.0)
        assert "step" in [e["action"] for e in _log(redis_client, rid)], "the decider never stepped"
        operator_commands.send_manual(settings, rid, "hold", client=redis_client,
                                      reason="operator looks at a dashboard")
        held = _state(redis_client, rid)
        assert held.phase == "held"
        _serve(router, publisher, sim, spec.candidate, t0, time.monotonic() - t0 + 12.0)
        after_hold = _log(redis_client, rid)[held.seq:]
        assert after_hold == [], f"the decider stepped over the hold: {after_hold}"
        assert _state(redis_client, rid).weights == held.weights
        stop_process(actuator)  # the decider now reads the resume before Redis shows it
        operator_commands.send_manual(settings, rid, "resume", client=redis_client,
                                      confirm_timeout_s=None)
        _serve(router, publisher, sim, spec.candidate, t0, time.monotonic() - t0 + 3.0)
        assert _state(redis_client, rid).phase == "held"
        spawn("actuator")
        assert wait_until(lambda: _state(redis_client, rid).phase == "running", timeout_s=30)
        resumed = _state(redis_client, rid).seq
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_log(redis_client, rid)) <= resumed:
            _serve(router, publisher, sim, spec.candidate, t0, time.monotonic() - t0 + 1.0)
        later = _log(redis_client, rid)[resumed:]
        assert later and later[0]["issued_by"] == "decider" \
            and later[0]["action"] in ("step", "promote")


def test_the_decider_finds_a_rollouts_start_on_the_control_topic(
    settings: Settings, unique: str,
) -> None:
    """find_start (the decider's recovery when its table lost a rollout) returns the signed
    start among other rollouts' commands, and None for a rollout that never started."""
    from streammon.app.decide_agent import find_start

    apply_topics(settings.kafka, settings.topics)
    rid, other = f"found-{unique}", f"other-{unique}"
    for cmd in (_cmd(other, 1, "start", 0.1, DECIDER_KEY), _cmd(rid, 1, "start", 0.1,
                                                                 OPERATOR_KEY),
                _cmd(rid, 2, "step", 0.2, DECIDER_KEY)):
        operator_commands.produce_command(settings, cmd)
    found = find_start(settings, rid)
    assert found is not None and (found.rollout_id, found.action, found.issued_by) == (
        rid, "start", "operator")
    started = time.monotonic()
    assert find_start(settings, f"never-{unique}", quiet_s=1.0) is None
    assert time.monotonic() - started < 15
