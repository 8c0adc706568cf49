"""The join as a Faust agent: decode a batch, feed pure JoinState, persist, emit.

One agent reads predictions and outcomes together (both keyed by request_id and
co-partitioned, so partition ``p`` of both lands on the same worker). Each partition
has its own :class:`~streammon.join.JoinState` over its slice of two changelogged
tables; after every batch the agent sends one changelog record per changed key, and a
timer sends the cumulative summary of every changed cell to the cohorts topic under its
deterministic key. Malformed events go to the dead-letter topic with the reason in a
header, and the join goes on.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import Any

import msgspec

from streammon import events
from streammon.app.tablestore import PartitionView, send_changes
from streammon.cohorts import CellKey, CellState
from streammon.config import Settings
from streammon.errors import EventError
from streammon.join import JoinConfig, JoinState, PendingRecord

log = logging.getLogger(__name__)
_PENDING = msgspec.json.Decoder(PendingRecord)
_SUMMARY = msgspec.json.Decoder(events.CohortSummary)


def cell_to_str(key: CellKey) -> str:
    """Return the table key of a cell: rollout|window_start_ms|segment|arm."""
    return "|".join(str(part) for part in key)


def cell_from_str(text: str) -> CellKey:
    """Invert :func:`cell_to_str` (rollout ids and segments may not contain '|')."""
    rollout_id, start_ms, segment, arm = text.rsplit("|", 3)
    return (rollout_id, int(start_ms), segment, "canary" if arm == "canary" else "baseline")


def _decode_cell(raw: bytes) -> CellState:
    return CellState.from_summary(_SUMMARY.decode(raw))


class JoinAgent:
    """Wires the join's topics, tables, agent and flush timer into a Faust app."""

    def __init__(self, app: Any, *, settings: Settings, config: JoinConfig, partitions: int,
                 batch_max: int = 2000, batch_within_s: float = 0.05,
                 flush_interval_s: float = 0.5) -> None:
        topics = settings.topics
        self.settings, self.config = settings, config
        self.predictions_topic = topics.predictions
        self.source = app.topic(topics.predictions, topics.outcomes,
                                key_serializer="raw", value_serializer="raw")
        self.cohorts = app.topic(topics.cohorts, key_serializer="raw", value_serializer="raw")
        self.deadletters = app.topic(topics.deadletters, key_serializer="raw",
                                     value_serializer="raw")
        table_opts = {"partitions": partitions, "key_type": bytes, "value_type": bytes}
        self.pending_table = app.Table("join-pending", **table_opts)
        self.cells_table = app.Table("join-cells", **table_opts)
        self.states: dict[int, JoinState] = {}
        self.dirty: dict[int, set[CellKey]] = defaultdict(set)
        self.counters: Counter[str] = Counter()
        self.batch_max, self.batch_within_s = batch_max, batch_within_s

        async def join(stream: Any) -> None:
            async for batch in stream.take_events(batch_max, within=batch_within_s):
                await self.handle_batch(batch)

        app.agent(self.source, name="streammon-join")(join)
        app.timer(flush_interval_s)(self.flush)
        app.on_partitions_revoked.connect(self.on_revoked)

    def state_for(self, partition: int) -> JoinState:
        """Return (building it from the recovered tables if new) the state of a partition."""
        state = self.states.get(partition)
        if state is None:
            pending: PartitionView[str, PendingRecord] = PartitionView(
                self.pending_table, partition, _PENDING.decode)
            cells: PartitionView[CellKey, CellState] = PartitionView(
                self.cells_table, partition, _decode_cell, cell_to_str, cell_from_str)
            state = self.states[partition] = JoinState(config=self.config, pending=pending,
                                                       cells=cells)
        return state

    async def handle_batch(self, batch: list[Any]) -> None:
        """Process one batch of events from any partitions, then persist what changed."""
        touched: set[int] = set()
        for event in batch:
            message = event.message
            touched.add(message.partition)
            try:
                self._apply(message, event.value)
            except EventError as exc:
                await self._dead_letter(message, event.value, str(exc))
        for partition in touched:
            self._persist(partition)

    def _apply(self, message: Any, value: bytes) -> None:
        state = self.state_for(message.partition)
        self.counters["consumed"] += 1
        if message.topic == self.predictions_topic:
            state.add_prediction(events.decode(events.Prediction, value))
        else:
            state.add_outcome(events.decode(events.Outcome, value))

    def _persist(self, partition: int) -> None:
        state = self.states[partition]
        state.expire()
        changes = state.take_changes()
        send_changes(self.pending_table, partition,
                     ((k, events.encode(r)) for k, r in changes.pending_set.items()),
                     changes.pending_deleted)
        send_changes(self.cells_table, partition,
                     ((cell_to_str(k), events.encode(self._summary(partition, k)))
                      for k in changes.cells))
        self.dirty[partition] |= changes.cells

    def _summary(self, partition: int, key: CellKey) -> events.CohortSummary:
        state = self.states[partition]
        return state.cells[key].to_summary(key, window_ms=self.config.window_ms,
                                           source=f"p{partition}",
                                           watermark_ms=state.watermark_ms)

    async def _dead_letter(self, message: Any, value: bytes, reason: str) -> None:
        self.counters["dead_lettered"] += 1
        headers = [("streammon-reason", reason.encode()),
                   ("streammon-source-topic", message.topic.encode()),
                   ("streammon-source-partition", str(message.partition).encode()),
                   ("streammon-source-offset", str(message.offset).encode())]
        await self.deadletters.send(key=message.key, value=value, headers=headers)

    async def flush(self) -> None:
        """Send the cumulative summary of every cell that changed since the last flush."""
        for partition, keys in list(self.dirty.items()):
            if partition not in self.states:
                continue
            self.dirty[partition] = set()
            for key in keys:
                summary = self._summary(partition, key)
                await self.cohorts.send(key=summary.key.encode(), value=events.encode(summary))

    async def on_revoked(self, app: Any, revoked: Any, **_: Any) -> None:
        """Forget the in-memory state of partitions this worker no longer owns."""
        for tp in revoked:
            if tp.topic == self.predictions_topic:
                self.states.pop(tp.partition, None)
                self.dirty.pop(tp.partition, None)
