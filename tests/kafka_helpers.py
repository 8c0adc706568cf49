"""Reading topics in integration tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from streammon.config.settings import Settings


def read_topic(settings: Settings, topic: str, *, until: Callable[[list[Any]], bool],
               timeout_s: float = 60.0, partitions: int = 1) -> list[Any]:
    """Read ``topic`` from the beginning until ``until(messages)`` holds or time runs out."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(settings.kafka.consumer_config(f"read-{uuid.uuid4().hex}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(500, 0.2) if m.error() is None]
            messages.extend(batch)
            if until(messages):
                break
    finally:
        consumer.close()
    return messages
