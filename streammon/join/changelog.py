"""Persisting a partition's join state as one changelog record per batch.

Writing one changelog record per changed request id costs a Kafka message per event,
more than the whole join. Instead, after each batch of a partition the join writes one
:class:`JoinRecord` under the key ``<seq>``: every entry the batch wrote, the
cumulative value of every cell it touched, and the partition's bookkeeping (input
offsets applied, watermarks, counters). Because state and offsets travel in one
record, a record is applied entirely or not at all: after a crash, input messages
below the recovered offsets are skipped, so a replay never counts an event twice.

A record has a byte bound (:data:`RECORD_TARGET_BYTES`, far below Kafka's 1 MB): when a
batch's changes (or the cells carried out of dead records after a lull) would not fit,
:meth:`JoinLog.write` splits them over several records with consecutive ``seq``; all but
the last say ``final=False``, and recovery ignores records after the last final one, so a
crash between the parts applies none of them.

Units travel the same way: a record holds the open state of every unit its batch changed
(kept alive until the unit freezes: a record lives until the latest freeze time of its
units), and the seen markers (64-bit hashes) of units frozen since the last record. Seen
markers live as long as their rollout, so a dying record's markers are carried into the
new record like its cells; a record holding markers is kept for ``ttl_ms`` of event time,
so each marker is rewritten about once per ``ttl_ms``, not after every batch. When a
rollout is forgotten, its markers are no longer carried, and the next record lists the
rollout in ``forgotten`` (living as long as the older records holding its markers):
recovery drops the markers read before that note, so a rollout opened again starts with
an empty seen set, as in the live state.

Old records are deleted (tombstoned) once everything in them is dead:
:meth:`JoinLog.write` deletes a record when all its entries have expired (entries a
later record overwrote expire at the same time, so they do not outlive it) after
carrying any cell whose latest value it still holds into the new record. Recovery
(:func:`restore`) replays the surviving records in ``seq`` order, later values
overwriting earlier ones, and drops entries whose expiry is at or before the recovered
``expired_through_ms`` - they were expired, and counted, before the crash. Recovery
never raises: a record it cannot decode, or a sum an old build wrote as ``null`` (an
overflow to infinity), is skipped and counted (``unreadable_records``,
``unreadable_sums``), and the join goes on with the rest.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from streammon.events import CellKey
from streammon.join.cells import CellState, OpenUnit
from streammon.join.state import (
    Entry,
    JoinChanges,
    JoinConfig,
    JoinState,
    PendingOutcome,
    PendingPrediction,
    expiry_of,
)
from streammon.join.units import HashArray

log = logging.getLogger(__name__)
CellWire = tuple[str, int, str, str, dict[str, list[float]], list[int], int]
CellWireIn = tuple[str, int, str, str, dict[str, list[float | None]], list[int], int]
UnitWire = tuple[int, int, int, int, float, int, float, int, float, int]
"""A cell as read back: an old build may have written an overflowed sum as ``null``."""
RECORD_TARGET_BYTES = 400_000
"""Estimated size at which a write starts a new record (the estimate is generous: a
batch of RECORD_MAX_ENTRIES request entries fits one record)."""
RECORD_MAX_BYTES = 900_000
"""Hard bound on one encoded record (Kafka's default message limit is 1 MB)."""


class JoinRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One batch's changes to one partition's join state, plus the partition's bookkeeping."""

    v: int = 1
    seq: int
    offsets: dict[str, int]
    prediction_wm_ms: int
    outcome_wm_ms: int
    expired_through_ms: int
    counters: dict[str, int]
    final: bool = True
    cells: list[CellWire] = []
    predictions: list[tuple[str, int, int]] = []
    outcomes: list[tuple[str, int, float | None, float | None]] = []
    joined: list[tuple[str, int]] = []
    """(request key, expiry): a joined tombstone, or (negative expiry) an excluded one."""
    unit_predictions: list[tuple[str, int, int, int]] = []
    """(request key, expiry, cell index, unit hash) of waiting predictions of units."""
    units: list[UnitWire] = []
    """Open units: (hash, cell index, freeze_ms, error, lat y, m, label y, m, value y, m)."""
    seen: dict[str, list[int]] = {}
    """Per rollout, hashes of frozen units (their later requests are excluded)."""
    covariates: list[tuple[str, float]] = []
    """Pending predictions' covariates (request id, x); absent in records of older builds."""
    unit_covariates: list[tuple[int, float]] = []
    """Open units' covariates (hash, x_u) of ``units`` here; absent in older records."""
    forgotten: list[str] = []
    """Rollouts forgotten (last cell dropped) since the previous record while an older live
    record still held seen markers of theirs: recovery drops the markers of earlier records
    (a rollout opened again later starts with an empty seen set)."""


class _JoinRecordIn(JoinRecord, kw_only=True, omit_defaults=True):
    """A record as read back (tolerates ``null`` sums of old builds)."""

    cells: list[CellWireIn] = []  # type: ignore[assignment]


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_JoinRecordIn)


def _cell_wire(key: CellKey, cell: CellState) -> CellWire:
    sums = {m: [int(v[0]), *v[1:]] for m, v in cell.sums.items()}
    return (key[0], key[1], key[2], key[3], sums, list(cell.score_hist), cell.expired)


def _cell_from_wire(wire: CellWireIn, counters: dict[str, int]) -> tuple[CellKey, CellState]:
    rollout_id, start_ms, segment, arm, sums, hist, expired = wire
    key: CellKey = (rollout_id, start_ms, segment, "canary" if arm == "canary" else "baseline")
    good: dict[str, list[float]] = {}
    for metric, values in sums.items():
        if len(values) not in (3, 6) or any(x is None or not math.isfinite(x) for x in values):
            counters["unreadable_sums"] = counters.get("unreadable_sums", 0) + 1
            log.error("join record: cell %s metric %s has a non-finite sum; dropped", key,
                      metric)
            continue
        good[metric] = [int(values[0] or 0), *(float(x or 0.0) for x in values[1:])]
        good[metric] += [0.0] * (6 - len(good[metric]))
    return key, CellState(sums=good, score_hist=list(hist), expired=expired)


class JoinLog:
    """Which records are alive, and which cells and seen markers each one still holds."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.cell_seq: dict[CellKey, int] = {}
        self.seq_cells: dict[int, set[CellKey]] = {}
        self.seq_seen: dict[int, dict[str, HashArray]] = {}
        self.seq_expiry: dict[int, int] = {}
        self._by_expiry: list[tuple[int, int]] = []

    def write(self, state: JoinState, changes: JoinChanges,
              offsets: dict[str, int]) -> tuple[list[tuple[int, bytes]], list[int]]:
        """Return ([(seq, record bytes)], seqs of records to delete) after one batch.

        Several records (consecutive seqs, the last one ``final``) when one would exceed
        the byte bound; send them in order, and the deletions after them.
        """
        for key in changes.dropped_cells:
            old = self.cell_seq.pop(key, None)
            if old is not None:
                self.seq_cells.get(old, set()).discard(key)
        forgotten, forgotten_until = self.forget(changes.forgotten)
        dead = self._pop_dead(state.expired_through_ms)
        cells = set(changes.cells)
        markers: dict[str, list[HashArray]] = {}
        for rollout_id, uhash in changes.frozen:
            markers.setdefault(rollout_id, []).append(np.array([uhash], dtype=np.int64))
        for seq in dead:
            cells |= self.seq_cells.pop(seq, set())
            for rollout_id, hashes in self.seq_seen.pop(seq, {}).items():
                markers.setdefault(rollout_id, []).append(hashes)
        cells &= state.cells.keys()
        seen = {r: np.unique(np.concatenate(h)) for r, h in markers.items()
                if r in state.rollouts}
        units = [u for u in changes.units if u in state.units]
        parts = list(_pack(state, changes, cells, units, seen))
        out: list[tuple[int, bytes]] = []
        while parts:
            part = parts.pop(0)
            final = not parts
            raw = _ENCODER.encode(_build(self.seq + 1, state, part, offsets, final,
                                         forgotten if final else []))
            if len(raw) > RECORD_MAX_BYTES and part.size() > 1:
                parts[:0] = part.halves()  # the estimate was beaten
                continue
            self.seq += 1
            out.append((self.seq, raw))
            self._remember(state, part, forgotten_until if final else -1)
        return out, dead

    def forget(self, rollouts: Iterable[str]) -> tuple[list[str], int]:
        """Drop the seen markers live records hold for forgotten rollouts (never carried).

        Return the rollouts of which a live record held markers (the next record notes
        them, so recovery drops those markers too) and until when that note must live:
        the latest expiry of those records.
        """
        noted: set[str] = set()
        until = -1
        for seq, markers in self.seq_seen.items():
            for rollout_id in rollouts:
                if markers.pop(rollout_id, None) is not None:
                    noted.add(rollout_id)
                    until = max(until, self.seq_expiry.get(seq, -1))
        for seq in [seq for seq, markers in self.seq_seen.items() if not markers]:
            del self.seq_seen[seq]
        return sorted(noted), until

    def _remember(self, state: JoinState, part: Part, min_expiry_ms: int) -> None:
        for key in part.cells:
            old = self.cell_seq.get(key)
            if old is not None and old != self.seq:
                self.seq_cells.get(old, set()).discard(key)
            self.cell_seq[key] = self.seq
        self.seq_cells[self.seq] = set(part.cells)
        entries_max_ms = part.max_expiry_ms
        if entries_max_ms is None:
            entries_max_ms = max((expiry_of(e) for _, e in part.entries), default=-1)
        max_expiry = max([entries_max_ms, *(state.units[u].freeze_ms for u in part.units)])
        if part.seen:
            self.seq_seen[self.seq] = {r: np.asarray(h, dtype=np.int64)
                                       for r, h in part.seen.items()}
            max_expiry = max(max_expiry, state.expired_through_ms + state.config.ttl_ms)
        self.track(self.seq, max(max_expiry, min_expiry_ms))

    def track(self, seq: int, max_expiry_ms: int) -> None:
        """Remember that record ``seq`` is needed until event time ``max_expiry_ms``."""
        heapq.heappush(self._by_expiry, (max_expiry_ms, seq))
        self.seq_expiry[seq] = max_expiry_ms

    def _pop_dead(self, expired_through_ms: int) -> list[int]:
        dead = []
        while self._by_expiry and self._by_expiry[0][0] <= expired_through_ms:
            seq = heapq.heappop(self._by_expiry)[1]
            self.seq_expiry.pop(seq, None)
            dead.append(seq)
        return dead


@dataclass
class Part:
    """What one record carries: cells, request entries, open units, seen markers."""

    cells: list[CellKey] = field(default_factory=list)
    entries: list[tuple[str, Entry]] = field(default_factory=list)
    units: list[int] = field(default_factory=list)
    seen: dict[str, list[int]] = field(default_factory=dict)
    max_expiry_ms: int | None = None
    """An upper bound of its entries' expiry when known (else computed from them)."""

    def size(self) -> int:
        """Return how many items the part holds."""
        return len(self.cells) + len(self.entries) + len(self.units) + sum(
            len(h) for h in self.seen.values())

    def halves(self) -> list[Part]:
        """Split a part that encoded too large in two (each keeps the cells it refers to)."""
        out = []
        for side in (0, 1):
            def half(items: list[Any], side: int = side) -> list[Any]:
                mid = len(items) // 2
                return items[:mid] if side == 0 else items[mid:]
            out.append(Part(half(self.cells), half(self.entries), half(self.units),
                            {r: half(h) for r, h in self.seen.items()}))
        return out


UNIT_BYTES = 170
"""A generous estimate of one open unit's encoded size."""
HASH_BYTES = 21
"""A seen marker's encoded size (a 63-bit integer and a comma)."""


def _entry_bytes(request_key: str) -> int:
    """Return a generous estimate of one request entry's encoded size."""
    return 2 * len(request_key) + 40


def _cell_bytes(key: CellKey, cell: CellState) -> int:
    """Return a generous estimate of a cell's encoded size."""
    return 2 * (len(key[0]) + len(key[2])) + 120 + 120 * len(cell.sums)


def _whole(state: JoinState, changes: JoinChanges, cells: set[CellKey], units: list[int],
           seen: dict[str, HashArray]) -> Part | None:
    """Return everything as one part when its estimated size fits a record, else None.

    The common case, decided without a loop over the entries.
    """
    entries = changes.entries
    size = (_entry_bytes("") * len(entries) + 2 * sum(map(len, entries))
            + UNIT_BYTES * len(units) + sum(HASH_BYTES * h.size + len(r) for r, h in seen.items()))
    if size > RECORD_TARGET_BYTES:
        return None
    cell_map = state.cells
    size += sum(_cell_bytes(key, cell_map[key]) for key in cells)
    if size > RECORD_TARGET_BYTES:
        return None
    return Part(list(cells), list(entries.items()), list(units),
                {r: h.tolist() for r, h in seen.items()}, changes.max_expiry_ms)


def _pack(state: JoinState, changes: JoinChanges, cells: set[CellKey], units: list[int],
          seen: dict[str, HashArray]) -> Iterator[Part]:
    """Split cells, entries, units and markers into parts of ~RECORD_TARGET_BYTES (>= 1).

    Entries that expired in this batch are left for :func:`_build` to skip.
    """
    whole = _whole(state, changes, cells, units, seen)
    if whole is not None:
        yield whole
        return
    part, size = Part(), 0
    for key in cells:
        if size > RECORD_TARGET_BYTES:
            yield part
            part, size = Part(), 0
        part.cells.append(key)
        size += _cell_bytes(key, state.cells[key])
    for request_key, entry in changes.entries.items():
        if size > RECORD_TARGET_BYTES:
            yield part
            part, size = Part(), 0
        part.entries.append((request_key, entry))
        size += _entry_bytes(request_key)
    for uhash in units:
        if size > RECORD_TARGET_BYTES:
            yield part
            part, size = Part(), 0
        part.units.append(uhash)
        size += UNIT_BYTES
    for rollout_id, hashes in seen.items():
        step = RECORD_TARGET_BYTES // HASH_BYTES
        for i in range(0, hashes.size, step):
            if size > RECORD_TARGET_BYTES:
                yield part
                part, size = Part(), 0
            chunk = hashes[i:i + step].tolist()
            part.seen.setdefault(rollout_id, []).extend(chunk)
            size += HASH_BYTES * len(chunk) + len(rollout_id)
    yield part


def _build(seq: int, state: JoinState, part: Part, offsets: dict[str, int],
           final: bool, forgotten: list[str]) -> JoinRecord:
    record = JoinRecord(seq=seq, offsets=dict(offsets), prediction_wm_ms=state.prediction_wm_ms,
                        outcome_wm_ms=state.outcome_wm_ms,
                        expired_through_ms=state.expired_through_ms,
                        counters=dict(state.counters), final=final, seen=dict(part.seen),
                        forgotten=list(forgotten))
    index: dict[CellKey, int] = {}

    def cell_index(key: CellKey) -> int:
        at = index.get(key)
        if at is None:
            at = index[key] = len(record.cells)
            record.cells.append(_cell_wire(key, state.cells[key]))
        return at

    for key in part.cells:
        cell_index(key)
    dead_through_ms = state.expired_through_ms
    joined, outcomes, covariates = record.joined, record.outcomes, record.covariates
    predictions, unit_predictions = record.predictions, record.unit_predictions
    index_get = index.get
    for request_id, entry in part.entries:
        kind = entry.__class__
        if kind is int:
            if abs(entry) > dead_through_ms:  # type: ignore[arg-type]
                joined.append((request_id, entry))  # type: ignore[arg-type]
            continue
        expires_ms = entry.expires_at_ms  # type: ignore[union-attr]
        if expires_ms <= dead_through_ms:
            continue  # expired in this batch: recovery would drop it (its cell may be gone)
        if kind is PendingOutcome:
            outcomes.append((request_id, expires_ms, entry.label,  # type: ignore[union-attr]
                             entry.value))  # type: ignore[union-attr]
            continue
        at = index_get(entry.cell)  # type: ignore[union-attr]
        if at is None:
            at = cell_index(entry.cell)  # type: ignore[union-attr]
        if entry.unit:  # type: ignore[union-attr]
            unit_predictions.append((request_id, expires_ms, at, entry.unit))  # type: ignore[union-attr]
        else:
            predictions.append((request_id, expires_ms, at))
        if entry.covariate is not None:  # type: ignore[union-attr]
            covariates.append((request_id, entry.covariate))  # type: ignore[union-attr]
    for uhash in part.units:
        unit = state.units[uhash]
        record.units.append((uhash, cell_index(unit.cell),
                             *msgspec.structs.astuple(unit)[1:-1]))
        if unit.x is not None:
            record.unit_covariates.append((uhash, unit.x))
    part.cells = list(index)
    return record


def decode_record(raw: bytes) -> JoinRecord:
    """Decode one changelog record (raises msgspec errors on bytes that are not one)."""
    return _DECODER.decode(raw)


def restore(raw_records: Iterable[bytes], config: JoinConfig
            ) -> tuple[JoinState, JoinLog, dict[str, int]]:
    """Rebuild (state, log, applied offsets) of a partition from its surviving records.

    Never raises on record contents: unreadable records and sums are skipped and counted.
    """
    problems: dict[str, int] = {}
    decoded: list[JoinRecord] = []
    for raw in raw_records:
        try:
            decoded.append(decode_record(raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problems["unreadable_records"] = problems.get("unreadable_records", 0) + 1
            log.error("join record unreadable, skipped: %s", exc)
    decoded.sort(key=lambda r: r.seq)
    last_final = max((r.seq for r in decoded if r.final), default=0)
    records = [r for r in decoded if r.seq <= last_final]
    state, jlog = JoinState(config=config), JoinLog()
    if not records:
        state.counters.update(problems)
        return state, jlog, {}
    entries: dict[str, Entry] = {}
    cells: dict[CellKey, CellState] = {}
    units: dict[int, OpenUnit] = {}
    seen: dict[str, set[int]] = {}
    for record in records:
        _replay(record, entries, cells, jlog, problems, units, config.ttl_ms)
        for rollout_id in record.forgotten:  # earlier markers belong to a forgotten rollout
            seen.pop(rollout_id, None)
        for rollout_id, hashes in record.seen.items():
            seen.setdefault(rollout_id, set()).update(hashes)
    last = records[-1]
    jlog.seq = last.seq
    state.prediction_wm_ms, state.outcome_wm_ms = last.prediction_wm_ms, last.outcome_wm_ms
    state.expired_through_ms = last.expired_through_ms
    state.counters.update(last.counters)
    for name, count in problems.items():
        state.counters[name] += count
    state.restore(entries, cells, units, seen)
    for key in [key for key in jlog.cell_seq if key not in state.cells]:  # expired cells
        jlog.seq_cells.get(jlog.cell_seq.pop(key), set()).discard(key)
    return state, jlog, dict(last.offsets)


def _replay(record: JoinRecord, entries: dict[str, Entry], cells: dict[CellKey, CellState],
            log: JoinLog, problems: dict[str, int], units: dict[int, OpenUnit],
            ttl_ms: int) -> None:
    keys: list[CellKey] = []
    for wire in record.cells:
        key, cell = _cell_from_wire(wire, problems)  # type: ignore[arg-type]
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
        max_expiry = max(max_expiry, abs(expires_ms))
    for request_id, expires_ms, cell_index, uhash in record.unit_predictions:
        entries[request_id] = PendingPrediction(expires_ms, keys[cell_index], uhash)
        max_expiry = max(max_expiry, expires_ms)
    for request_id, x in record.covariates:  # after both kinds of waiting prediction
        pending = entries.get(request_id)
        if isinstance(pending, PendingPrediction):
            entries[request_id] = msgspec.structs.replace(pending, covariate=x)
    for uhash, cell_index, freeze_ms, error, lat_y, lat_m, lab_y, lab_m, val_y, val_m \
            in record.units:
        units[uhash] = OpenUnit(keys[cell_index], freeze_ms, error, lat_y, lat_m, lab_y, lab_m,
                                val_y, val_m)
        max_expiry = max(max_expiry, freeze_ms)
    for uhash, x in record.unit_covariates:
        units[uhash].x = x
    if record.forgotten:  # as JoinLog.write: the note lives as long as the markers it drops
        _, until = log.forget(record.forgotten)
        max_expiry = max(max_expiry, until)
    if record.seen:
        log.seq_seen[record.seq] = {r: np.asarray(h, dtype=np.int64)
                                    for r, h in record.seen.items()}
        max_expiry = max(max_expiry, record.expired_through_ms + ttl_ms)
    log.track(record.seq, max_expiry)
