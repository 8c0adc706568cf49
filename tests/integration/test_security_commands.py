"""Forged, unsigned and replayed commands sent over the real control topic are rejected and
counted, by the actuator (Redis path) and by the follower (router fast path)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import msgspec
import pytest
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from helpers import wait_until

from streammon import events
from streammon.config.settings import Settings
from streammon.control.actuator import Actuator
from streammon.control.commands import RouteState, make_command, route_key
from streammon.control.keys import Signer
from streammon.control.registry import Checkpoint, Registry
from streammon.events import Action
from streammon.sdk.control_follower import ControlFollower
from streammon.sdk.router import Router
from tests.helpers import DECIDER_KEY, DEV_KEYS, NOW_MS, SERVING_NODE_KEY

# attack -> the counter it must bump (and no other state change), at the actuator
ATTACKS: dict[str, str] = {
    "forged": "rejected_signature",
    "unsigned": "rejected_unsigned",
    "replayed": "duplicate",
}
FOLLOWER_ATTACKS = {**ATTACKS, "replayed": "rejected_stale"}


class Scenario:
    """A rollout at seq 2 (20 %), one attack, then a sentinel command on another rollout."""

    def __init__(self, settings: Settings, unique: str) -> None:
        self.settings, self.rid, self.sentinel = settings, f"r-{unique}", f"s-{unique}"
        self.baseline = f"v1-{unique}"
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        for future in admin.create_topics([NewTopic(settings.topics.control, 1)]).values():
            future.result(10)
        self.producer = Producer(settings.kafka.to_librdkafka(acks="all"))

    def command(self, rid: str, seq: int, action: Action, fraction: float,
                key: Signer | None) -> bytes:
        cmd = make_command(rollout_id=rid, seq=seq, action=action, baseline=self.baseline,
                           candidate="v2", fraction=fraction, now_ms=NOW_MS + seq, key=key)
        return events.encode(cmd)

    def play(self, attack: str) -> None:
        key = DECIDER_KEY
        first = self.command(self.rid, 1, "start", 0.05, key)
        bad = {
            "forged": self.command(self.rid, 3, "promote", 1.0, SERVING_NODE_KEY),
            "unsigned": self.command(self.rid, 3, "promote", 1.0, None),
            "replayed": first,  # the very bytes of seq 1, sent again
        }[attack]
        values = [first, self.command(self.rid, 2, "step", 0.2, key), bad,
                  self.command(self.sentinel, 1, "start", 0.5, key)]
        for value in values:
            self.producer.produce(self.settings.topics.control, key=self.rid, value=value)
        assert self.producer.flush(10) == 0


@pytest.fixture
def scenario(settings: Settings, unique: str, redis_client: redis.Redis) -> Scenario:
    made = Scenario(settings, unique)
    Registry(redis_client).pin(Checkpoint(version=made.baseline, weights_uri="s3://m/v1",
                                          content_hash="sha256:" + "d" * 64))
    return made


@pytest.fixture
def running_actuator(settings: Settings, redis_client: redis.Redis,
                     unique: str) -> Iterator[Actuator]:
    actuator = Actuator(settings=settings, client=redis_client)
    stop = threading.Event()
    thread = threading.Thread(target=actuator.run, args=(stop,), kwargs={"group_id": unique})
    thread.start()
    yield actuator
    stop.set()
    thread.join(15)


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_actuator_rejects_and_counts_attack(
    attack: str, scenario: Scenario, running_actuator: Actuator, redis_client: redis.Redis
) -> None:
    """The actuator leaves the route at seq 2 and counts the attack under its own counter."""
    scenario.play(attack)
    assert wait_until(lambda: redis_client.exists(route_key(scenario.sentinel)) == 1)
    raw = redis_client.get(route_key(scenario.rid))
    state = msgspec.json.decode(raw or b"", type=RouteState)
    assert state.seq == 2 and state.candidate_weight == pytest.approx(0.2)
    assert running_actuator.stats[ATTACKS[attack]] == 1
    assert running_actuator.stats["applied"] == 3


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_follower_rejects_and_counts_attack(
    attack: str, scenario: Scenario, settings: Settings
) -> None:
    """Routers fed by the follower stay at seq 2; the follower counts the attack once."""
    offline = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    router = Router(keys=DEV_KEYS, client=offline, rollout_id=scenario.rid, default_version="v1")
    sentinel = Router(keys=DEV_KEYS, client=offline, rollout_id=scenario.sentinel,
                      default_version="v1")
    follower = ControlFollower(settings=settings)
    follower.register(router)
    follower.register(sentinel)
    with follower:
        scenario.play(attack)
        assert sentinel.wait_for_seq(1, 15.0)
    assert router.snapshot is not None and router.snapshot.seq == 2
    assert {router.route(f"u{i}").version for i in range(200)} == {scenario.baseline, "v2"}
    assert follower.stats[FOLLOWER_ATTACKS[attack]] == 1 and follower.stats["applied"] == 3
