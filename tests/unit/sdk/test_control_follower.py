"""Unit tests for the control-topic follower's dispatch and counters (no broker, no Redis)."""

from __future__ import annotations

import redis

from streammon import events
from streammon.config.settings import Settings
from streammon.control.commands import make_command
from streammon.control.keys import Signer
from streammon.events import Action
from streammon.sdk.control_follower import ControlFollower
from streammon.sdk.router import Router
from tests.helpers import DECIDER_KEY, DEV_KEYS, SERVING_NODE_KEY

KEY = DECIDER_KEY


def _router(rollout_id: str) -> Router:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    return Router(client=client, rollout_id=rollout_id, default_version="v1", keys=DEV_KEYS)


def _msg(
    seq: int, fraction: float, *, rollout_id: str = "r1", key: Signer | None = KEY,
    action: Action = "step",
) -> bytes:
    cmd = make_command(rollout_id=rollout_id, seq=seq, action=action, baseline="v1",
                       candidate="v2", fraction=fraction, now_ms=seq, key=key)
    return events.encode(cmd)


def _follower() -> ControlFollower:
    return ControlFollower(settings=Settings(keys=DEV_KEYS))


def test_one_command_reaches_every_router_of_its_rollout_only() -> None:
    """A command switches all routers registered for its rollout and none of another."""
    follower = _follower()
    mine = [follower.register(_router("r1")) for _ in range(3)]
    other = follower.register(_router("r2"))
    assert follower.handle(_msg(1, 0.3))
    assert all(r.snapshot is not None and r.snapshot.seq == 1 for r in mine)
    assert other.snapshot is None
    assert follower.stats["applied"] == 1


def test_forged_command_is_counted_and_never_offered() -> None:
    """A command signed with the wrong key is counted once and leaves routers untouched."""
    follower = _follower()
    router = follower.register(_router("r1"))
    assert not follower.handle(_msg(1, 1.0, key=SERVING_NODE_KEY))
    assert router.snapshot is None and router.stats["rejected_signature"] == 0
    assert follower.stats["rejected_signature"] == 1


def test_unsigned_command_is_counted_and_never_offered() -> None:
    """A command with no signature is rejected and counted apart from forged ones."""
    follower = _follower()
    router = follower.register(_router("r1"))
    assert not follower.handle(_msg(1, 1.0, key=None))
    assert router.snapshot is None
    assert follower.stats["rejected_unsigned"] == 1 and follower.stats["rejected_signature"] == 0


def test_replayed_command_is_counted_as_stale() -> None:
    """An authentic command with a seq the routers already hold changes nothing."""
    follower = _follower()
    router = follower.register(_router("r1"))
    follower.handle(_msg(2, 0.5))
    assert not follower.handle(_msg(1, 0.0, action="rollback"))
    assert not follower.handle(_msg(2, 0.5))
    assert router.snapshot is not None and router.snapshot.weights == {"v1": 0.5, "v2": 0.5}
    assert follower.stats["rejected_stale"] == 2
    assert router.stats["rejected_stale"] == 1 and router.stats["duplicate"] == 1


def test_garbage_and_unrouted_messages_are_counted() -> None:
    """Undecodable bytes count as bad messages; commands for no router count as unrouted."""
    follower = _follower()
    follower.register(_router("r1"))
    assert not follower.handle(b"{not json")
    assert not follower.handle(None)
    assert not follower.handle(_msg(1, 0.2, rollout_id="nobody"))
    assert follower.stats["bad_message"] == 2 and follower.stats["unrouted"] == 1


def test_unregistered_router_is_no_longer_fed() -> None:
    """After unregister a router keeps its last snapshot and ignores later commands."""
    follower = _follower()
    router = follower.register(_router("r1"))
    follower.handle(_msg(1, 0.2))
    follower.unregister(router)
    follower.handle(_msg(2, 0.0, action="rollback"))
    assert router.snapshot is not None and router.snapshot.seq == 1
