"""The stream-stream join of predictions and outcomes, as pure state.

``JoinState`` holds one source's (one partition's) view: requests waiting for their
other half, tombstones of joined requests (to recognise duplicates), and the cohort
cells they feed. It takes decoded events and the current event time and never touches
Kafka, Faust or a clock, so every rule below is unit-tested without a broker:

* either side may arrive first; the first arrival waits in ``pending``;
* a second prediction or outcome for the same request id is dropped and counted;
* a prediction's own metrics (latency, error, score) count when it arrives; its
  outcome's metrics count when the two meet, in the prediction's window (a late
  outcome re-opens that window's cumulative summary);
* everything pending expires ``ttl_ms`` of *event time* after it first arrived: a
  prediction without an outcome is counted as expired (unlabelled) in its cell, an
  outcome without a prediction as an orphan. Joined tombstones expire the same way.

The Faust shell persists what :meth:`JoinState.take_changes` reports.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import msgspec

from streammon.cohorts import CellKey, CellState, cell_key
from streammon.events import Outcome, Prediction


class PendingRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the join remembers about one request id until it expires."""

    expires_at_ms: int
    prediction: Prediction | None = None
    outcome: Outcome | None = None
    joined: bool = False


@dataclass(frozen=True, kw_only=True)
class JoinConfig:
    """Join timing: the base window width and how long a half waits for the other."""

    window_ms: int = 10_000
    ttl_ms: int = 3_600_000


@dataclass
class JoinChanges:
    """What changed since the last call to take_changes: keys to persist or delete."""

    pending_set: dict[str, PendingRecord] = field(default_factory=dict)
    pending_deleted: set[str] = field(default_factory=set)
    cells: set[CellKey] = field(default_factory=set)


class JoinState:
    """One source's join state; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        config: JoinConfig,
        pending: MutableMapping[str, PendingRecord] | None = None,
        cells: MutableMapping[CellKey, CellState] | None = None,
        watermark_ms: int = 0,
    ) -> None:
        self.config = config
        self.pending: MutableMapping[str, PendingRecord] = {} if pending is None else pending
        self.cells: MutableMapping[CellKey, CellState] = {} if cells is None else cells
        self.watermark_ms = watermark_ms
        self.counters: Counter[str] = Counter()
        self._changes = JoinChanges()
        self._expiry: list[tuple[int, str]] = [(r.expires_at_ms, k) for k, r in self.pending.items()]
        heapq.heapify(self._expiry)

    def add_prediction(self, pred: Prediction) -> None:
        """Take one prediction: wait for its outcome, or join with a waiting one."""
        self.counters["predictions"] += 1
        self._advance(pred.ts_ms)
        record = self.pending.get(pred.request_id)
        if record is not None and (record.joined or record.prediction is not None):
            self.counters["duplicate_predictions"] += 1
            return
        cell = self._cell(cell_key(pred, self.config.window_ms))
        cell.add_prediction(pred)
        if record is not None and record.outcome is not None:
            self._join(pred, record.outcome, record.expires_at_ms)
            return
        self._put(pred.request_id, PendingRecord(expires_at_ms=self._expiry_of(pred.ts_ms),
                                                 prediction=pred))

    def add_outcome(self, outcome: Outcome) -> None:
        """Take one outcome: join with its waiting prediction, or wait for it."""
        self.counters["outcomes"] += 1
        self._advance(outcome.ts_ms)
        record = self.pending.get(outcome.request_id)
        if record is not None and (record.joined or record.outcome is not None):
            self.counters["duplicate_outcomes"] += 1
            return
        if record is not None and record.prediction is not None:
            self._join(record.prediction, outcome, record.expires_at_ms)
            return
        self._put(outcome.request_id, PendingRecord(expires_at_ms=self._expiry_of(outcome.ts_ms),
                                                    outcome=outcome))

    def expire(self, now_ms: int | None = None) -> int:
        """Expire everything whose TTL passed by event time ``now_ms``; return how many."""
        now = self.watermark_ms if now_ms is None else now_ms
        expired = 0
        while self._expiry and self._expiry[0][0] <= now:
            due_ms, request_id = heapq.heappop(self._expiry)
            record = self.pending.get(request_id)
            if record is None or record.expires_at_ms != due_ms:
                continue  # stale heap entry: the record changed or is gone
            self._expire_one(request_id, record)
            expired += 1
        return expired

    def take_changes(self) -> JoinChanges:
        """Return and reset what changed since the last call (for persistence and sending)."""
        changes, self._changes = self._changes, JoinChanges()
        return changes

    def _join(self, pred: Prediction, outcome: Outcome, expires_at_ms: int) -> None:
        self.counters["joined"] += 1
        self._cell(cell_key(pred, self.config.window_ms)).add_outcome(outcome)
        self._put(pred.request_id, PendingRecord(expires_at_ms=expires_at_ms, joined=True))

    def _expire_one(self, request_id: str, record: PendingRecord) -> None:
        if record.prediction is not None:
            self.counters["expired_predictions"] += 1
            self._cell(cell_key(record.prediction, self.config.window_ms)).expired += 1
        elif record.outcome is not None:
            self.counters["orphan_outcomes"] += 1
        del self.pending[request_id]
        self._changes.pending_set.pop(request_id, None)
        self._changes.pending_deleted.add(request_id)

    def _put(self, request_id: str, record: PendingRecord) -> None:
        old = self.pending.get(request_id)
        self.pending[request_id] = record
        self._changes.pending_set[request_id] = record
        self._changes.pending_deleted.discard(request_id)
        if old is None or old.expires_at_ms != record.expires_at_ms:
            heapq.heappush(self._expiry, (record.expires_at_ms, request_id))

    def _cell(self, key: CellKey) -> CellState:
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = CellState()
        self._changes.cells.add(key)
        return cell

    def _advance(self, ts_ms: int) -> None:
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms

    def _expiry_of(self, ts_ms: int) -> int:
        return ts_ms + self.config.ttl_ms
