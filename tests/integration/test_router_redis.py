"""Integration tests for the router's push refresh and fail-static cache on real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from helpers import PrivateRedis, wait_until
from redis.backoff import NoBackoff
from redis.retry import Retry

from streammon.config.settings import Settings
from streammon.control.actuator import Actuator
from streammon.control.commands import make_command
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import free_port
from streammon.events import Action, Command
from streammon.sdk.router import Router
from tests.helpers import DECIDER_KEY, DEV_KEYS, NOW_MS

KEY = DECIDER_KEY
UNITS = [f"user-{i}" for i in range(2000)]


def _cmd(rollout_id: str, seq: int, fraction: float, action: Action | None = None) -> Command:
    return make_command(
        rollout_id=rollout_id,
        seq=seq,
        action=action or ("start" if seq == 1 else "step"),
        baseline="v1",
        candidate="v2",
        fraction=fraction,
        now_ms=NOW_MS + seq,
        key=KEY,
    )


def _pin_v1(client: redis.Redis) -> None:
    Registry(client).pin(
        Checkpoint(version="v1", weights_uri="s3://m/v1", content_hash="sha256:" + "e" * 64)
    )


def _fail_fast_client(port: int) -> redis.Redis:
    """A client that reports a dead server at once instead of retrying with back-off."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


def _canary_share(router: Router) -> float:
    return sum(router.route(u).arm == "canary" for u in UNITS) / len(UNITS)


def test_router_picks_up_a_change_within_a_second_by_push(
    settings: Settings, redis_client: redis.Redis, unique: str
) -> None:
    """With polling every 30 s, a published change still reaches the router in under 1 s."""
    rid = f"r-{unique}"
    Registry(redis_client).pin(
        Checkpoint(version="v1", weights_uri="s3://m/v1", content_hash="sha256:" + "e" * 64)
    )
    actuator = Actuator(settings=settings, client=redis_client)
    actuator.apply(_cmd(rid, 1, 0.1))
    with Router(
        keys=DEV_KEYS, client=redis_client, rollout_id=rid, default_version="v1", refresh_s=30.0
    ) as router:
        assert router.wait_for_seq(1, timeout_s=2.0)
        time.sleep(0.2)  # the thread is now listening, not polling
        started = time.monotonic()
        assert actuator.apply(_cmd(rid, 2, 0.0, action="rollback")) == "applied"
        assert router.wait_for_seq(2, timeout_s=1.0)
        elapsed_s = time.monotonic() - started
    assert elapsed_s < 1.0
    assert router.snapshot is not None and router.snapshot.phase == "rolled_back"
    assert {router.route(u).version for u in UNITS} == {"v1"}
    assert router.stats["notifications"] >= 1


def test_router_ignores_changes_of_other_rollouts(
    settings: Settings, redis_client: redis.Redis, unique: str
) -> None:
    """A change to another rollout does not replace this router's weights."""
    actuator = Actuator(settings=settings, client=redis_client)
    _pin_v1(redis_client)
    actuator.apply(_cmd(f"mine-{unique}", 1, 0.5))
    with Router(keys=DEV_KEYS, client=redis_client, rollout_id=f"mine-{unique}",
                default_version="v1") as router:
        assert router.wait_for_seq(1, timeout_s=2.0)
        actuator.apply(_cmd(f"other-{unique}", 1, 1.0))
        assert not router.wait_for_seq(2, timeout_s=0.3)
    assert router.snapshot is not None and router.snapshot.rollout_id == f"mine-{unique}"


def test_router_with_no_weights_ever_routes_to_default_baseline() -> None:
    """A router whose Redis is unreachable from the start sends everyone to the default."""
    dead = _fail_fast_client(free_port())
    with Router(keys=DEV_KEYS, client=dead, rollout_id="r", default_version="v-pinned",
                refresh_s=0.05) as router:
        assert wait_until(lambda: router.stats["refresh_errors"] >= 2)
        got = {router.route(u) for u in UNITS[:50]}
    assert {(a.version, a.arm, a.weights_seq) for a in got} == {("v-pinned", "baseline", None)}


def test_router_keeps_last_weights_while_redis_is_down_and_converges_after(
    settings: Settings, unique: str, tmp_path: Path
) -> None:
    """Routers serve their last weights through an outage, then take the next change."""
    server = PrivateRedis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    rid = f"r-{unique}"
    client = _fail_fast_client(server.port)
    router = Router(keys=DEV_KEYS, client=client, rollout_id=rid, default_version="v1",
                    refresh_s=0.1)
    with server, _fail_fast_client(server.port) as writer:
        _pin_v1(writer)
        Actuator(settings=settings, client=writer).apply(_cmd(rid, 1, 0.3))
        router.start()
        assert router.wait_for_seq(1, timeout_s=2.0)
        before = [router.route(u) for u in UNITS]
    try:
        assert wait_until(lambda: router.stats["refresh_errors"] >= 3)
        assert [router.route(u) for u in UNITS] == before
        assert 0.25 < _canary_share(router) < 0.35
        with server, _fail_fast_client(server.port) as writer:
            Actuator(settings=settings, client=writer).apply(_cmd(rid, 2, 0.6))
            assert router.wait_for_seq(2, timeout_s=3.0)
        assert 0.55 < _canary_share(router) < 0.65
    finally:
        router.close()
        client.close()
