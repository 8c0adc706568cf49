"""The publisher SDK on the embedded broker: batches grouped by murmur2 partition."""

from __future__ import annotations

import json

from kafka_helpers import read_topic

from streammon.config.settings import Settings
from streammon.kafka.partitioner import partition_for
from streammon.kafka.topics import apply_topics, check_copartitioned
from streammon.sdk.publisher import Publisher


def prediction(i: int) -> dict[str, object]:
    unit = {"unit_id": f"u{i // 3}"} if i % 2 else {}  # odd requests name a unit
    return {"request_id": f"q{i}", "rollout_id": "r", "model_version": "m", "arm": "canary",
            "ts_ms": 1_000 + i, "latency_ms": 1.0, **unit}


def key_of(event: dict[str, str]) -> bytes:
    """Return the key an event must be partitioned by: its unit id, else its request id."""
    return (event.get("unit_id") or event["request_id"]).encode()


def test_batches_hold_only_request_ids_of_their_partition(settings: Settings) -> None:
    """Every batch message holds ≤ batch_max_events events, all hashing (by unit id when
    they have one, else request id) to its partition, keyed by its first event's key;
    every event arrives exactly once."""
    apply_topics(settings.kafka, settings.topics)
    partitions = check_copartitioned(settings.kafka, settings.topics)
    with Publisher(settings=settings, strict=True, batch_max_events=100) as pub:
        for i in range(2_000):
            pub.prediction(**prediction(i))
    assert pub.stats.delivered == 2_000 and pub.stats.batches >= 20

    def count(msgs: list[object]) -> int:
        return sum(len(json.loads(m.value())["events"]) for m in msgs)  # type: ignore[attr-defined]

    msgs = read_topic(settings, settings.topics.predictions, partitions=partitions,
                      until=lambda m: count(m) >= 2_000)
    seen = []
    for m in msgs:
        batch = json.loads(m.value())["events"]
        assert 1 <= len(batch) <= 100
        assert m.key() == key_of(batch[0])
        for event in batch:
            assert partition_for(key_of(event), partitions) == m.partition()
            seen.append(event["request_id"])
    assert sorted(seen) == sorted(f"q{i}" for i in range(2_000))


def test_batch_of_one_is_a_plain_keyed_event(settings: Settings) -> None:
    """With batch_max_events=1 every message is one plain event keyed by its unit id (else
    request id), on the partition Kafka's murmur2 partitioner gives that key."""
    apply_topics(settings.kafka, settings.topics)
    partitions = check_copartitioned(settings.kafka, settings.topics)
    with Publisher(settings=settings, strict=True, batch_max_events=1) as pub:
        for i in range(50):
            pub.prediction(**prediction(i))
    msgs = read_topic(settings, settings.topics.predictions, partitions=partitions,
                      until=lambda m: len(m) >= 50)
    assert len(msgs) == 50
    for m in msgs:
        event = json.loads(m.value())
        assert "events" not in event and m.key() == key_of(event)
        assert partition_for(m.key(), partitions) == m.partition()
