"""Integration tests for the actuator on the embedded broker and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from helpers import PrivateRedis, wait_until
from redis.backoff import NoBackoff
from redis.retry import Retry

from streammon import events
from streammon.config.settings import Settings
from streammon.control.actuator import STATS_KEY, Actuator
from streammon.control.commands import make_command, route_key
from streammon.control.registry import Checkpoint, Registry, hash_file
from streammon.devstack import free_port
from streammon.events import Action

KEY = b"integration-key"


def _pin(client: redis.Redis, version: str) -> None:
    Registry(client).pin(
        Checkpoint(
            version=version, weights_uri=f"s3://m/{version}", content_hash="sha256:" + "e" * 64
        )
    )


def _cmd(
    rollout_id: str,
    seq: int,
    action: Action = "step",
    fraction: float = 0.1,
    key: bytes | None = KEY,
    baseline: str = "v1",
) -> events.Command:
    return make_command(
        rollout_id=rollout_id,
        seq=seq,
        action=action,
        baseline=baseline,
        candidate="v2",
        fraction=fraction,
        now_ms=seq,
        key=key,
    )


def _create_control_topic(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    futures = admin.create_topics([NewTopic(settings.topics.control, num_partitions=1)])
    for future in futures.values():
        future.result(10)


def _produce(settings: Settings, values: list[bytes], key: str) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for value in values:
        producer.produce(settings.topics.control, key=key, value=value)
    assert producer.flush(10) == 0


@contextmanager
def _running(actuator: Actuator, group_id: str) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=actuator.run, args=(stop,), kwargs={"group_id": group_id})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive()


def _state(client: redis.Redis, rollout_id: str) -> bytes | None:
    value: bytes | None = client.get(route_key(rollout_id))
    return value


@pytest.fixture
def actuator(settings: Settings, redis_client: redis.Redis) -> Actuator:
    return Actuator(settings=settings, client=redis_client, key=KEY)


def test_newer_seq_applies_and_older_or_equal_changes_nothing(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A command applies once; an equal (rival) or older seq leaves the route state unchanged."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.05)) == "applied"
    assert actuator.apply(_cmd(rid, 3, "step", 0.2)) == "applied"
    before = _state(redis_client, rid)
    assert actuator.apply(_cmd(rid, 3, "step", 0.9)) == "stale"
    assert actuator.apply(_cmd(rid, 2, "rollback")) == "stale"
    assert _state(redis_client, rid) == before
    assert b'"seq":3' in (before or b"") and b'"phase":"running"' in (before or b"")
    assert actuator.stats["conflict"] == 1 and actuator.stats["rejected_stale"] == 1


def test_forged_unsigned_and_replayed_are_rejected_and_counted(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """Wrong-key, unsigned and old-seq commands change nothing and each bumps its counter."""
    rid = f"r-{unique}"
    before_stats = {k.decode(): int(v) for k, v in redis_client.hgetall(STATS_KEY).items()}
    assert actuator.apply(_cmd(rid, 5)) == "applied"
    state = _state(redis_client, rid)
    assert actuator.apply(_cmd(rid, 6, fraction=1.0, key=b"forger")) == "rejected"
    assert actuator.apply(_cmd(rid, 7, fraction=1.0, key=None)) == "rejected"
    assert actuator.apply(_cmd(rid, 5)) == "stale"
    assert _state(redis_client, rid) == state
    after = {k.decode(): int(v) for k, v in redis_client.hgetall(STATS_KEY).items()}
    assert after["rejected_signature"] - before_stats.get("rejected_signature", 0) >= 1
    assert after["rejected_unsigned"] - before_stats.get("rejected_unsigned", 0) >= 1
    assert after["duplicate"] - before_stats.get("duplicate", 0) >= 1
    assert actuator.stats["rejected_signature"] == 1 and actuator.stats["rejected_unsigned"] == 1


def test_rollback_to_unpinned_baseline_is_refused(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A rollback (or start) whose baseline is not pinned never reaches Redis."""
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "step", 0.5)) == "applied"
    state = _state(redis_client, rid)
    unpinned = f"ghost-{unique}"
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=unpinned)) == "rejected"
    assert actuator.apply(_cmd(rid, 3, "start", baseline=unpinned)) == "rejected"
    assert _state(redis_client, rid) == state
    assert actuator.stats["rejected_unpinned"] == 2
    _pin(redis_client, unpinned)
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=unpinned)) == "applied"
    assert b'"phase":"rolled_back"' in (_state(redis_client, rid) or b"")


def test_hold_freezes_weights_where_they_are(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A hold keeps the stored weights whatever fraction it carries; the phase becomes held."""
    rid = f"r-{unique}"
    actuator.apply(_cmd(rid, 1, "step", 0.25))
    actuator.apply(_cmd(rid, 2, "hold", 0.0))
    state = msgspec.json.decode(_state(redis_client, rid) or b"{}")
    assert state["phase"] == "held" and state["weights"] == {"v1": 0.75, "v2": 0.25}


def test_replaying_the_control_topic_changes_nothing(
    settings: Settings, redis_client: redis.Redis, unique: str
) -> None:
    """Consuming the whole topic again from offset 0 with a new group leaves Redis unchanged."""
    _create_control_topic(settings)
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    commands = [_cmd(rid, 1, "start", 0.05), _cmd(rid, 2, "step", 0.1), _cmd(rid, 3, "step", 0.2)]
    _produce(settings, [events.encode(c) for c in commands] + [b"not json"], rid)
    first = Actuator(settings=settings, client=redis_client, key=KEY)
    with _running(first, f"g1-{unique}"):
        assert wait_until(lambda: first.stats["bad_message"] == 1)
    assert first.stats["applied"] == 3
    state, log_len = _state(redis_client, rid), redis_client.llen(f"{route_key(rid)}:log")
    replay = Actuator(settings=settings, client=redis_client, key=KEY)
    with _running(replay, f"g2-{unique}"):
        assert wait_until(lambda: replay.stats["bad_message"] == 1)
    assert replay.stats["applied"] == 0 and replay.stats["duplicate"] == 1
    assert replay.stats["rejected_stale"] == 2
    assert _state(redis_client, rid) == state
    assert redis_client.llen(f"{route_key(rid)}:log") == log_len


def test_redis_outage_loses_no_command(settings: Settings, unique: str, tmp_path: Path) -> None:
    """A command produced while Redis is down is applied once Redis is back."""
    _create_control_topic(settings)
    server, rid = PrivateRedis(tmp_path), f"r-{unique}"
    client = redis.Redis(
        host="127.0.0.1", port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    actuator = Actuator(settings=settings, client=client, key=KEY)
    with _running(actuator, f"g-{unique}"):
        with server:
            _produce(settings, [events.encode(_cmd(rid, 1))], rid)
            assert wait_until(lambda: actuator.stats["applied"] == 1)
        _produce(settings, [events.encode(_cmd(rid, 2, fraction=0.3))], rid)
        assert wait_until(lambda: actuator.stats["redis_errors"] > 0)
        with server:
            assert wait_until(lambda: b'"seq":2' in (_state(client, rid) or b""))
    assert actuator.stats["applied"] == 2
    client.close()


def test_command_received_but_not_written_is_applied_once_after_restart(
    settings: Settings, redis_client: redis.Redis, unique: str
) -> None:
    """An actuator that stops between receiving and writing leaves the offset for its successor."""
    _create_control_topic(settings)
    rid, group = f"r-{unique}", f"g-{unique}"
    _produce(settings, [events.encode(_cmd(rid, 1, fraction=0.4))], rid)
    dead = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    stuck = Actuator(settings=settings, client=dead, key=KEY)
    with _running(stuck, group):
        assert wait_until(lambda: stuck.stats["redis_errors"] >= 1)
    successor = Actuator(settings=settings, client=redis_client, key=KEY)
    with _running(successor, group):
        assert wait_until(lambda: successor.stats["applied"] == 1)
        time.sleep(0.3)
    assert successor.stats["applied"] == 1 and stuck.stats["applied"] == 0
    assert redis_client.llen(f"{route_key(rid)}:log") == 1
    assert b'"seq":1' in (_state(redis_client, rid) or b"")


def test_rollback_to_tampered_weights_is_refused_when_verifying(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """With verify_weights, a rollback whose pinned weights file changed is refused."""
    rid, version, path = f"r-{unique}", f"v-{unique}", tmp_path / "w.bin"
    path.write_bytes(b"good weights")
    Registry(redis_client).pin(
        Checkpoint(version=version, weights_uri=str(path), content_hash=hash_file(path))
    )
    actuator = Actuator(settings=settings, client=redis_client, key=KEY, verify_weights="full")
    assert actuator.apply(_cmd(rid, 1, "start", 0.5, baseline=version)) == "applied"
    path.write_bytes(b"overwritten")
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=version)) == "rejected"
    assert b'"seq":1' in (_state(redis_client, rid) or b"")
    assert actuator.stats["rejected_integrity"] == 1


def _pin_file(client: redis.Redis, version: str, path: Path) -> None:
    Registry(client).pin(
        Checkpoint(version=version, weights_uri=f"file://{path}", content_hash=hash_file(path))
    )


def test_default_check_refuses_rollback_to_overwritten_weights(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """By default a rollback to a local baseline whose file changed since start is refused."""
    rid, version, path = f"r-{unique}", f"v-{unique}", tmp_path / "w.bin"
    path.write_bytes(b"good weights")
    _pin_file(redis_client, version, path)
    actuator = Actuator(settings=settings, client=redis_client, key=KEY)
    assert actuator.apply(_cmd(rid, 1, "start", 0.5, baseline=version)) == "applied"
    path.write_bytes(b"tampered, and longer")
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=version)) == "rejected"
    assert actuator.stats["rejected_integrity"] == 1
    path.write_bytes(b"good weights")
    assert actuator.apply(_cmd(rid, 3, "rollback", baseline=version)) == "applied"


def test_default_check_does_not_rehash_unchanged_weights_on_rollback(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start hashes the baseline once; rollbacks to the unchanged file hash nothing."""
    import streammon.control.registry as registry_module

    calls: list[object] = []
    real = registry_module.hash_file
    monkeypatch.setattr(registry_module, "hash_file", lambda p: calls.append(p) or real(p))
    rid, version, path = f"r-{unique}", f"v-{unique}", tmp_path / "w.bin"
    path.write_bytes(b"good weights")
    _pin_file(redis_client, version, path)
    calls.clear()
    actuator = Actuator(settings=settings, client=redis_client, key=KEY)
    assert actuator.apply(_cmd(rid, 1, "start", 0.5, baseline=version)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=version)) == "applied"
    assert actuator.apply(_cmd(rid, 3, "rollback", baseline=version)) == "applied"
    assert len(calls) == 1


def test_two_commands_racing_for_one_seq_are_a_counted_conflict(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A second, different command with an applied seq is refused and counted as a conflict."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.05)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "step", 0.2)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback")) == "stale"
    assert actuator.apply(_cmd(rid, 2, "step", 0.2)) == "stale"
    assert actuator.stats["conflict"] == 1 and actuator.stats["duplicate"] == 1
    assert b'"phase":"running"' in (_state(redis_client, rid) or b"")
