"""Persisting a partition's join state as one changelog record per batch.

Writing one changelog record per changed request id costs a Kafka message per event,
more than the whole join. Instead, after each batch of a partition the join writes one
:class:`JoinRecord` under the key ``<seq>``: every entry the batch wrote, the
cumulative value of every cell it touched, and the partition's bookkeeping (input
offsets applied, watermarks, counters). Because state and offsets travel in one
record, a record is applied entirely or not at all: after a crash, input messages
below the recovered offsets are skipped, so a replay never counts an event twice.

Old records are deleted (tombstoned) once everything in them is dead:
:meth:`JoinLog.write` deletes a record when all its entries have expired (entries a
later record overwrote expire at the same time, so they do not outlive it) after
carrying any cell whose latest value it still holds into the new record. Recovery
(:func:`restore`) replays the surviving records in ``seq`` order, later values
overwriting earlier ones, and drops entries whose expiry is at or before the recovered
``expired_through_ms`` - they were expired, and counted, before the crash.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

from streammon.join.cells import CellKey, CellState
from streammon.join.state import (
    Entry,
    JoinChanges,
    JoinConfig,
    JoinState,
    PendingOutcome,
    PendingPrediction,
)

CellWire = tuple[str, int, str, str, dict[str, tuple[int, float, float]], list[int], int]


class JoinRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One batch's changes to one partition's join state, plus the partition's bookkeeping."""

    v: int = 1
    seq: int
    offsets: dict[str, int]
    prediction_wm_ms: int
    outcome_wm_ms: int
    expired_through_ms: int
    counters: dict[str, int]
    cells: list[CellWire] = []
    predictions: list[tuple[str, int, int]] = []
    outcomes: list[tuple[str, int, float | None, float | None]] = []
    joined: list[tuple[str, int]] = []


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(JoinRecord)


def _cell_wire(key: CellKey, cell: CellState) -> CellWire:
    sums = {m: (int(n), s, ss) for m, (n, s, ss) in cell.sums.items()}
    return (key[0], key[1], key[2], key[3], sums, list(cell.score_hist), cell.expired)


def _cell_from_wire(wire: CellWire) -> tuple[CellKey, CellState]:
    rollout_id, start_ms, segment, arm, sums, hist, expired = wire
    key: CellKey = (rollout_id, start_ms, segment, "canary" if arm == "canary" else "baseline")
    cell = CellState(sums={m: [n, s, ss] for m, (n, s, ss) in sums.items()},
                     score_hist=list(hist), expired=expired)
    return key, cell


class JoinLog:
    """Which records are alive, and which cells each one still holds the latest value of."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.cell_seq: dict[CellKey, int] = {}
        self.seq_cells: dict[int, set[CellKey]] = {}
        self._by_expiry: list[tuple[int, int]] = []

    def write(self, state: JoinState, changes: JoinChanges,
              offsets: dict[str, int]) -> tuple[int, bytes, list[int]]:
        """Return (seq, record bytes, seqs of records to delete) after one batch."""
        dead = self._pop_dead(state.expired_through_ms)
        cells = set(changes.cells)
        for seq in dead:
            cells |= self.seq_cells.pop(seq, set())
        self.seq += 1
        record = _build(self.seq, state, changes, cells, offsets)
        for key in cells:
            old = self.cell_seq.get(key)
            if old is not None and old != self.seq:
                self.seq_cells.get(old, set()).discard(key)
            self.cell_seq[key] = self.seq
        self.seq_cells[self.seq] = cells
        self.track(self.seq, changes.max_expiry_ms)
        return self.seq, _ENCODER.encode(record), dead

    def track(self, seq: int, max_expiry_ms: int) -> None:
        """Remember that record ``seq`` holds entries expiring by ``max_expiry_ms``."""
        heapq.heappush(self._by_expiry, (max_expiry_ms, seq))

    def _pop_dead(self, expired_through_ms: int) -> list[int]:
        dead = []
        while self._by_expiry and self._by_expiry[0][0] <= expired_through_ms:
            dead.append(heapq.heappop(self._by_expiry)[1])
        return dead


def _build(seq: int, state: JoinState, changes: JoinChanges, cells: set[CellKey],
           offsets: dict[str, int]) -> JoinRecord:
    record = JoinRecord(seq=seq, offsets=dict(offsets), prediction_wm_ms=state.prediction_wm_ms,
                        outcome_wm_ms=state.outcome_wm_ms,
                        expired_through_ms=state.expired_through_ms,
                        counters=dict(state.counters))
    index: dict[CellKey, int] = {}
    for key in cells:
        index[key] = len(record.cells)
        record.cells.append(_cell_wire(key, state.cells[key]))
    for request_id, entry in changes.entries.items():
        if isinstance(entry, int):
            record.joined.append((request_id, entry))
        elif isinstance(entry, PendingOutcome):
            record.outcomes.append((request_id, entry.expires_at_ms, entry.label, entry.value))
        else:
            if entry.cell not in index:
                index[entry.cell] = len(record.cells)
                record.cells.append(_cell_wire(entry.cell, state.cells[entry.cell]))
            record.predictions.append((request_id, entry.expires_at_ms, index[entry.cell]))
    return record


def decode_record(raw: bytes) -> JoinRecord:
    """Decode one changelog record."""
    return _DECODER.decode(raw)


def restore(raw_records: Iterable[bytes], config: JoinConfig
            ) -> tuple[JoinState, JoinLog, dict[str, int]]:
    """Rebuild (state, log, applied offsets) of a partition from its surviving records."""
    records = sorted((decode_record(r) for r in raw_records), key=lambda r: r.seq)
    state, log = JoinState(config=config), JoinLog()
    if not records:
        return state, log, {}
    entries: dict[str, Entry] = {}
    cells: dict[CellKey, CellState] = {}
    for record in records:
        _replay(record, entries, cells, log)
    last = records[-1]
    log.seq = last.seq
    state.prediction_wm_ms, state.outcome_wm_ms = last.prediction_wm_ms, last.outcome_wm_ms
    state.expired_through_ms = last.expired_through_ms
    state.counters.update(last.counters)
    state.restore(entries, cells)
    return state, log, dict(last.offsets)


def _replay(record: JoinRecord, entries: dict[str, Entry], cells: dict[CellKey, CellState],
            log: JoinLog) -> None:
    keys: list[CellKey] = []
    for wire in record.cells:
        key, cell = _cell_from_wire(wire)
        keys.append(key)
        cells[key] = cell
        old = log.cell_seq.get(key)
        if old is not None:
            log.seq_cells[old].discard(key)
        log.cell_seq[key] = record.seq
    log.seq_cells[record.seq] = set(keys)
    max_expiry = -1
    for request_id, expires_ms, cell_index in record.predictions:
        entries[request_id] = PendingPrediction(expires_ms, keys[cell_index])
        max_expiry = max(max_expiry, expires_ms)
    for request_id, expires_ms, label, value in record.outcomes:
        entries[request_id] = PendingOutcome(expires_ms, label, value)
        max_expiry = max(max_expiry, expires_ms)
    for request_id, expires_ms in record.joined:
        entries[request_id] = expires_ms
        max_expiry = max(max_expiry, expires_ms)
    log.track(record.seq, max_expiry)
