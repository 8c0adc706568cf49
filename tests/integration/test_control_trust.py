"""What someone who can write Redis cannot do to the control plane, and races that must end
rolled back, against the real actuator and Redis."""

from __future__ import annotations

import msgspec
import pytest
import redis

from streammon.config.settings import Settings
from streammon.control.actuator import QUARANTINE_KEY, Actuator
from streammon.control.commands import (
    RouteState,
    log_key,
    make_command,
    route_key,
    route_state_for,
)
from streammon.control.registry import Checkpoint, Registry
from streammon.events import Action, Command
from streammon.sdk.router import Router
from tests.helpers import DECIDER_KEY, DEV_KEYS, NOW_MS, OPERATOR_KEY

_STATE = msgspec.json.Decoder(RouteState)


def _cmd(rid: str, seq: int, action: Action, fraction: float = 0.2, *,
         key: object = DECIDER_KEY, epoch: str = "ep") -> Command:
    return make_command(rollout_id=rid, seq=seq, action=action, baseline="v1",
                        candidate="v2", fraction=fraction, now_ms=NOW_MS + seq,
                        key=key, epoch=epoch)  # type: ignore[arg-type]


@pytest.fixture
def actuator(settings: Settings, redis_client: redis.Redis) -> Actuator:
    Registry(redis_client).pin(Checkpoint(version="v1", weights_uri="s3://m/v1",
                                          content_hash="sha256:" + "e" * 64))
    return Actuator(settings=settings, client=redis_client)


def _state(client: redis.Redis, rid: str) -> RouteState:
    return _STATE.decode(client.get(route_key(rid)) or b"")


def test_forged_high_seq_route_in_redis_does_not_block_a_later_rollback(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A promote at seq 2**53 written straight into Redis is ignored by routers, and the
    decider's next rollback overwrites it from the last authentic state."""
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.1)) == "applied"
    forged = msgspec.structs.replace(route_state_for(_cmd(rid, 2, "promote", 1.0)),
                                     seq=2**53, phase="promoted")
    redis_client.set(route_key(rid), msgspec.json.encode(forged))
    router = Router(keys=DEV_KEYS, client=redis_client, rollout_id=rid, default_version="v1")
    router.load()
    assert router.snapshot is None and router.stats["rejected_state"] == 1
    assert actuator.apply(_cmd(rid, 2, "rollback", 0.0)) == "applied"
    state = _state(redis_client, rid)
    assert (state.seq, state.phase, state.weights) == (2, "rolled_back", {"v1": 1.0})
    assert redis_client.hget(QUARANTINE_KEY, rid) is not None
    assert router.load() and router.snapshot is not None
    assert router.snapshot.phase == "rolled_back"


@pytest.mark.parametrize("poison", ["not json {", "hash", "list"])
def test_a_poison_value_is_quarantined_and_other_rollouts_go_on(
    actuator: Actuator, redis_client: redis.Redis, unique: str, poison: str
) -> None:
    """Undecodable JSON or a key of the wrong type for one rollout is quarantined with a
    reason; another rollout's command applies at once, and a rollback repairs the first."""
    bad, good = f"bad-{unique}", f"good-{unique}"
    assert actuator.apply(_cmd(bad, 1, "start", 0.3)) == "applied"
    redis_client.delete(route_key(bad))
    if poison == "hash":
        redis_client.hset(route_key(bad), "seq", "99")
    elif poison == "list":
        redis_client.rpush(route_key(bad), "x")
    else:
        redis_client.set(route_key(bad), poison)
    assert actuator.apply(_cmd(good, 1, "start", 0.1)) == "applied"
    assert actuator.apply(_cmd(bad, 2, "rollback", 0.0)) == "applied"
    assert _state(redis_client, bad).phase == "rolled_back"
    reason = redis_client.hget(QUARANTINE_KEY, bad) or b""
    assert reason and actuator.stats["quarantined"] >= 1


def test_operator_promote_and_decider_rollback_racing_end_rolled_back(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """An operator's promote wins seq 2 first; the decider's rollback for seq 2 still
    applies (seq 3), and the route ends on the baseline."""
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.1)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "promote", 1.0, key=OPERATOR_KEY)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback", 0.0)) == "applied"
    state = _state(redis_client, rid)
    assert (state.seq, state.phase, state.issued_by) == (3, "rolled_back", "decider")


def test_decider_rollback_then_late_operator_step_ends_rolled_back(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """A step or resume arriving after the rollback is refused: the rollback stands."""
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.1)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "rollback", 0.0)) == "applied"
    assert actuator.apply(_cmd(rid, 3, "step", 0.5, key=OPERATOR_KEY)) == "rejected"
    assert actuator.apply(_cmd(rid, 3, "resume", key=OPERATOR_KEY)) == "rejected"
    assert _state(redis_client, rid).phase == "rolled_back"


def test_rollout_ids_ending_in_log_do_not_collide(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """Rollout ``x:log`` has its own route key, never rollout ``x``'s log."""
    rid = f"x-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.1)) == "applied"
    assert actuator.apply(_cmd(f"{rid}:log", 1, "start", 0.4)) == "applied"
    assert actuator.apply(_cmd(rid, 2, "step", 0.2)) == "applied"
    assert redis_client.llen(log_key(rid)) == 2 and redis_client.llen(log_key(f"{rid}:log")) == 1
    assert _state(redis_client, f"{rid}:log").fraction == pytest.approx(0.4)


def test_route_state_and_log_expire(
    actuator: Actuator, redis_client: redis.Redis, unique: str
) -> None:
    """Route state, log and seen-set carry a TTL (retention), so dead rollouts go away."""
    rid = f"r-{unique}"
    assert actuator.apply(_cmd(rid, 1, "start", 0.1)) == "applied"
    for key in (route_key(rid), log_key(rid)):
        assert 0 < redis_client.ttl(key) <= 30 * 24 * 3600


@pytest.mark.parametrize("target", ["directory", "dev_zero", "outside_roots", "too_big"])
def test_unreadable_baselines_never_crash_or_hang_the_actuator(
    settings: Settings, redis_client: redis.Redis, unique: str, tmp_path: object,
    target: str,
) -> None:
    """A baseline whose weights are a directory, /dev/zero, outside the weights roots or
    over the size bound is refused at start and flagged (but routed) at rollback, and the
    actuator keeps serving."""
    from pathlib import Path

    root = Path(str(tmp_path)) / "models"
    root.mkdir()
    good = root / "good.bin"
    good.write_bytes(b"fine")
    uri = {"directory": str(root), "dev_zero": "file:///dev/zero",
           "outside_roots": str(Path(str(tmp_path)) / "elsewhere.bin"),
           "too_big": str(good)}[target]
    if target == "outside_roots":
        Path(uri).write_bytes(b"elsewhere")
    version = f"odd-{unique}"
    Registry(redis_client).pin(Checkpoint(version=version, weights_uri=uri,
                                          content_hash="sha256:" + "b" * 64))
    actuator = Actuator(settings=settings, client=redis_client, verify_weights="full",
                        weights_roots=(str(root), "/dev"))
    if target == "too_big":
        actuator._registry._max_bytes = 2
    rid = f"r-{unique}"
    start = make_command(rollout_id=rid, seq=1, action="start", baseline=version,
                         candidate="v2", fraction=0.1, now_ms=NOW_MS, key=DECIDER_KEY)
    assert actuator.apply(start) == "rejected"
    assert actuator.stats["rejected_integrity"] == 1
    Registry(redis_client).pin(Checkpoint(version="v1", weights_uri="s3://m/v1",
                                          content_hash="sha256:" + "e" * 64))
    assert actuator.apply(_cmd(rid, 1, "start", 0.1)) == "applied"
    rollback = make_command(rollout_id=rid, seq=2, action="rollback", baseline=version,
                            candidate="v2", fraction=0.0, now_ms=NOW_MS, key=DECIDER_KEY,
                            epoch="ep")
    assert actuator.apply(rollback) == "applied"
    assert actuator.stats["rollback_unverified_baseline"] == 1


def test_two_pins_racing_for_one_version_cannot_both_win(
    redis_client: redis.Redis, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pin that checked "not pinned yet" and then lost the race to another hash is
    refused (SET NX), and the history holds the winner only."""
    from streammon.control.registry import PINS_KEY
    from streammon.errors import ConfigError

    version = f"race-{unique}"
    first = Registry(redis_client)
    second = Registry(redis_client)
    real_load = second._load
    calls = {"n": 0}

    def stale_then_real(v: str) -> Checkpoint | None:
        calls["n"] += 1
        if calls["n"] == 1:  # the check-then-set window: the rival pins in between
            first.pin(Checkpoint(version=version, weights_uri="s3://m/a",
                                 content_hash="sha256:" + "1" * 64))
            return None
        return real_load(v)

    monkeypatch.setattr(second, "_load", stale_then_real)
    with pytest.raises(ConfigError, match="already pinned"):
        second.pin(Checkpoint(version=version, weights_uri="s3://m/b",
                              content_hash="sha256:" + "2" * 64))
    assert first.get(version).weights_uri == "s3://m/a"
    history = [r for r in redis_client.lrange(PINS_KEY, 0, -1) if version.encode() in r]
    assert len(history) == 1
