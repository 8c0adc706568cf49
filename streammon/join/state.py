"""The stream-stream join of predictions and outcomes, as pure state.

``JoinState`` holds one source's (one partition's) view: requests waiting for their
other half, small tombstones of joined requests (to recognise duplicates), and the
cohort cells they feed. It takes decoded events and never touches Kafka, Faust or a
clock, so every rule below is unit-tested without a broker:

* either side may arrive first; the first arrival waits in ``pending``;
* a second prediction or outcome for the same request id is dropped and counted;
* a prediction's own metrics (latency, error, score) count when it arrives; its
  outcome's metrics count when the two meet, in the prediction's window (a late
  outcome re-opens that window's cumulative summary);
* a prediction whose window closed (window end + ``grace_ms`` at or before the
  partition's prediction watermark) is dropped and counted as late;
* everything pending expires ``ttl_ms`` of *event time* after it first arrived: a
  prediction without an outcome is counted as expired (unlabelled) in its cell, an
  outcome without a prediction as an orphan. Joined tombstones expire the same way.
  Event time for expiry is the lower of the two inputs' watermarks, so a fast
  predictions stream cannot expire predictions whose outcomes are merely queued.

Entries are compact: a waiting prediction is (expiry, cell), a waiting outcome
(expiry, label, value), a joined tombstone just its expiry (an ``int``).
:meth:`JoinState.take_changes` reports what to persist (see :mod:`streammon.join.changelog`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from streammon.events import Outcome, Prediction
from streammon.join.cells import CellKey, CellState


class PendingPrediction(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A prediction waiting for its outcome: when it expires and the cell it feeds."""

    expires_at_ms: int
    cell: CellKey


class PendingOutcome(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An outcome waiting for its prediction."""

    expires_at_ms: int
    label: float | None
    value: float | None


Entry = PendingPrediction | PendingOutcome | int
"""What the join remembers per request id; an ``int`` is a joined tombstone's expiry."""


def expiry_of(entry: Entry) -> int:
    """Return the event time (ms) at which an entry expires."""
    return entry if isinstance(entry, int) else entry.expires_at_ms


@dataclass(frozen=True, kw_only=True)
class JoinConfig:
    """Join timing: window width, how long a half waits, and how late a prediction may be."""

    window_ms: int = 10_000
    ttl_ms: int = 3_600_000
    grace_ms: int = 60_000


@dataclass
class JoinChanges:
    """What changed since the last take_changes: entries written, cells touched."""

    entries: dict[str, Entry] = field(default_factory=dict)
    cells: set[CellKey] = field(default_factory=set)
    max_expiry_ms: int = -1


class JoinState:
    """One source's join state; see the module docstring for the rules."""

    def __init__(self, *, config: JoinConfig) -> None:
        self.config = config
        self.pending: dict[str, Entry] = {}
        self.cells: dict[CellKey, CellState] = {}
        self.prediction_wm_ms = 0
        self.outcome_wm_ms = 0
        self.expired_through_ms = 0
        self.counters: Counter[str] = Counter()
        self._changes = JoinChanges()
        self._expiry: list[tuple[int, str]] = []

    @property
    def watermark_ms(self) -> int:
        """Event time as far as both inputs have reached (the expiry clock)."""
        return min(self.prediction_wm_ms, self.outcome_wm_ms)

    def add_prediction(self, pred: Prediction) -> None:
        """Take one prediction: wait for its outcome, or join with a waiting one."""
        self.add_predictions((pred,))

    def add_outcome(self, outcome: Outcome) -> None:
        """Take one outcome: join with its waiting prediction, or wait for it."""
        self.add_outcomes((outcome,))

    def add_predictions(self, preds: Iterable[Prediction]) -> None:
        """Take predictions in order (the same as add_prediction in a loop, faster)."""
        window_ms, ttl_ms = self.config.window_ms, self.config.ttl_ms
        closes_after_ms = window_ms + self.config.grace_ms
        pending_get, counters = self.pending.get, self.counters
        for pred in preds:
            counters["predictions"] += 1
            ts_ms = pred.ts_ms
            start_ms = ts_ms - ts_ms % window_ms
            if start_ms + closes_after_ms <= self.prediction_wm_ms:
                counters["late_predictions"] += 1
                continue
            if ts_ms > self.prediction_wm_ms:
                self.prediction_wm_ms = ts_ms
            entry = pending_get(pred.request_id)
            if entry is not None and not isinstance(entry, PendingOutcome):
                counters["duplicate_predictions"] += 1
                continue
            key: CellKey = (pred.rollout_id, start_ms, pred.segment, pred.arm)
            cell = self._cell(key)
            cell.add_prediction(pred)
            if isinstance(entry, PendingOutcome):
                self._join(pred.request_id, cell, entry.label, entry.value, entry.expires_at_ms)
            elif pred.shadow:  # mirrored, never served: no outcome will come; keep a tombstone
                counters["shadow_predictions"] += 1
                self._put(pred.request_id, ts_ms + ttl_ms, ts_ms + ttl_ms, new=True)
            else:
                self._put(pred.request_id, PendingPrediction(ts_ms + ttl_ms, key), ts_ms + ttl_ms,
                          new=True)

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Take outcomes in order (the same as add_outcome in a loop, faster)."""
        ttl_ms = self.config.ttl_ms
        pending_get, counters = self.pending.get, self.counters
        for outcome in outcomes:
            counters["outcomes"] += 1
            if outcome.ts_ms > self.outcome_wm_ms:
                self.outcome_wm_ms = outcome.ts_ms
            entry = pending_get(outcome.request_id)
            if entry is None:
                expires_ms = outcome.ts_ms + ttl_ms
                self._put(outcome.request_id, PendingOutcome(expires_ms, outcome.label,
                                                             outcome.value), expires_ms, new=True)
            elif isinstance(entry, PendingPrediction):
                self._join(outcome.request_id, self._cell(entry.cell), outcome.label,
                           outcome.value, entry.expires_at_ms)
            else:
                counters["duplicate_outcomes"] += 1

    def expire(self, now_ms: int | None = None) -> int:
        """Expire everything whose TTL passed by event time ``now_ms``; return how many."""
        now = self.watermark_ms if now_ms is None else now_ms
        expired = 0
        while self._expiry and self._expiry[0][0] <= now:
            due_ms, request_id = heapq.heappop(self._expiry)
            entry = self.pending.get(request_id)
            if entry is None or (entry if entry.__class__ is int
                                 else entry.expires_at_ms) != due_ms:  # type: ignore[union-attr]
                continue  # stale heap entry: the request is gone or waits longer
            self._expire_one(request_id, entry)
            expired += 1
        self.expired_through_ms = max(self.expired_through_ms, now)
        return expired

    @property
    def changed_entries(self) -> int:
        """Return how many request ids changed since the last take_changes."""
        return len(self._changes.entries)

    def take_changes(self) -> JoinChanges:
        """Return and reset what changed since the last call (for persistence and sending)."""
        changes, self._changes = self._changes, JoinChanges()
        return changes

    def restore(self, entries: dict[str, Entry], cells: dict[CellKey, CellState]) -> None:
        """Load recovered entries and cells; drop entries already expired (not recounted)."""
        self.cells.update(cells)
        for request_id, entry in entries.items():
            if expiry_of(entry) > self.expired_through_ms:
                self.pending[request_id] = entry
                self._expiry.append((expiry_of(entry), request_id))
        heapq.heapify(self._expiry)

    def _join(self, request_id: str, cell: CellState, label: float | None,
              value: float | None, expires_at_ms: int) -> None:
        self.counters["joined"] += 1
        if label is not None:
            cell.add("label", label)
        if value is not None:
            cell.add("value", value)
        self._put(request_id, expires_at_ms, expires_at_ms, new=False)

    def _expire_one(self, request_id: str, entry: Entry) -> None:
        if isinstance(entry, PendingPrediction):
            self.counters["expired_predictions"] += 1
            self._cell(entry.cell).expired += 1
        elif isinstance(entry, PendingOutcome):
            self.counters["orphan_outcomes"] += 1
        del self.pending[request_id]

    def _put(self, request_id: str, entry: Entry, expires_ms: int, *, new: bool) -> None:
        self.pending[request_id] = entry
        changes = self._changes
        changes.entries[request_id] = entry
        if expires_ms > changes.max_expiry_ms:
            changes.max_expiry_ms = expires_ms
        if new:  # a joined request keeps its expiry, so its heap entry stays valid
            heapq.heappush(self._expiry, (expires_ms, request_id))

    def _cell(self, key: CellKey) -> CellState:
        cell = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = CellState()
        self._changes.cells.add(key)
        return cell
