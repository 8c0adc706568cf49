"""Reading topics from the beginning to their current end, without a consumer group.

``TopicReader`` assigns every partition of the given topics at their first offset and
commits nothing, so reading never disturbs the services' own consumer groups. The
report, the status view, ``rollout diagnose`` and the demo timeline all read this way.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

from streammon.config.settings import Settings
from streammon.errors import KafkaIOError

Record = tuple[str, bytes | None, bytes]
"""(topic, key, value) of one message."""


class _OncePerMessage(logging.Filter):
    """Let each distinct librdkafka message through once (numbers ignored).

    Without a broker librdkafka logs the same connection failure about 20 times a second;
    one line says it, and the caller raises :class:`KafkaIOError` with the fix.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "N", record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def quiet_kafka_logger(name: str) -> logging.Logger:
    """Return a logger for librdkafka's ``logger`` option that says each message once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _OncePerMessage) for f in logger.filters):
        logger.addFilter(_OncePerMessage())
    return logger


class TopicReader:
    """Read a set of topics from the start; :meth:`poll` returns what arrived since."""

    def __init__(self, settings: Settings, topics: Iterable[str]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        conf = settings.kafka.consumer_config(f"streammon-read-{uuid.uuid4().hex[:8]}",
                                              **{"enable.auto.commit": False,
                                                 "logger": quiet_kafka_logger(
                                                     "streammon.kafka.reader")})
        self._consumer = Consumer(conf)
        try:
            meta = self._consumer.list_topics(timeout=10)
        except Exception as exc:  # confluent raises KafkaException
            self._consumer.close()
            raise KafkaIOError(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: "
                               f"{exc}") from exc
        self._tps = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics
                     if t in meta.topics for p in meta.topics[t].partitions]
        self._consumer.assign(self._tps)

    def poll(self, timeout_s: float = 0.2, max_messages: int = 1000) -> list[Record]:
        """Return the records that arrive within ``timeout_s``."""
        out = []
        for msg in self._consumer.consume(max_messages, timeout_s):
            value = msg.value()
            if msg.error() is None and value is not None:
                out.append((msg.topic() or "", msg.key(), value))
        return out

    def caught_up(self) -> bool:
        """Return True when every assigned partition has been read to its high watermark."""
        for tp in self._consumer.position(self._tps):
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
            if high > 0 and tp.offset < high:
                return False
        return True

    def read_to_end(self, timeout_s: float = 30.0) -> list[Record]:
        """Poll until every partition is read to its end (or ``timeout_s``)."""
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = self.poll(0.2)
            out += batch
            if not batch and self.caught_up():
                break
        return out

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_topic(settings: Settings, topic: str, *, timeout_s: float = 30.0) -> list[Record]:
    """Return every record of ``topic`` up to its current end."""
    with TopicReader(settings, [topic]) as reader:
        return reader.read_to_end(timeout_s)
