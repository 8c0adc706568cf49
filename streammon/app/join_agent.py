"""The join as a Faust agent: decode a batch, feed pure JoinState, persist, emit.

One agent reads predictions and outcomes together (both keyed by request_id and
co-partitioned, so partition ``p`` of both lands on the same worker). Messages are
single events or batch envelopes (:mod:`streammon.envelope`). Each partition has its
own :class:`~streammon.join.state.JoinState`, rebuilt from the ``join-records`` table when
the partition is first seen after an assignment. After every batch the agent writes one
:class:`~streammon.join.changelog.JoinRecord` per touched partition (state changes and input
offsets together) and skips input below the offsets it recovered, so replays after a
crash or a rebalance count nothing twice. A timer sends the cumulative summary of every
changed cell to the cohorts topic under its deterministic key every ``flush_interval_s``;
after every table recovery (start, restart, rebalance) it rebuilds its partitions and
re-sends all their cells, so a summary lost in a crash is re-sent even if no new input
arrives. Rejected events go to the dead-letter topic with the reason in a header, and
the join goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streammon import events
from streammon.app.producer_flush import drain_fully
from streammon.app.tablestore import RecordStore
from streammon.config.settings import Settings
from streammon.envelope import MAX_LEAD_MS, Reject, decode_message
from streammon.events import CellKey
from streammon.join.cells import CellState
from streammon.join.changelog import JoinLog, restore
from streammon.join.state import JoinConfig, JoinState

log = logging.getLogger(__name__)
RECORD_MAX_ENTRIES = 4_000
"""A partition's record is written early, at a message boundary, once this many request ids
changed, so a record stays far below Kafka's 1 MB message limit whatever the batch size."""
SOURCE_BUFFER_MESSAGES = 256
"""Messages Faust may buffer ahead of the join (its default, 4096, holds two million events
of batch envelopes when there is a backlog, and the worker's memory grows with the backlog)."""
PRODUCER_BUFFER_MAX_MESSAGES = 100_000
"""Faust's ProducerBuffer warns and stalls the stream above 100 queued messages; the
join queues changelog records and summaries in bursts, so it raises the bound."""


@dataclass
class PartitionJoin:
    """Everything the agent holds for one assigned partition."""

    state: JoinState
    log: JoinLog
    store: RecordStore
    offsets: dict[str, int]
    dirty: set[CellKey] = field(default_factory=set)
    final: dict[CellKey, CellState] = field(default_factory=dict)
    """Dropped cells whose last value is still to be sent."""
    announced_wm_ms: int = 0
    """The watermark the cohorts topic has been told: every cell below it was sent before."""


class JoinAgent:
    """Wires the join's topics, table and agent into a Faust app."""

    def __init__(self, app: Any, *, settings: Settings, config: JoinConfig, partitions: int,
                 batch_max: int = 32, batch_within_s: float = 0.05,
                 flush_interval_s: float = 0.5, max_lead_ms: int = MAX_LEAD_MS) -> None:
        topics = settings.topics
        self.app, self.settings, self.config = app, settings, config
        self.max_lead_ms = max_lead_ms
        self.partitions = partitions
        self.roles = {topics.predictions: "predictions", topics.outcomes: "outcomes"}
        self.source = app.topic(topics.predictions, topics.outcomes, key_serializer="raw",
                                value_serializer="raw", maxsize=SOURCE_BUFFER_MESSAGES)
        self.cohorts = app.topic(topics.cohorts, key_serializer="raw", value_serializer="raw")
        self.deadletters = app.topic(topics.deadletters, key_serializer="raw",
                                     value_serializer="raw")
        self.table = app.Table("join-records", partitions=partitions, key_type=bytes,
                               value_type=bytes)
        self.joins: dict[int, PartitionJoin] = {}
        self.counters: Counter[str] = Counter()
        self.failed: BaseException | None = None

        async def join(stream: Any) -> None:
            async for batch in stream.take_events(batch_max, within=batch_within_s):
                await self.run_batch(batch)

        app.agent(self.source, name="streammon-join")(join)
        app.timer(flush_interval_s)(self.flush)
        self.table.on_recover(self.on_recovered)
        app.on_partitions_revoked.connect(self.on_revoked)
        app.producer.buffer.max_messages = PRODUCER_BUFFER_MAX_MESSAGES
        drain_fully(app.producer.buffer)  # no offset commit ahead of its changelog record

    def join_for(self, partition: int) -> PartitionJoin:
        """Return (rebuilding it from the recovered table if new) the join of a partition."""
        pj = self.joins.get(partition)
        if pj is None:
            store = RecordStore(self.table, partition)
            state, jlog, offsets = restore(store.load(), self.config)
            pj = self.joins[partition] = PartitionJoin(state, jlog, store, offsets,
                                                       dirty=set(state.cells))
            log.info("partition %d: restored %d cells, %d entries, offsets %s", partition,
                     len(state.cells), len(state.pending), offsets)
        return pj

    def owns(self, message: Any, pj: PartitionJoin | None = None) -> bool:
        """Return True while this worker owns the message's partition (and ``pj`` is live)."""
        if message.tp not in self.app.consumer.assignment():
            return False
        return pj is None or self.joins.get(message.partition) is pj

    async def run_batch(self, batch: list[Any]) -> None:
        """Handle a batch; if it fails or is cancelled, stop the worker without applying more.

        Faust's ``take_events`` acks a batch in a ``finally``, even a failed one, and may
        commit those offsets. The join does not rely on them: its records are the offset
        authority (see :meth:`on_recovered`), and a failed batch drops the in-memory state
        it may have half-changed and stops the worker, so nothing after it is applied on
        top of that state; the restarted worker re-reads from the records' offsets.
        """
        if self.failed is not None:
            self.counters["messages_after_failure_ignored"] += len(batch)
            return
        try:
            await self.handle_batch(batch)
        except BaseException as exc:
            self.failed = exc
            for event in batch:
                self.joins.pop(event.message.partition, None)
            if isinstance(exc, asyncio.CancelledError):
                raise  # the worker is stopping anyway
            log.critical("join batch failed; stopping the worker (its records are intact, "
                         "a restart re-reads from their offsets)", exc_info=exc)
            await self.app.crash(exc)

    async def handle_batch(self, batch: list[Any]) -> None:
        """Process one batch of messages from any partitions, then persist what changed.

        A partition revoked while the batch runs is fenced: nothing more is applied to it
        and its record is not written (its new owner rebuilds from the records it finds).
        """
        touched: dict[int, PartitionJoin] = {}
        sent: list[Any] = []
        now_ms = int(time.time() * 1000)
        for event in batch:
            message = event.message
            if not self.owns(message):
                self.counters["revoked_messages_skipped"] += 1
                continue
            role = self.roles[message.topic]
            pj = self.join_for(message.partition)
            if message.offset < pj.offsets.get(role, 0):
                self.counters["replayed_messages_skipped"] += 1
                continue
            touched[message.partition] = pj
            rejects = self._apply(pj, message, role, event.value, now_ms)
            pj.offsets[role] = message.offset + 1
            for reject in rejects:
                await self._dead_letter(message, reject)
            if pj.state.changed_entries >= RECORD_MAX_ENTRIES and self.owns(message, pj):
                sent.extend(self._persist(pj))
                touched.pop(message.partition)
        for partition, pj in touched.items():
            if self.joins.get(partition) is pj and any(
                    tp.partition == partition and tp.topic in self.roles
                    for tp in self.app.consumer.assignment()):
                sent.extend(self._persist(pj))
            else:
                self.counters["revoked_records_fenced"] += 1
        # The batch's messages are acked (and so may be committed) when this returns: not
        # before the records holding their effects are on the broker, or a crash in
        # between would lose them (offsets committed, state not).
        if sent:
            await asyncio.gather(*sent)

    def _apply(self, pj: PartitionJoin, message: Any, role: str, value: bytes,
               now_ms: int) -> list[Reject]:
        """Apply one message to the partition's state; return what must be dead-lettered."""
        self.counters["messages"] += 1
        stamp_s = getattr(message, "timestamp", None)
        arrival_ms = int(stamp_s * 1000) if stamp_s else None
        where = {"partition": message.partition, "partitions": self.partitions, "now_ms": now_ms,
                 "arrival_ms": arrival_ms, "max_lead_ms": self.max_lead_ms}
        if role == "predictions":
            preds = decode_message(events.Prediction, value, **where)
            capped = pj.state.add_predictions(preds.events)
            preds.rejects.extend(Reject(events.encode(preds.events[i]), reason, i)
                                 for i, reason in capped)
            return preds.rejects
        outs = decode_message(events.Outcome, value, **where)
        pj.state.add_outcomes(outs.events)
        return outs.rejects

    def _persist(self, pj: PartitionJoin) -> list[Any]:
        """Write the partition's records for what changed; return the sends' futures."""
        pj.state.expire()
        changes = pj.state.take_changes()
        records, dead = pj.log.write(pj.state, changes, pj.offsets)
        sent = [pj.store.put(seq, record) for seq, record in records]
        pj.store.delete(dead)
        pj.dirty |= changes.cells
        for key, cell in changes.dropped_cells.items():
            if key in pj.dirty:
                pj.dirty.discard(key)
                pj.final[key] = cell
        self.counters["records_written"] += len(records)
        self.counters["records_deleted"] += len(dead)
        return sent

    async def _dead_letter(self, message: Any, reject: Reject) -> None:
        self.counters["dead_lettered"] += 1
        headers = [("streammon-reason", reject.reason.encode()),
                   ("streammon-source-topic", message.topic.encode()),
                   ("streammon-source-partition", str(message.partition).encode()),
                   ("streammon-source-offset", str(message.offset).encode()),
                   ("streammon-source-index", str(reject.index).encode())]
        await self.deadletters.send(key=message.key, value=reject.raw, headers=headers)

    async def flush(self) -> None:
        """Send the cumulative summary of every cell that changed since the last flush.

        A summary's watermark promises the decider that this partition's cells below it
        have all been sent. So every summary of a flush carries the watermark announced by
        the previous flush, and only the flush's last one the new watermark: a decider
        reading the first summary of a flush cannot judge a window whose other cells are
        still on their way.
        """
        for partition, pj in list(self.joins.items()):
            final, pj.final = pj.final, {}  # last values of cells dropped after retention
            cells = pj.state.cells
            keys = [key for key in pj.dirty if key in cells] + list(final)
            pj.dirty = set()
            new_wm_ms = pj.state.watermark_ms
            for i, key in enumerate(keys):
                if self.joins.get(partition) is not pj:
                    break  # revoked while sending: the new owner re-sends everything
                last = i == len(keys) - 1
                cell = cells.get(key) or final.get(key)
                if cell is None:
                    continue  # dropped while this flush awaited a send
                summary = cell.to_summary(
                    key, window_ms=self.config.window_ms, source=f"p{partition}",
                    watermark_ms=new_wm_ms if last else pj.announced_wm_ms)
                await self.cohorts.send(key=summary.key.encode(), value=events.encode(summary))
                if last:
                    pj.announced_wm_ms = new_wm_ms

    async def on_recovered(self) -> None:
        """After table recovery, rebuild every assigned partition and re-send all its cells.

        Summaries go out from a timer, so a crash can come after Faust committed a batch's
        input offsets but before its summaries were sent; re-sending everything recovered
        closes that gap even if no new input ever arrives.
        """
        await self.seek_to_records()
        await self.flush()

    async def seek_to_records(self) -> None:
        """Make every assigned input partition resume where its records say it was applied.

        Called after table recovery and before Faust seeks its streams to the committed
        offsets: it commits, per input partition, the offset its latest record holds (0
        without records), so a commit Faust made ahead of applied state (a failed or
        cancelled batch it acked anyway) is rolled back and those messages are read again.
        """
        offsets: dict[Any, int] = {}
        for tp in self.app.assignor.assigned_actives():
            role = self.roles.get(tp.topic)
            if role is not None:
                offsets[tp] = self.join_for(tp.partition).offsets.get(role, 0)
        if offsets:
            await self.app.consumer._commit(offsets)
            self.counters["record_offset_commits"] += 1

    async def on_revoked(self, app: Any, revoked: Any, **_: Any) -> None:
        """Forget the in-memory state of partitions this worker no longer owns."""
        for tp in revoked:
            if tp.topic in self.roles:
                self.joins.pop(tp.partition, None)
