"""The serving-side publisher: predictions and outcomes to Kafka, never in the way.

``Publisher`` validates each event and groups it by the murmur2 partition of its
``unit_id`` when it has one, else its ``request_id`` (:func:`streammon.events.partition_key`;
the partitioner Java clients use, so a unit's predictions and outcomes land on one
partition whatever language published them; an outcome must carry its prediction's
``unit_id``). Events of one
topic and partition travel together in a batch envelope (``{"v":1,"events":[...]}``,
see :mod:`streammon.envelope`), sent when it holds ``batch_max_events`` events or
``batch_linger_ms`` after its first event, whichever comes first. ``batch_max_events=1``
sends one plain event per message, keyed by request id. It never blocks and never
raises on the serving path: an invalid event, a full queue or a failed delivery is
counted in :attr:`Publisher.stats` (``strict=True`` raises instead, for tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from streammon import events
from streammon.config.settings import Settings
from streammon.envelope import encode_batch
from streammon.errors import EventError
from streammon.kafka.partitioner import partition_for

log = logging.getLogger(__name__)


@dataclass
class PublisherStats:
    """What happened to every event handed to the publisher, counted in events.

    ``queued`` counts events handed to librdkafka; events lingering in a batch are not in it.
    """

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped_queue_full: int = 0
    invalid: int = 0
    batches: int = 0


@dataclass
class _Pending:
    """Encoded events waiting for one (topic, partition), oldest first."""

    first_key: bytes
    started_s: float
    payloads: list[bytes]
    size_bytes: int = 0


class Publisher:
    """Publish predictions and outcomes; see the module docstring for the guarantees."""

    def __init__(self, *, settings: Settings, max_queue_messages: int = 100_000,
                 linger_ms: int = 5, batch_max_events: int = 500, batch_linger_ms: int = 20,
                 batch_max_bytes: int = 512_000, strict: bool = False,
                 producer_options: dict[str, Any] | None = None,
                 on_delivery: Callable[[str, list[bytes], bool], None] | None = None) -> None:
        """Create the producer; ``on_delivery`` reports what the broker accepted.

        ``on_delivery(topic, encoded_events, acknowledged)`` is called once per Kafka
        message from librdkafka's delivery report (inside :meth:`flush` or a poll), for
        callers that must know which events the broker accepted (the chaos test's truth).
        """
        from confluent_kafka import Producer

        conf = settings.kafka.to_librdkafka(**{
            "queue.buffering.max.messages": max_queue_messages, "linger.ms": linger_ms,
            "partitioner": "murmur2_random", "acks": "all", **(producer_options or {})})
        self._producer = Producer(conf)
        self._topics = settings.topics
        self._strict = strict
        self._on_delivery = on_delivery
        self._batch_max, self._batch_bytes = batch_max_events, batch_max_bytes
        self._linger_s = batch_linger_ms / 1000
        self._lock = threading.Lock()  # batches and produce order; never held in poll()
        self._stats_lock = threading.Lock()  # counters only (delivery callbacks take it)
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._partitions: dict[str, int] = {}
        self.stats = PublisherStats()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._linger_loop, daemon=True,
                                         name="streammon-publisher-linger")
        if batch_max_events > 1:
            self._flusher.start()

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
        key = str(fields.get("unit_id") or fields["request_id"]).encode()
        partitions = self._partition_count(topic) if self._batch_max > 1 else 0
        if not partitions:
            with self._lock:
                sent = self._produce(topic, None, key, payload, [payload])
            self._producer.poll(0)
            return sent
        with self._lock:
            self._add(topic, partition_for(key, partitions), key, payload)
        self._producer.poll(0)
        return True

    def _add(self, topic: str, partition: int, key: bytes, payload: bytes) -> None:
        pending = self._pending.get((topic, partition))
        if pending is None:
            pending = self._pending[(topic, partition)] = _Pending(key, time.monotonic(), [])
        pending.payloads.append(payload)
        pending.size_bytes += len(payload) + 1
        if len(pending.payloads) >= self._batch_max or pending.size_bytes >= self._batch_bytes:
            self._send((topic, partition))

    def _send(self, where: tuple[str, int]) -> None:
        pending = self._pending.pop(where)
        n = len(pending.payloads)
        value = pending.payloads[0] if n == 1 else encode_batch(pending.payloads)
        if self._produce(where[0], where[1], pending.first_key, value, pending.payloads):
            self._count("batches")

    def _produce(self, topic: str, partition: int | None, key: bytes, value: bytes,
                 payloads: list[bytes]) -> bool:
        n = len(payloads)
        hook = self._on_delivery

        def on_delivery(err: Any, _msg: Any) -> None:
            self._count("failed" if err is not None else "delivered", n)
            if hook is not None:
                hook(topic, payloads, err is None)

        try:
            self._producer.produce(topic, key=key, value=value, on_delivery=on_delivery,
                                   partition=-1 if partition is None else partition)
        except BufferError:
            self._count("dropped_queue_full", n)
            return False
        self._count("queued", n)
        return True

    def _partition_count(self, topic: str) -> int:
        count = self._partitions.get(topic)
        if count is None:
            try:
                meta = self._producer.list_topics(topic, timeout=5.0).topics[topic]
                count = len(meta.partitions) if meta.error is None else 0
            except Exception:  # any metadata failure: send unbatched
                log.warning("no metadata for %s; sending events one by one", topic)
                count = 0
            self._partitions[topic] = count
        return count

    def send_due(self, *, all_batches: bool = False) -> int:
        """Send the batches older than the linger time (or all); return how many."""
        cutoff = time.monotonic() - self._linger_s
        with self._lock:
            due = [w for w, p in self._pending.items() if all_batches or p.started_s <= cutoff]
            for where in due:
                self._send(where)
        self._producer.poll(0)
        return len(due)

    def _linger_loop(self) -> None:
        while not self._stop.wait(self._linger_s / 2):
            self.send_due()

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def flush(self, timeout_s: float = 10.0) -> int:
        """Send every batch and wait for delivery; return how many messages are still queued."""
        self.send_due(all_batches=True)
        remaining: int = self._producer.flush(timeout_s)
        return remaining

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the linger thread and flush what is queued (up to ``timeout_s``)."""
        self._stop.set()
        if self._flusher.is_alive():
            self._flusher.join(timeout_s)
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
