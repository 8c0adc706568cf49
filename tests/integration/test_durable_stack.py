"""`streammon dev up --durable`: a rollout's commands survive a broker crash (SIGKILL)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from helpers import wait_until

from streammon import events
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control.actuator import Actuator
from streammon.control.commands import log_key, make_command, route_key
from streammon.control.keys import dev_keyring
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import DevStack
from streammon.events import Action
from tests.helpers import DECIDER_KEY, NOW_MS

pytest.importorskip("moto")


def _send(producer: Producer, topic: str, rid: str, seq: int, action: Action,
          fraction: float) -> None:
    cmd = make_command(rollout_id=rid, seq=seq, action=action, baseline="v1", candidate="v2",
                       fraction=fraction, now_ms=NOW_MS + seq, key=DECIDER_KEY)
    producer.produce(topic, key=rid, value=events.encode(cmd))
    assert producer.flush(15) == 0


def _control_commands(bootstrap: str, topic: str) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "durable-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seqs: list[int] = []
    try:
        wait_until(lambda: _poll_into(consumer, seqs) >= 3, 20.0)
    finally:
        consumer.close()
    return seqs


def _poll_into(consumer: Consumer, seqs: list[int]) -> int:
    msg = consumer.poll(0.2)
    if msg is not None and msg.error() is None:
        seqs.append(events.decode(events.Command, msg.value()).seq)
    return len(seqs)


def test_commands_survive_a_broker_sigkill_and_the_rollback_lands(tmp_path: Path) -> None:
    """Start and step before a broker SIGKILL, the rollback after: the actuator (same
    consumer group) applies all three exactly once, and the control topic still holds
    every command after the restart (an in-memory broker would have lost them)."""
    stack = DevStack(data_dir=tmp_path, durable=True)
    with stack as info:
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True),
            redis=RedisSettings(url=info.redis_url), topics=TopicNames(prefix="durable."),
            app_id="durable", data_dir=str(tmp_path), keys=dev_keyring())
        topic, rid = settings.topics.control, "r-durable"
        admin = AdminClient({"bootstrap.servers": info.kafka_bootstrap})
        for future in admin.create_topics([NewTopic(topic, 1)]).values():
            future.result(15)
        client = redis.Redis.from_url(info.redis_url)
        Registry(client).pin(Checkpoint(version="v1", weights_uri="s3://m/v1",
                                        content_hash="sha256:" + "f" * 64))
        actuator = Actuator(settings=settings, client=client)
        stop = threading.Event()
        thread = threading.Thread(target=actuator.run, args=(stop,),
                                  kwargs={"group_id": "durable-actuator"})
        thread.start()
        producer = Producer({"bootstrap.servers": info.kafka_bootstrap})
        try:
            _send(producer, topic, rid, 1, "start", 0.1)
            _send(producer, topic, rid, 2, "step", 0.2)
            assert wait_until(lambda: actuator.stats["applied"] == 2, 30.0)
            stack.restart_broker()
            _send(producer, topic, rid, 3, "rollback", 0.0)
            assert wait_until(lambda: b'"rolled_back"' in (client.get(route_key(rid)) or b""),
                              60.0)
        finally:
            stop.set()
            thread.join(20)
        assert actuator.stats["applied"] == 3  # a redelivered command is a duplicate
        assert client.llen(log_key(rid)) == 3
        assert _control_commands(info.kafka_bootstrap, topic) == [1, 2, 3]
        client.close()
