"""The serving-side publisher: predictions and outcomes to Kafka, never in the way.

``Publisher`` validates each event, keys it by ``request_id`` (with the murmur2
partitioner, the same one Java clients use, so predictions and outcomes of one request
land on the same partition whatever language published them) and hands it to
librdkafka's bounded queue. It never blocks and never raises on the serving path: an
invalid event, a full queue or a failed delivery is counted in :attr:`Publisher.stats`
(``strict=True`` raises instead, for tests and development).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import msgspec

from streammon import events
from streammon.config import Settings
from streammon.errors import EventError

log = logging.getLogger(__name__)


@dataclass
class PublisherStats:
    """What happened to every event handed to the publisher."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped_queue_full: int = 0
    invalid: int = 0


class Publisher:
    """Publish predictions and outcomes; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        settings: Settings,
        max_queue_messages: int = 100_000,
        linger_ms: int = 5,
        strict: bool = False,
        producer_options: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Producer

        conf = settings.kafka.to_librdkafka(
            **{
                "queue.buffering.max.messages": max_queue_messages,
                "linger.ms": linger_ms,
                "partitioner": "murmur2_random",
                "acks": "all",
                **(producer_options or {}),
            }
        )
        self._producer = Producer(conf)
        self._topics = settings.topics
        self._strict = strict
        self._lock = threading.Lock()
        self.stats = PublisherStats()

    def prediction(self, **fields: Any) -> bool:
        """Publish one prediction (fields of :class:`~streammon.events.Prediction`)."""
        return self._publish(events.Prediction, self._topics.predictions, fields)

    def outcome(self, **fields: Any) -> bool:
        """Publish one outcome (fields of :class:`~streammon.events.Outcome`)."""
        return self._publish(events.Outcome, self._topics.outcomes, fields)

    def _publish(self, kind: type[msgspec.Struct], topic: str, fields: dict[str, Any]) -> bool:
        try:
            payload = events.encode(_validated(kind, fields))
        except EventError:
            self._count("invalid")
            if self._strict:
                raise
            log.warning("dropped an invalid %s", kind.__name__, exc_info=True)
            return False
        try:
            self._producer.produce(topic, key=fields["request_id"], value=payload,
                                   on_delivery=self._on_delivery)
        except BufferError:
            self._count("dropped_queue_full")
            self._producer.poll(0)
            return False
        self._count("queued")
        self._producer.poll(0)
        return True

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        self._count("failed" if err is not None else "delivered")

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)

    def flush(self, timeout_s: float = 10.0) -> int:
        """Wait for queued events to be delivered; return how many are still queued."""
        remaining: int = self._producer.flush(timeout_s)
        return remaining

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (up to ``timeout_s``)."""
        self.flush(timeout_s)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _validated(kind: type[msgspec.Struct], fields: dict[str, Any]) -> msgspec.Struct:
    """Build and validate an event from keyword fields; raise EventError naming the field."""
    try:
        event = msgspec.convert(fields, kind)
    except msgspec.ValidationError as exc:
        raise EventError(f"{kind.__name__}: {exc}") from exc
    events.check_semantics(event)
    return event
