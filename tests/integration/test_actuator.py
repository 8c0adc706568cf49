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
from streammon.control.commands import log_key, make_command, route_key
from streammon.control.keys import Signer
from streammon.control.registry import Checkpoint, Registry, hash_file
from streammon.devstack import free_port
from streammon.events import Action
from tests.helpers import DECIDER_KEY, NOW_MS, SERVING_NODE_KEY

KEY = DECIDER_KEY


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
    key: Signer | None = KEY,
    baseline: str = "v1",
) -> events.Command:
    return make_command(
        rollout_id=rollout_id,
        seq=seq,
        action=action,
        baseline=baseline,
        candidate="v2",
        fraction=fraction,
        now_ms=NOW_MS + seq,
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
    return Actuator(settings=settings, client=redis_client)


def test_a_step_applies_only_on_the_state_its_proposer_saw(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """The actuator assigns seqs: a step proposed on an old state is a conflict, the same
    command delivered twice is a duplicate, and neither changes the route state."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.05)) == "applied"
    assert actuator.apply(_cmd(rid, 3, "step", 0.2)) == "stale"
    step = _cmd(rid, 2, "step", 0.2)
    assert actuator.apply(step) == "applied"
    before = _state(redis_client, rid)
    assert actuator.apply(step) == "stale"
    assert actuator.apply(_cmd(rid, 2, "step", 0.9)) == "stale"
    assert _state(redis_client, rid) == before
    assert b'"seq":2' in (before or b"") and b'"phase":"running"' in (before or b"")
    assert actuator.stats["conflict"] == 2 and actuator.stats["duplicate"] == 1


def test_forged_unsigned_and_replayed_are_rejected_and_counted(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """Untrusted-key, unsigned and replayed commands change nothing and bump their counters."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    before_stats = {k.decode(): int(v) for k, v in redis_client.hgetall(STATS_KEY).items()}
    start = _cmd(rid, 1, "start")
    assert actuator.apply(start) == "applied"
    state = _state(redis_client, rid)
    assert actuator.apply(_cmd(rid, 2, "promote", key=SERVING_NODE_KEY)) == "rejected"
    assert actuator.apply(_cmd(rid, 2, "promote", key=None)) == "rejected"
    assert actuator.apply(start) == "stale"
    assert _state(redis_client, rid) == state
    after = {k.decode(): int(v) for k, v in redis_client.hgetall(STATS_KEY).items()}
    assert after["rejected_signature"] - before_stats.get("rejected_signature", 0) >= 1
    assert after["rejected_unsigned"] - before_stats.get("rejected_unsigned", 0) >= 1
    assert after["duplicate"] - before_stats.get("duplicate", 0) >= 1
    assert actuator.stats["rejected_signature"] == 1 and actuator.stats["rejected_unsigned"] == 1


def test_start_needs_a_pinned_baseline_but_a_rollback_always_routes_to_it(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A start with an unpinned baseline never reaches Redis; a rollback to an unpinned
    baseline still routes there (leaving traffic on the candidate is worse) and is counted
    as ``rollback_unverified_baseline`` for the alert."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    unpinned = f"ghost-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", baseline=unpinned)) == "rejected"
    assert _state(redis_client, rid) is None and actuator.stats["rejected_unpinned"] == 1
    assert actuator.apply(_cmd(rid, 1, "start", 0.5)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=unpinned)) == "applied"
    state = msgspec.json.decode(_state(redis_client, rid) or b"{}")
    assert state["phase"] == "rolled_back" and state["weights"] == {unpinned: 1.0}
    assert actuator.stats["rollback_unverified_baseline"] == 1
    stats = redis_client.hgetall(STATS_KEY)
    assert int(stats[b"rollback_unverified_baseline"]) >= 1


def test_hold_freezes_weights_where_they_are(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A hold keeps the stored weights whatever fraction it carries; the phase becomes held."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    actuator.apply(_cmd(rid, 1, "start", 0.25))
    assert actuator.apply(_cmd(rid, 2, "hold", 0.0)) == "applied"
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
    first = Actuator(settings=settings, client=redis_client)
    with _running(first, f"g1-{unique}"):
        assert wait_until(lambda: first.stats["bad_message"] == 1)
    assert first.stats["applied"] == 3
    state, log_len = _state(redis_client, rid), redis_client.llen(log_key(rid))
    replay = Actuator(settings=settings, client=redis_client)
    with _running(replay, f"g2-{unique}"):
        assert wait_until(lambda: replay.stats["bad_message"] == 1)
    assert replay.stats["applied"] == 0
    assert replay.stats["duplicate"] + replay.stats["conflict"] == 3
    assert _state(redis_client, rid) == state
    assert redis_client.llen(log_key(rid)) == log_len


def test_redis_outage_loses_no_command(settings: Settings, unique: str, tmp_path: Path) -> None:
    """A command produced while Redis (with AOF on) is down is applied once Redis is back."""
    _create_control_topic(settings)
    server = PrivateRedis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    rid = f"r-{unique}"
    client = redis.Redis(
        host="127.0.0.1", port=server.port, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    actuator = Actuator(settings=settings, client=client)
    with _running(actuator, f"g-{unique}"):
        with server:
            _pin(client, "v1")
            _produce(settings, [events.encode(_cmd(rid, 1, "start"))], rid)
            assert wait_until(lambda: actuator.stats["applied"] == 1)
        _produce(settings, [events.encode(_cmd(rid, 2, fraction=0.3))], rid)
        assert wait_until(lambda: actuator.stats["redis_errors"] > 0)
        with server:
            assert wait_until(lambda: b'"seq":2' in (_state(client, rid) or b""))
    assert actuator.stats["applied"] == 2
    client.close()


def test_a_replay_after_redis_lost_its_data_is_refused(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    """After a Redis restart without persistence, a captured step, promote or expired start
    replayed at the actuator is refused: only a live start recreates a rollout."""
    server, rid = PrivateRedis(tmp_path), f"r-{unique}"
    clock = [NOW_MS]
    with server:
        client = redis.Redis(port=server.port, socket_timeout=1.0)
        actuator = Actuator(settings=settings, client=client, clock_ms=lambda: clock[0])
        _pin(client, "v1")
        start, step = _cmd(rid, 1, "start", 0.05), _cmd(rid, 2, "step", 0.2)
        assert actuator.apply(start) == "applied" and actuator.apply(step) == "applied"
    with server:
        _pin(client, "v1")
        promote = _cmd(rid, 3, "promote")
        assert actuator.apply(step) == "rejected" and actuator.apply(promote) == "rejected"
        assert actuator.stats["rejected_unknown"] == 2
        clock[0] = start.expires_ms
        assert actuator.apply(start) == "rejected"
        assert actuator.stats["rejected_expired"] == 1 and _state(client, rid) is None
        client.close()


def test_command_received_but_not_written_is_applied_once_after_restart(
    settings: Settings, redis_client: redis.Redis, unique: str
) -> None:
    """An actuator that stops between receiving and writing leaves the offset for its successor."""
    _create_control_topic(settings)
    rid, group = f"r-{unique}", f"g-{unique}"
    _pin(redis_client, "v1")
    _produce(settings, [events.encode(_cmd(rid, 1, "start", fraction=0.4))], rid)
    dead = redis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    stuck = Actuator(settings=settings, client=dead)
    with _running(stuck, group):
        assert wait_until(lambda: stuck.stats["redis_errors"] >= 1)
    successor = Actuator(settings=settings, client=redis_client)
    with _running(successor, group):
        assert wait_until(lambda: successor.stats["applied"] == 1)
        time.sleep(0.3)
    assert successor.stats["applied"] == 1 and stuck.stats["applied"] == 0
    assert redis_client.llen(log_key(rid)) == 1
    assert b'"seq":1' in (_state(redis_client, rid) or b"")


def test_rollback_to_tampered_weights_still_routes_there_and_raises_the_alert(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """With verify_weights, a rollback whose pinned weights file changed still routes to
    the baseline and is counted as unverified."""
    rid, version, path = f"r-{unique}", f"v-{unique}", tmp_path / "w.bin"
    path.write_bytes(b"good weights")
    Registry(redis_client).pin(
        Checkpoint(version=version, weights_uri=str(path), content_hash=hash_file(path))
    )
    actuator = Actuator(settings=settings, client=redis_client, verify_weights="full")
    assert actuator.apply(_cmd(rid, 1, "start", 0.5, baseline=version)) == "applied"
    path.write_bytes(b"overwritten")
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=version)) == "applied"
    assert b'"phase":"rolled_back"' in (_state(redis_client, rid) or b"")
    assert actuator.stats["rollback_unverified_baseline"] == 1


def _pin_file(client: redis.Redis, version: str, path: Path) -> None:
    Registry(client).pin(
        Checkpoint(version=version, weights_uri=f"file://{path}", content_hash=hash_file(path))
    )


def test_default_check_flags_a_rollback_to_overwritten_weights(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: Path
) -> None:
    """By default a rollback to a local baseline whose file changed since start is flagged;
    a start on such a file is refused."""
    rid, version, path = f"r-{unique}", f"v-{unique}", tmp_path / "w.bin"
    path.write_bytes(b"good weights")
    _pin_file(redis_client, version, path)
    actuator = Actuator(settings=settings, client=redis_client)
    assert actuator.apply(_cmd(rid, 1, "start", 0.5, baseline=version)) == "applied"
    path.write_bytes(b"tampered, and longer")
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=version)) == "applied"
    assert actuator.stats["rollback_unverified_baseline"] == 1
    assert actuator.apply(_cmd(f"{rid}-b", 1, "start", baseline=version)) == "rejected"
    assert actuator.stats["rejected_integrity"] == 1


def test_default_check_does_not_rehash_unchanged_weights_on_rollback(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start hashes the baseline once; rollbacks to the unchanged file hash nothing."""
    import streammon.control.registry as registry_module

    calls: list[object] = []
    real = registry_module.hash_file_bounded
    monkeypatch.setattr(registry_module, "hash_file_bounded",
                        lambda p, **kw: calls.append(p) or real(p, **kw))
    rid, version, path = f"r-{unique}", f"v-{unique}", tmp_path / "w.bin"
    path.write_bytes(b"good weights")
    _pin_file(redis_client, version, path)
    calls.clear()
    actuator = Actuator(settings=settings, client=redis_client)
    assert actuator.apply(_cmd(rid, 1, "start", 0.5, baseline=version)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback", baseline=version)) == "applied"
    assert actuator.apply(_cmd(f"{rid}-b", 1, "start", baseline=version)) == "applied"
    assert actuator.apply(_cmd(f"{rid}-b", 2, "rollback", baseline=version)) == "applied"
    assert len(calls) == 1  # hashed once; later checks trust the unchanged file


def test_a_rollback_racing_a_step_for_one_seq_still_applies(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """Rollback wins: proposed on the same seq as an applied step it takes the next seq."""
    _pin(redis_client, "v1")
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.05)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "step", 0.2)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback")) == "applied"
    assert actuator.apply(_cmd(rid, 3, "step", 0.4)) == "rejected"  # after a rollback: over
    state = msgspec.json.decode(_state(redis_client, rid) or b"{}")
    assert (state["seq"], state["phase"]) == (3, "rolled_back")
    assert actuator.stats["rejected_terminal"] == 1
