"""The router fast path: follow the control topic directly, skipping the actuator and Redis.

A :class:`ControlFollower` is one librdkafka consumer thread per process, *assigned* (no
consumer group, nothing committed) to every partition of ``settings.topics.control``,
starting at the end or at a given offset. For each command it verifies the Ed25519
signature once (public keys only),
then calls :meth:`Router.offer` on every router registered for that rollout, so many
routers share one consumer. Forged or unsigned commands never reach a router; stale
ones (a seq the routers already hold) change nothing. Both are counted.

The Redis path stays the source of truth (it survives restarts and carries pinning
checks); the fast path only makes routers switch sooner. A router fed by both takes
whichever copy of a seq arrives first and ignores the other.

Counters in :attr:`ControlFollower.stats`: ``received``, ``applied`` (at least one router
switched), ``rejected_signature`` (forged), ``rejected_unsigned``, ``rejected_stale``,
``bad_message``, ``unrouted`` (no router registered for the rollout).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter, defaultdict
from types import TracebackType

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from streammon import events
from streammon.config.settings import Settings
from streammon.control.commands import signature_counter, verify
from streammon.control.keys import Keyring
from streammon.errors import CommandError, EventError, KafkaIOError
from streammon.sdk.router import Router

log = logging.getLogger(__name__)

FAST_FETCH = {"fetch.wait.max.ms": 10, "fetch.queue.backoff.ms": 1, "fetch.min.bytes": 1}
_POLL_S = 0.05
_METADATA_TIMEOUT_S = 10.0


class ControlFollower:
    """Feed control commands straight from Kafka to in-process routers.

    ``start_offset=None`` starts at the end of each partition as it is when
    :meth:`start` returns (nothing produced after that is missed); an integer (for
    example ``0`` or :data:`confluent_kafka.OFFSET_BEGINNING`) replays from there.
    """

    def __init__(
        self, *, settings: Settings, keys: Keyring | None = None,
        start_offset: int | None = None
    ) -> None:
        self.settings = settings
        self.start_offset = start_offset
        self.stats: Counter[str] = Counter()
        self._keys = settings.keys if keys is None else keys
        self._keys.require_trust("the control follower")
        self._routers: defaultdict[str, list[Router]] = defaultdict(list)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None

    def register(self, router: Router) -> Router:
        """Feed ``router`` every authentic command of its rollout from now on; return it."""
        with self._lock:
            self._routers[router.rollout_id].append(router)
        return router

    def unregister(self, router: Router) -> None:
        """Stop feeding ``router`` (no error if it was not registered)."""
        with self._lock:
            routers = self._routers.get(router.rollout_id, [])
            if router in routers:
                routers.remove(router)

    def handle(self, value: bytes | None) -> bool:
        """Decode, verify and offer one control message; True if any router switched."""
        self.stats["received"] += 1
        try:
            cmd = events.decode(events.Command, value or b"")
        except EventError as exc:
            return self._reject("bad_message", exc)
        try:
            verify(cmd, self._keys)
        except CommandError as exc:
            return self._reject(signature_counter(cmd), exc)
        with self._lock:
            routers = list(self._routers.get(cmd.rollout_id, ()))
        if not routers:
            self.stats["unrouted"] += 1
            return False
        switched = [router.offer(cmd) for router in routers]
        self.stats["applied" if any(switched) else "rejected_stale"] += 1
        return any(switched)

    def _reject(self, counter: str, exc: Exception) -> bool:
        self.stats[counter] += 1
        log.error("follower rejected a control message (%s): %s", counter, exc)
        return False

    def start(self) -> ControlFollower:
        """Assign the consumer and start the thread; return once positions are fixed."""
        if self._thread is None:
            self._consumer = Consumer(self._config())
            self._consumer.assign(self._positions(self._consumer))
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="control-follower", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close the consumer; the routers keep their snapshots."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None

    def __enter__(self) -> ControlFollower:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _config(self) -> dict[str, object]:
        """Consumer config: a throw-away group id (never joined), low fetch latency."""
        group = f"{self.settings.app_id}-follower-{uuid.uuid4().hex[:8]}"
        overrides = {"enable.auto.commit": False, **FAST_FETCH}
        return self.settings.kafka.consumer_config(group, **overrides)

    def _positions(self, consumer: Consumer) -> list[TopicPartition]:
        """Return each control partition at ``start_offset`` or at its current end."""
        topic = self.settings.topics.control
        try:
            meta = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise KafkaIOError(f"cannot read metadata of {topic}: {exc}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaIOError(f"control topic {topic} is not available: {meta and meta.error}")
        return [self._position(consumer, topic, p) for p in sorted(meta.partitions)]

    def _position(self, consumer: Consumer, topic: str, partition: int) -> TopicPartition:
        if self.start_offset is not None:
            offset = OFFSET_BEGINNING if self.start_offset == 0 else self.start_offset
            return TopicPartition(topic, partition, offset)
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=_METADATA_TIMEOUT_S
            )
        except KafkaException as exc:
            raise KafkaIOError(f"cannot read the end of {topic}[{partition}]: {exc}") from exc
        return TopicPartition(topic, partition, high)

    def _loop(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            while not self._stop.is_set():
                msg = consumer.poll(_POLL_S)
                if msg is None:
                    continue
                if msg.error() is not None:
                    self.stats["consumer_errors"] += 1
                    log.warning("control follower: %s", msg.error())
                    continue
                self.handle(msg.value())
        finally:
            consumer.close()
            self._consumer = None
