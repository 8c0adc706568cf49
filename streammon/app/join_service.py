"""The join's hot path: a librdkafka batch loop run as a service of the Faust app.

Faust spends ~150 µs of asyncio work per Kafka message, so a join fed one event per
message (what kcat, Go and Node producers send) tops out at a few thousand events/s.
This service runs the join in one thread of the worker process, below Faust's streams:

* one confluent-kafka consumer (group ``<app_id>-join``, range assignment, so partition
  ``p`` of predictions and of outcomes land together) takes up to ``consume_max``
  messages per call; each message is decoded (single event or batch envelope) and its
  events are fed, per partition and topic in offset order, to the pure
  :class:`~streammon.join.state.JoinState`;
* after every consumed batch, each touched partition writes its
  :class:`~streammon.join.changelog.JoinRecord` s (state changes and the input offsets they
  cover) to the compacted topic ``<app_id>-join-records-changelog``, partition ``p``;
* **the records are the offset authority.** The service never commits input offsets.
  When a partition is assigned it reads that partition's records, rebuilds the state and
  seeks the input to the offsets the latest record holds, so input is applied exactly
  once whatever crashed when;
* a revoked partition is fenced: revocation runs inside ``consume()`` between batches,
  the producer is flushed (the partition's last records are on the broker before its
  next owner reads them) and its state is dropped before the callback returns;
* a batch that raises is never half-kept: the service drops all in-memory state,
  re-reads it from the records and seeks the input back (a retry); after
  ``max_failures`` failures in a row it stops the worker;
* every ``flush_interval_s`` it sends the cumulative summary of every changed cell to the
  cohorts topic (all cells after an assignment); rejected events go to the dead-letter
  topic with the reason in a header.

The decider stays a Faust agent in the same process.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streammon import events
from streammon.config.settings import Settings
from streammon.envelope import MAX_LEAD_MS, Reject, decode_message
from streammon.events import CellKey
from streammon.join.cells import CellState
from streammon.join.changelog import RECORD_MAX_BYTES, JoinLog, restore
from streammon.join.state import JoinConfig, JoinState

log = logging.getLogger(__name__)
BATCH_TARGET_BYTES = 4_000_000
"""Bytes of input taken per consume call (the count adapts to the message size: a batch
of 500-event envelopes holds fewer messages than one of single events), so memory does
not grow with the size of the messages."""
SIDE_LEAD_MS = 20_000
"""When one input of a partition leads the other by more than this much event time while
the other has a backlog, the leader is paused until the other catches up (to half of it):
a backlog read predictions-first would otherwise hold every prediction as pending."""
RECORD_MAX_ENTRIES = 4_000
"""A partition's records are written early, within a batch, once this many ids changed."""


@dataclass
class PartitionJoin:
    """Everything the service holds for one assigned partition."""

    state: JoinState
    log: JoinLog
    offsets: dict[str, int]
    dirty: set[CellKey] = field(default_factory=set)
    announced_wm_ms: int = 0
    """The watermark the cohorts topic has been told: every cell below it was sent before."""


def record_key(partition: int, seq: int) -> bytes:
    """Return the changelog key of record ``seq`` of ``partition`` (sorts by seq)."""
    return b"%d|%012d" % (partition, seq)


class JoinService:
    """The join's consume-apply-persist loop in a thread; see the module docstring."""

    def __init__(self, *, settings: Settings, config: JoinConfig, partitions: int,
                 app_id: str, max_lead_ms: int = MAX_LEAD_MS, consume_max: int = 5_000,
                 flush_interval_s: float = 0.5, max_failures: int = 3) -> None:
        topics = settings.topics
        self.settings, self.config, self.partitions = settings, config, partitions
        self.max_lead_ms, self.consume_max = max_lead_ms, consume_max
        self.flush_interval_s, self.max_failures = flush_interval_s, max_failures
        self.roles = {topics.predictions: "predictions", topics.outcomes: "outcomes"}
        self.topic_of = {role: topic for topic, role in self.roles.items()}
        self.cohorts_topic, self.deadletters_topic = topics.cohorts, topics.deadletters
        self.changelog_topic = f"{app_id}-join-records-changelog"
        self.group_id = f"{app_id}-join"
        self.joins: dict[int, PartitionJoin] = {}
        self.paused: set[tuple[str, int]] = set()
        self.counters: Counter[str] = Counter()
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None
        self._producer: Any = None

    # lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the changelog topic if needed and start the loop thread."""
        from confluent_kafka import Consumer, Producer

        self.ensure_changelog()
        kafka = self.settings.kafka
        self._producer = Producer(kafka.to_librdkafka(**{
            "linger.ms": 5, "queue.buffering.max.messages": 20_000,
            "queue.buffering.max.kbytes": 65_536,
            "max.in.flight.requests.per.connection": 1,
            "message.max.bytes": RECORD_MAX_BYTES + 100_000}))
        self._consumer = Consumer(kafka.consumer_config(self.group_id, **{
            "enable.auto.commit": False, "partition.assignment.strategy": "range",
            # A batch (or a restore inside the assignment callback) on a saturated machine
            # may take longer than fast_group_join's 6 s poll interval; the group must not
            # hand this worker's partitions to another while it still applies them.
            # Liveness comes from librdkafka's heartbeats (session.timeout.ms).
            "max.poll.interval.ms": 300_000,
            "fetch.max.bytes": 16_777_216, "queued.max.messages.kbytes": 16_384}))
        self._thread = threading.Thread(target=self._run, name="streammon-join", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the loop, deliver what it produced and leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def ensure_changelog(self) -> None:
        """Create the compacted records topic (one partition per input partition)."""
        from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

        admin = AdminClient(self.settings.kafka.to_librdkafka())
        existing = admin.list_topics(timeout=10).topics
        if self.changelog_topic in existing:
            return
        futures = admin.create_topics([NewTopic(
            self.changelog_topic, num_partitions=self.partitions, replication_factor=1,
            config={"cleanup.policy": "compact"})])
        for future in futures.values():
            try:
                future.result(30)
            except Exception as exc:  # created by another worker meanwhile
                if "already exists" not in str(exc).lower():
                    raise

    def _run(self) -> None:
        consumer, producer = self._consumer, self._producer
        consumer.subscribe(list(self.roles), on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_revoke)
        next_flush = time.monotonic() + self.flush_interval_s
        failures, batch_n = 0, self.consume_max
        try:
            while not self._stop.is_set():
                messages = consumer.consume(batch_n, 0.05)
                if messages:
                    size = sum(len(m.value() or b"") for m in messages) / len(messages)
                    batch_n = max(8, min(self.consume_max, int(BATCH_TARGET_BYTES / (size + 1))))
                    try:
                        self.handle(messages)
                        failures = 0
                    except Exception as exc:
                        failures += 1
                        if not self._retry(exc, failures):
                            return
                self.balance()
                now = time.monotonic()
                if now >= next_flush:
                    self.flush()
                    next_flush = now + self.flush_interval_s
                producer.poll(0)
            self.flush()
        finally:
            producer.flush(30)
            consumer.close()

    def _retry(self, exc: Exception, failures: int) -> bool:
        """Drop the half-applied state, rebuild it from the records and seek back."""
        self.counters["failed_batches"] += 1
        if failures >= self.max_failures:
            self.failed = exc
            log.critical("join: %d batches failed in a row; stopping the worker", failures,
                         exc_info=exc)
            os.kill(os.getpid(), signal.SIGTERM)
            return False
        log.error("join: a batch failed; re-reading it from the records' offsets",
                  exc_info=exc)
        from confluent_kafka import TopicPartition

        self._producer.flush(30)
        for partition in list(self.joins):
            pj = self._restore(partition)
            for role, topic in self.topic_of.items():
                self._consumer.seek(TopicPartition(topic, partition, self._start(pj, role)))
        return True

    # assignment ------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, tps: list[Any]) -> None:
        for partition in sorted({tp.partition for tp in tps}):
            self._restore(partition)
        for tp in tps:
            tp.offset = self._start(self.joins[tp.partition], self.roles[tp.topic])
        consumer.assign(tps)
        self.paused -= {(tp.topic, tp.partition) for tp in tps}
        self.counters["assignments"] += 1

    def _on_revoke(self, consumer: Any, tps: list[Any]) -> None:
        self._producer.flush(30)  # the next owner must find every record we wrote
        for tp in tps:
            self.joins.pop(tp.partition, None)
            self.paused.discard((tp.topic, tp.partition))
        self.counters["revocations"] += 1

    @staticmethod
    def _start(pj: PartitionJoin, role: str) -> int:
        from confluent_kafka import OFFSET_BEGINNING

        offset = pj.offsets.get(role)
        return int(OFFSET_BEGINNING) if offset is None else offset

    def _restore(self, partition: int) -> PartitionJoin:
        state, jlog, offsets = restore(self.read_records(partition), self.config)
        pj = self.joins[partition] = PartitionJoin(state, jlog, offsets, dirty=set(state.cells))
        log.info("partition %d: restored %d cells, %d entries, offsets %s", partition,
                 len(state.cells), len(state.pending), offsets)
        return pj

    def read_records(self, partition: int) -> list[bytes]:
        """Return the live records of ``partition`` (latest value per key, no tombstones)."""
        from confluent_kafka import Consumer, TopicPartition

        reader = Consumer(self.settings.kafka.consumer_config(
            f"{self.group_id}-restore-{uuid.uuid4().hex}", **{"enable.auto.commit": False}))
        latest: dict[bytes | None, bytes] = {}
        try:
            tp = TopicPartition(self.changelog_topic, partition)
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            if high <= low:
                return []
            reader.assign([TopicPartition(self.changelog_topic, partition, low)])
            position, deadline = low, time.monotonic() + 300
            while position < high:
                batch = reader.consume(10_000, 0.5)
                if not batch:  # compaction may leave no message at high - 1: ask for position
                    at = reader.position([TopicPartition(self.changelog_topic, partition)])
                    position = max(position, at[0].offset)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"reading {self.changelog_topic}[{partition}] "
                                           f"stalled at {position} of {high}")
                for m in batch:
                    if m.error() is not None:
                        continue
                    position = max(position, (m.offset() or 0) + 1)
                    value = m.value()
                    if value is None:
                        latest.pop(m.key(), None)
                    else:
                        latest[m.key()] = value
        finally:
            reader.close()
        return list(latest.values())

    # the hot path ----------------------------------------------------------------------

    def balance(self) -> None:
        """Pause an input that runs ahead of its partner's backlog; resume it later.

        An input is paused when it leads its partner by SIDE_LEAD_MS of event time while
        the partner has a backlog, and resumed once the partner is within half of that or
        has caught up.
        """
        from confluent_kafka import TopicPartition

        consumer = self._consumer
        for partition, pj in list(self.joins.items()):
            lead_ms = pj.state.prediction_wm_ms - pj.state.outcome_wm_ms
            for role, sign in (("predictions", 1), ("outcomes", -1)):
                topic, other = self.topic_of[role], "outcomes" if sign > 0 else "predictions"
                key = (topic, partition)
                other_tp = TopicPartition(self.topic_of[other], partition)
                _, high = consumer.get_watermark_offsets(other_tp, cached=True)
                behind = high is not None and high > pj.offsets.get(other, 0)
                if key not in self.paused and sign * lead_ms > SIDE_LEAD_MS and behind:
                    consumer.pause([TopicPartition(topic, partition)])
                    self.paused.add(key)
                    self.counters["input_pauses"] += 1
                elif key in self.paused and (sign * lead_ms < SIDE_LEAD_MS // 2 or not behind):
                    consumer.resume([TopicPartition(topic, partition)])
                    self.paused.discard(key)

    def handle(self, messages: list[Any]) -> None:
        """Apply one consumed batch and write the records of every partition it touched."""
        now_ms = int(time.time() * 1000)
        touched: dict[int, PartitionJoin] = {}
        for message in messages:
            if message.error() is not None:
                continue
            partition = message.partition()
            pj = self.joins.get(partition)
            if pj is None:
                self.counters["unassigned_messages_skipped"] += 1
                continue
            role = self.roles[message.topic()]
            offset = message.offset()
            if offset < pj.offsets.get(role, 0):
                self.counters["replayed_messages_skipped"] += 1
                continue
            self._apply(pj, message, role, partition, now_ms)
            pj.offsets[role] = offset + 1
            touched[partition] = pj
            if pj.state.changed_entries >= RECORD_MAX_ENTRIES:
                self._persist(partition, pj)
        for partition, pj in touched.items():
            self._persist(partition, pj)

    def _apply(self, pj: PartitionJoin, message: Any, role: str, partition: int,
               now_ms: int) -> None:
        self.counters["messages"] += 1
        kind, stamp_ms = message.timestamp()
        arrival_ms: int | None = int(stamp_ms) if kind and stamp_ms > 0 else None
        value = message.value() or b""
        if role == "predictions":
            preds = decode_message(events.Prediction, value, partition=partition,
                                   partitions=self.partitions, now_ms=now_ms,
                                   arrival_ms=arrival_ms, max_lead_ms=self.max_lead_ms)
            rejects = preds.rejects
            if preds.events:
                capped = pj.state.add_predictions(preds.events)
                rejects.extend(Reject(events.encode(preds.events[i]), reason, i)
                               for i, reason in capped)
        else:
            outs = decode_message(events.Outcome, value, partition=partition,
                                  partitions=self.partitions, now_ms=now_ms,
                                  arrival_ms=arrival_ms, max_lead_ms=self.max_lead_ms)
            rejects = outs.rejects
            if outs.events:
                pj.state.add_outcomes(outs.events)
        for reject in rejects:
            self._dead_letter(message, reject)

    def _persist(self, partition: int, pj: PartitionJoin) -> None:
        """Produce the partition's records for what changed, then the deletions."""
        pj.state.expire()
        changes = pj.state.take_changes()
        if changes.dropped_cells:
            self._send_final(partition, pj, changes.dropped_cells)
        records, dead = pj.log.write(pj.state, changes, pj.offsets)
        produce = self._produce
        for seq, record in records:
            produce(self.changelog_topic, record, record_key(partition, seq),
                    partition=partition)
        for seq in dead:
            produce(self.changelog_topic, None, record_key(partition, seq), partition=partition)
        pj.dirty |= changes.cells
        self.counters["records_written"] += len(records)
        self.counters["records_deleted"] += len(dead)

    def _send_final(self, partition: int, pj: PartitionJoin,
                    dropped: dict[CellKey, CellState]) -> None:
        """Send the final summary of dropped cells not sent yet, and wait for delivery.

        The record that drops them must not reach the broker before their last value.
        """
        for key, cell in dropped.items():
            if key in pj.dirty:
                pj.dirty.discard(key)
                summary = cell.to_summary(key, window_ms=self.config.window_ms,
                                          source=f"p{partition}",
                                          watermark_ms=pj.announced_wm_ms)
                self._produce(self.cohorts_topic, events.encode(summary), summary.key.encode())
        self._producer.flush(30)

    def _dead_letter(self, message: Any, reject: Reject) -> None:
        self.counters["dead_lettered"] += 1
        headers = [("streammon-reason", reject.reason.encode()),
                   ("streammon-source-topic", message.topic().encode()),
                   ("streammon-source-partition", str(message.partition()).encode()),
                   ("streammon-source-offset", str(message.offset()).encode()),
                   ("streammon-source-index", str(reject.index).encode())]
        self._produce(self.deadletters_topic, reject.raw, message.key(), headers=headers)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 **kw: Any) -> None:
        """Produce, waiting for room when librdkafka's queue is full (never drop)."""
        while True:
            try:
                self._producer.produce(topic, value, key, **kw)
                return
            except BufferError:
                self._producer.poll(0.05)

    def flush(self) -> None:
        """Send the cumulative summary of every cell that changed since the last flush.

        A summary's watermark promises the decider that this partition's cells below it
        have all been sent: every summary of a flush carries the watermark announced by
        the previous flush, and only the flush's last one the new watermark.
        """
        produce = self._produce
        for partition, pj in list(self.joins.items()):
            cells = pj.state.cells
            keys, pj.dirty = [key for key in pj.dirty if key in cells], set()
            new_wm_ms = pj.state.watermark_ms
            for i, key in enumerate(keys):
                last = i == len(keys) - 1
                summary = cells[key].to_summary(
                    key, window_ms=self.config.window_ms, source=f"p{partition}",
                    watermark_ms=new_wm_ms if last else pj.announced_wm_ms)
                produce(self.cohorts_topic, events.encode(summary), summary.key.encode())
            if keys:
                pj.announced_wm_ms = new_wm_ms


class JoinHost:
    """Starts and stops a :class:`JoinService` with the Faust app (a mode service)."""

    @staticmethod
    def attach(app: Any, join: JoinService) -> None:
        """Make ``join`` start and stop with ``app``."""
        import asyncio

        from mode import Service

        class _Host(Service):
            async def on_start(self) -> None:
                await asyncio.get_running_loop().run_in_executor(None, join.start)

            async def on_stop(self) -> None:
                await asyncio.get_running_loop().run_in_executor(None, join.stop)

        app.add_dependency(_Host())
