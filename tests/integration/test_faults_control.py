"""Fault tests of the control plane with real processes: a SIGKILLed actuator, Redis
stopped mid-rollout, and the control topic replayed from offset 0.

Each test runs its own Redis server (append-only file, so a restart keeps the data), and
overrides ``settings`` to point at it, so pausing or stopping it touches no other test.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from helpers import PrivateRedis, wait_until

from streammon import events
from streammon.config.settings import RedisSettings, Settings
from streammon.control.commands import RouteState, log_key, make_command, route_key
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import stop_process
from streammon.events import Action
from streammon.sdk.control_follower import ControlFollower
from streammon.sdk.router import Router
from streammon.sim.demo import spawn_streammon
from tests.helpers import DECIDER_KEY, DEV_KEYS, NOW_MS

UNITS = [f"user-{i}" for i in range(1000)]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(settings: Settings, private_redis: PrivateRedis) -> Settings:
    """The test's settings, with Redis replaced by this test's private server."""
    return dataclasses.replace(settings, redis=RedisSettings(url=private_redis.url))


@pytest.fixture
def client(private_redis: PrivateRedis) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(private_redis.url, socket_timeout=2.0)
    Registry(conn).pin(Checkpoint(version="v1", weights_uri="s3://m/v1",
                                  content_hash="sha256:" + "c" * 64))
    yield conn
    conn.close()


def _setup_topic(settings: Settings) -> Producer:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(settings.topics.control, 1)]).values():
        future.result(10)
    return Producer(settings.kafka.to_librdkafka(acks="all"))


def _send(producer: Producer, settings: Settings, rid: str, seq: int, action: Action,
          fraction: float) -> None:
    cmd = make_command(rollout_id=rid, seq=seq, action=action, baseline="v1", candidate="v2",
                       fraction=fraction, now_ms=NOW_MS + seq, key=DECIDER_KEY)
    producer.produce(settings.topics.control, key=rid, value=events.encode(cmd))
    assert producer.flush(10) == 0


def _state(conn: redis.Redis, rid: str) -> RouteState | None:
    try:
        raw = conn.get(route_key(rid))
    except redis.RedisError:
        return None
    return None if raw is None else msgspec.json.decode(raw, type=RouteState)


def _logged_seqs(conn: redis.Redis, rid: str) -> list[int]:
    return [msgspec.json.decode(e, type=RouteState).seq
            for e in conn.lrange(log_key(rid), 0, -1)]


def _stats(conn: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in conn.hgetall("streammon:actuator:stats").items()}


def _evalsha_blocked(conn: redis.Redis) -> bool:
    return any(c.get("cmd") == "evalsha" and "b" in c.get("flags", "")
               for c in conn.client_list())


def test_actuator_sigkilled_between_receive_and_write_applies_once_after_restart(
    settings: Settings, client: redis.Redis, spawn: Any, unique: str
) -> None:
    """A command whose write was blocked when the actuator got SIGKILL is logged exactly once."""
    rid, producer = f"r-{unique}", _setup_topic(settings)
    first = spawn("actuator")
    _send(producer, settings, rid, 1, "start", 0.05)
    assert wait_until(lambda: (s := _state(client, rid)) is not None and s.seq == 1, 20.0)
    client.execute_command("CLIENT", "PAUSE", 30_000, "WRITE")
    try:
        _send(producer, settings, rid, 2, "step", 0.3)
        assert wait_until(lambda: _evalsha_blocked(client)), "actuator never reached its write"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
    spawn("actuator")
    _send(producer, settings, f"{rid}-sentinel", 1, "start", 0.5)  # handled after seq 2
    assert wait_until(lambda: _state(client, f"{rid}-sentinel") is not None, 20.0)
    state = _state(client, rid)
    assert state is not None and state.seq == 2 and state.weights == {"v1": 0.7, "v2": 0.3}
    assert _logged_seqs(client, rid) == [1, 2]


def test_redis_stopped_mid_rollout_routers_keep_weights_and_actuator_converges(
    settings: Settings, client: redis.Redis, private_redis: PrivateRedis, spawn: Any,
    unique: str,
) -> None:
    """While Redis is down routers serve their last weights; afterwards every command lands."""
    rid, producer = f"r-{unique}", _setup_topic(settings)
    spawn("actuator")
    routers = [Router.from_settings(settings, rollout_id=rid, default_version="v1",
                                    refresh_s=0.2).start() for _ in range(3)]
    try:
        _send(producer, settings, rid, 1, "start", 0.05)
        _send(producer, settings, rid, 2, "step", 0.2)
        assert all(r.wait_for_seq(2, 20.0) for r in routers)
        before = [[r.route(u) for u in UNITS] for r in routers]
        private_redis.stop()
        _send(producer, settings, rid, 3, "step", 0.4)
        _send(producer, settings, rid, 4, "rollback", 0.0)
        assert wait_until(lambda: all(r.stats["refresh_errors"] >= 3 for r in routers))
        assert [[r.route(u) for u in UNITS] for r in routers] == before
        private_redis.start()
        assert all(r.wait_for_seq(4, 15.0) for r in routers)
        assert all({r.route(u).version for u in UNITS} == {"v1"} for r in routers)
    finally:
        for router in routers:
            router.close()
    assert _logged_seqs(client, rid) == [1, 2, 3, 4]


def test_control_topic_replayed_from_offset_zero_changes_nothing(
    settings: Settings, client: redis.Redis, spawn: Any, unique: str, tmp_path: Path
) -> None:
    """A second actuator and a follower reading the topic from offset 0 leave the weights as
    they were."""
    rid, producer = f"r-{unique}", _setup_topic(settings)
    spawn("actuator")
    for seq, action, fraction in [(1, "start", 0.05), (2, "step", 0.1), (3, "step", 0.25)]:
        _send(producer, settings, rid, seq, action, fraction)  # type: ignore[arg-type]
    assert wait_until(lambda: (s := _state(client, rid)) is not None and s.seq == 3, 20.0)
    state, log_before = client.get(route_key(rid)), _logged_seqs(client, rid)
    replay_settings = dataclasses.replace(settings, app_id=f"replay-{unique}")
    replayer = spawn_streammon(["actuator"], replay_settings, tmp_path / "replay.log")
    try:
        assert wait_until(lambda: _stats(client).get("duplicate", 0) >= 3, 20.0)
    finally:
        stop_process(replayer)
    router = Router(keys=DEV_KEYS, client=client, rollout_id=rid, default_version="v1")
    follower = ControlFollower(settings=settings, start_offset=0)
    follower.register(router)
    with follower:
        assert router.wait_for_seq(3, 10.0)
    assert client.get(route_key(rid)) == state and _logged_seqs(client, rid) == log_before
    assert _stats(client)["applied"] == 3
    assert router.snapshot is not None and router.snapshot.weights == {"v1": 0.75, "v2": 0.25}
