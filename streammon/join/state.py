"""The stream-stream join of predictions and outcomes, as pure state.

``JoinState`` holds one source's (one partition's) view: requests waiting for their
other half, small tombstones of joined requests (to recognise duplicates), and the
cohort cells they feed. It takes decoded events and never touches Kafka, Faust or a
clock, so every rule below is unit-tested without a broker:

* either side may arrive first; the first arrival waits in ``pending``;
* requests are identified by (rollout, request id): two rollouts that happen to share
  request ids never meet; a second prediction or outcome for the same request of the same
  rollout is dropped and counted;
* a prediction's own metrics (latency, error, score) count when it arrives; its
  outcome's metrics count when the two meet, in the prediction's window (a late
  outcome re-opens that window's cumulative summary);
* a prediction whose window closed (window end + ``grace_ms`` at or before the
  partition's prediction watermark) is dropped and counted as late;
* everything pending expires ``ttl_ms`` of *event time* after it first arrived: a
  prediction without an outcome is counted as expired (unlabelled) in its cell, an
  outcome without a prediction as an orphan. Joined tombstones expire the same way.
  Event time for expiry is the lower of the two inputs' watermarks, so a fast
  predictions stream cannot expire predictions whose outcomes are merely queued;
* cells are bounded: a cell is dropped once the expiry clock passes the end of its window
  plus ``cell_retention_ms`` (no event can change it any more: the retention is at least
  ``ttl_ms + grace_ms``), and a rollout is forgotten with its last cell (so a quiet
  rollout is gone a retention after its last window); a prediction that would open
  a rollout beyond ``max_rollouts``, or a segment beyond ``max_segments`` of its
  rollout, is rejected with the reason (the caller dead-letters it).

Units (DESIGN rule 10): a prediction with a ``unit_id`` belongs to that unit, a prediction
without one is its own unit. Events are partitioned by unit (``events.partition_key``), so
one partition sees all of a unit's requests:

* a unit enters the comparison once, at its first exposure in the rollout: the cell
  (window, segment, arm) of its first prediction. Its other predictions in that cell are
  aggregated with it (:mod:`streammon.join.cells`: ratio metrics per unit, error as the
  unit's indicator), with their outcomes;
* its predictions in any other cell - a later window, or the other arm after the canary
  fraction grew - are excluded from the comparison and counted (``unit_repeat_requests``);
  their outcomes are counted as ``excluded_outcomes``, never as orphans;
* while its first-exposure cell can still change (until the last of its predictions
  there joined or expired: ``ttl_ms`` after it) the unit keeps a small open state, its
  running (y_u, m_u) per metric; then it is *frozen* to a 64-bit hash in its rollout's
  ``seen`` set, which excludes its later requests for as long as the partition keeps the
  rollout (a rollout is forgotten a cell retention after its last window).

Entries are compact: a waiting prediction is (expiry, cell, unit hash), a waiting outcome
(expiry, label, value), a joined tombstone just its expiry (an ``int``); an excluded
prediction's tombstone is its expiry negated (its outcome is counted, not joined).
:meth:`JoinState.take_changes` reports what to persist (see :mod:`streammon.join.changelog`).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import msgspec

from streammon.errors import ConfigError
from streammon.events import CellKey, Outcome, Prediction
from streammon.join.cells import CellState, OpenUnit, add_outcome_sums
from streammon.join.units import SeenSet, unit_hash

KEY_SEPARATOR = "\x00"
"""Between rollout id and request id in a join key (the edge rejects ids that hold it)."""


def join_key(rollout_id: str, request_id: str) -> str:
    """Return the key the join matches a prediction and its outcome by."""
    return rollout_id + KEY_SEPARATOR + request_id


class PendingPrediction(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A prediction waiting for its outcome: when it expires, the cell it feeds, its unit.

    ``unit`` is the unit's hash (:func:`unit_hash`), or 0 when the request is its own unit.
    """

    expires_at_ms: int
    cell: CellKey
    unit: int = 0
    covariate: float | None = None
    """The prediction's pre-exposure covariate, added with its outcome (CUPED sums)."""


class PendingOutcome(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """An outcome waiting for its prediction."""

    expires_at_ms: int
    label: float | None
    value: float | None


Entry = PendingPrediction | PendingOutcome | int
"""What the join remembers per request id; an ``int`` is a joined tombstone's expiry, or
(negative) an excluded prediction's: a repeat request of a unit, whose outcome is counted."""


def expiry_of(entry: Entry) -> int:
    """Return the event time (ms) at which an entry expires."""
    return abs(entry) if isinstance(entry, int) else entry.expires_at_ms


DUE_SHIFT = 22
SLOT_MASK = (1 << DUE_SHIFT) - 1


class ExpiryQueue:
    """Request keys by the event time (ms) they expire at.

    A heap of ints ``due_ms << 22 | n`` (``n`` tells apart keys due at the same time) and
    a dict from those ints to the keys: nothing the garbage collector has to walk, unlike
    a heap of (due, key) tuples or a list per due time, and ints compare fast. A key is
    pushed once, when it starts waiting, and may be stale by the time it is due (gone,
    or waiting longer): the caller checks it against ``pending``.
    """

    __slots__ = ("_n", "heap", "keys")

    def __init__(self) -> None:
        self.heap: list[int] = []
        self.keys: dict[int, str] = {}
        self._n = 0

    def push(self, due_ms: int, key: str) -> None:
        """Remember that ``key`` expires at ``due_ms``."""
        keys = self.keys
        code = due_ms << DUE_SHIFT | (self._n & SLOT_MASK)
        while code in keys:  # 4M keys due at the same millisecond: find a free slot
            self._n += 1
            code = due_ms << DUE_SHIFT | (self._n & SLOT_MASK)
        self._n += 1
        keys[code] = key
        heapq.heappush(self.heap, code)

    def pop_due(self, now_ms: int) -> Iterator[tuple[int, str]]:
        """Yield (due time, key) of every key due at or before ``now_ms``, oldest first."""
        heap, keys = self.heap, self.keys
        limit = (now_ms + 1) << DUE_SHIFT
        while heap and heap[0] < limit:
            code = heapq.heappop(heap)
            yield code >> DUE_SHIFT, keys.pop(code)

    def __len__(self) -> int:
        return len(self.heap)


@dataclass(frozen=True, kw_only=True)
class JoinConfig:
    """Join timing and cardinality caps, checked on creation.

    Window width, how long a half waits, how late a prediction may be, how long a quiet
    rollout's cells are kept, how many rollouts and segments per rollout a partition holds.
    """

    window_ms: int = 10_000
    ttl_ms: int = 3_600_000
    grace_ms: int = 60_000
    cell_retention_ms: int | None = None
    """A cell is kept this long after its window ends; None means ``ttl_ms + grace_ms``."""
    max_rollouts: int = 256
    max_segments: int = 1_000

    def __post_init__(self) -> None:
        for name, flag, minimum in (("window_ms", "--window-ms", 1), ("ttl_ms", "--ttl-ms", 1),
                                    ("grace_ms", "--grace-ms", 0),
                                    ("max_rollouts", "--max-rollouts", 1),
                                    ("max_segments", "--max-segments", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ConfigError(f"{name}={value!r} (flag {flag}) must be an integer >= "
                                  f"{minimum}")
        if self.cell_retention_ms is not None and self.cell_retention_ms < self.ttl_ms \
                + self.grace_ms:
            raise ConfigError(f"cell_retention_ms={self.cell_retention_ms} (flag "
                              f"--cell-retention-ms) must be at least ttl_ms + grace_ms = "
                              f"{self.ttl_ms + self.grace_ms}: an outcome may still join a cell "
                              "that long after its window")

    @property
    def retention_ms(self) -> int:
        """Return how long after its window ends a cell is kept."""
        if self.cell_retention_ms is None:
            return self.ttl_ms + self.grace_ms
        return self.cell_retention_ms

    def check_rollout_window(self, rollout_window_ms: int) -> None:
        """Raise ConfigError unless a rollout's decision window is a multiple of the join's."""
        check_rollout_window(rollout_window_ms, self.window_ms)


def check_rollout_window(rollout_window_ms: int, join_window_ms: int) -> None:
    """Raise ConfigError unless a rollout's decision window is a multiple of the join's."""
    if join_window_ms <= 0 or rollout_window_ms <= 0 or rollout_window_ms % join_window_ms:
        raise ConfigError(f"rollout window_ms={rollout_window_ms} must be a positive "
                          f"multiple of the join's --window-ms={join_window_ms}, or its "
                          "windows would mix cells of neighbouring decision windows; "
                          "restart the rollout with a multiple")


@dataclass
class JoinChanges:
    """What changed since the last take_changes: entries written, cells touched."""

    entries: dict[str, Entry] = field(default_factory=dict)
    cells: set[CellKey] = field(default_factory=set)
    max_expiry_ms: int = -1
    dropped_cells: dict[CellKey, CellState] = field(default_factory=dict)
    """Cells dropped after their retention, with their final value (send it before the
    record that drops them)."""
    units: set[int] = field(default_factory=set)
    """Open units (hashes) whose state changed."""
    frozen: list[tuple[str, int]] = field(default_factory=list)
    """(rollout, unit hash) of units frozen to a seen marker."""
    forgotten: set[str] = field(default_factory=set)
    """Rollouts forgotten with their last cell: their seen markers died with them."""


@dataclass
class RolloutCells:
    """A rollout's live cells: per window start, its cells; per segment, how many."""

    windows: dict[int, list[CellKey]] = field(default_factory=dict)
    segments: Counter[str] = field(default_factory=Counter)
    seen: SeenSet = field(default_factory=SeenSet)
    """Hashes of the rollout's frozen units: their later requests are excluded."""

    def add(self, key: CellKey) -> bool:
        """Track a live cell; return True if it opens a new window."""
        self.segments[key[2]] += 1
        cells = self.windows.get(key[1])
        if cells is None:
            self.windows[key[1]] = [key]
            return True
        cells.append(key)
        return False


Rejected = tuple[int, str]
"""(index of the event in the call's input, reason) of an event the join refuses."""


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
        self.rollouts: dict[str, RolloutCells] = {}
        self.units: dict[int, OpenUnit] = {}
        """Open units by hash: their first-exposure cell may still change."""
        self._changes = JoinChanges()
        self._expiry = ExpiryQueue()
        self._freeze: list[int] = []
        self._freeze_due: dict[int, list[int]] = {}
        """Per freeze time (a window's end + ttl_ms), the units that freeze then."""
        self._cells_by_end: list[tuple[int, str, int]] = []

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

    def add_predictions(self, preds: Iterable[Prediction]) -> list[Rejected]:
        """Take predictions in order (the same as add_prediction in a loop, faster).

        Return the predictions refused by a cardinality cap, with the reason.
        """
        config = self.config
        window_ms, ttl_ms = config.window_ms, config.ttl_ms
        closes_after_ms = window_ms + config.grace_ms
        pending, cells, units = self.pending, self.cells, self.units
        pending_get, cells_get = pending.get, cells.get
        changes = self._changes
        changed_cells, changed_entries = changes.cells, changes.entries
        push = self._expiry.push
        rejected: list[Rejected] = []
        seen = late = duplicate = 0
        wm_ms = self.prediction_wm_ms
        try:
            for index, pred in enumerate(preds):
                seen += 1
                ts_ms = pred.ts_ms
                start_ms = ts_ms - ts_ms % window_ms
                if start_ms + closes_after_ms <= wm_ms:
                    late += 1
                    continue
                if ts_ms > wm_ms:
                    wm_ms = ts_ms
                rollout_id = pred.rollout_id
                jkey = rollout_id + KEY_SEPARATOR + pred.request_id
                entry = pending_get(jkey)
                if entry is not None and entry.__class__ is not PendingOutcome:
                    duplicate += 1
                    continue
                key: CellKey = (rollout_id, start_ms, pred.segment, pred.arm)
                unit: OpenUnit | None = None
                uhash = 0
                if pred.unit_id and not pred.shadow:
                    uhash = unit_hash(rollout_id, pred.unit_id)
                    unit = units.get(uhash)
                    if (unit is not None and unit.cell != key) or (
                            unit is None and self._seen(rollout_id, uhash)):
                        self._exclude(jkey, entry, ts_ms + ttl_ms)
                        continue
                cell = cells_get(key)
                if cell is None:
                    reason = self._admit(key)
                    if reason:
                        self.counters["capped_predictions"] += 1
                        rejected.append((index, reason))
                        continue
                    cell = cells[key] = CellState()
                changed_cells.add(key)
                if uhash:
                    unit = self._enter(uhash, unit, key, pred.covariate)
                    cell.add_unit_prediction(pred, unit)
                else:
                    cell.add_prediction(pred)
                expires_ms = ts_ms + ttl_ms
                if entry is not None:  # its outcome waits (a PendingOutcome)
                    self._join(jkey, cell, entry.label, entry.value,
                               entry.expires_at_ms, uhash, pred.covariate)
                    continue
                if pred.shadow:  # mirrored, never served: no outcome will come; a tombstone
                    self.counters["shadow_predictions"] += 1
                    new: Entry = expires_ms
                else:
                    new = PendingPrediction(expires_ms, key, uhash, pred.covariate)
                pending[jkey] = changed_entries[jkey] = new
                if expires_ms > changes.max_expiry_ms:
                    changes.max_expiry_ms = expires_ms
                push(expires_ms, jkey)
        finally:
            self.prediction_wm_ms = wm_ms
            counters = self.counters
            counters["predictions"] += seen
            if late:
                counters["late_predictions"] += late
            if duplicate:
                counters["duplicate_predictions"] += duplicate
        return rejected

    def _seen(self, rollout_id: str, uhash: int) -> bool:
        rollout = self.rollouts.get(rollout_id)
        return rollout is not None and uhash in rollout.seen

    def _enter(self, uhash: int, unit: OpenUnit | None, key: CellKey,
               covariate: float | None = None) -> OpenUnit:
        """Return the unit's open state (new at its first exposure: its covariate is x_u).

        It freezes when every prediction of its first-exposure window has expired: at
        the window's end plus ``ttl_ms``.
        """
        self._changes.units.add(uhash)
        if unit is not None:
            return unit
        freeze_ms = key[1] + self.config.window_ms + self.config.ttl_ms
        unit = self.units[uhash] = OpenUnit(key, freeze_ms, x=covariate)
        self._due(freeze_ms).append(uhash)
        return unit

    def _due(self, freeze_ms: int) -> list[int]:
        due = self._freeze_due.get(freeze_ms)
        if due is None:
            due = self._freeze_due[freeze_ms] = []
            heapq.heappush(self._freeze, freeze_ms)
        return due

    def _exclude(self, jkey: str, entry: Entry | None, expires_ms: int) -> None:
        """Leave a unit's request outside its first-exposure cell out, and count it."""
        self.counters["unit_repeat_requests"] += 1
        if isinstance(entry, PendingOutcome):  # its outcome came first
            self.counters["excluded_outcomes"] += 1
            self._put(jkey, entry.expires_at_ms, entry.expires_at_ms, new=False)
        else:
            self._put(jkey, -expires_ms, expires_ms, new=True)

    def _admit(self, key: CellKey) -> str:
        """Track a new cell's rollout and segment; return why it is refused ('' if not)."""
        rollout_id, start_ms, segment, _ = key
        rollout = self.rollouts.get(rollout_id)
        if rollout is None:
            if len(self.rollouts) >= self.config.max_rollouts:
                return (f"rollout {rollout_id!r} would be rollout number "
                        f"{len(self.rollouts) + 1} in this partition's join; the cap is "
                        f"max_rollouts={self.config.max_rollouts} (--max-rollouts)")
            rollout = self.rollouts[rollout_id] = RolloutCells()
        if segment not in rollout.segments and len(rollout.segments) >= self.config.max_segments:
            if not rollout.windows:
                del self.rollouts[rollout_id]
            return (f"segment {segment!r} would be segment number "
                    f"{len(rollout.segments) + 1} of rollout {rollout_id!r}; the cap is "
                    f"max_segments={self.config.max_segments} (--max-segments)")
        if rollout.add(key):
            heapq.heappush(self._cells_by_end,
                           (start_ms + self.config.window_ms, rollout_id, start_ms))
        return ""

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Take outcomes in order (the same as add_outcome in a loop, faster)."""
        ttl_ms = self.config.ttl_ms
        pending, counters = self.pending, self.counters
        pending_get = pending.get
        changes = self._changes
        changed_entries = changes.entries
        push = self._expiry.push
        seen = joined = 0
        try:
            for outcome in outcomes:
                seen += 1
                ts_ms = outcome.ts_ms
                if ts_ms > self.outcome_wm_ms:
                    self.outcome_wm_ms = ts_ms
                jkey = outcome.rollout_id + KEY_SEPARATOR + outcome.request_id
                entry = pending_get(jkey)
                if entry is None:
                    expires_ms = ts_ms + ttl_ms
                    pending[jkey] = changed_entries[jkey] = PendingOutcome(
                        expires_ms, outcome.label, outcome.value)
                    if expires_ms > changes.max_expiry_ms:
                        changes.max_expiry_ms = expires_ms
                    push(expires_ms, jkey)
                elif entry.__class__ is not PendingPrediction:
                    if entry.__class__ is int and entry < 0:
                        counters["excluded_outcomes"] += 1  # a unit's excluded repeat
                        self._put(jkey, -entry, -entry, new=False)
                    else:
                        counters["duplicate_outcomes"] += 1
                elif entry.unit or entry.covariate is not None:
                    self._join(jkey, self._cell(entry.cell),
                               outcome.label, outcome.value,
                               entry.expires_at_ms, entry.unit,
                               entry.covariate)
                else:  # _join's request path, inlined (the common case)
                    joined += 1
                    add_outcome_sums(self._cell(entry.cell).sums, outcome.label,
                                     outcome.value)
                    expires_ms = entry.expires_at_ms
                    pending[jkey] = changed_entries[jkey] = expires_ms
                    if expires_ms > changes.max_expiry_ms:
                        changes.max_expiry_ms = expires_ms
        finally:
            counters["outcomes"] += seen
            if joined:
                counters["joined"] += joined

    def expire(self, now_ms: int | None = None) -> int:
        """Expire everything whose TTL passed by event time ``now_ms``; return how many."""
        now = self.watermark_ms if now_ms is None else now_ms
        pending = self.pending
        expired = expired_predictions = orphans = 0
        for due_ms, request_id in self._expiry.pop_due(now):
            entry = pending.get(request_id)
            if entry is None or expiry_of(entry) != due_ms:
                continue  # stale: the request is gone, or it waits longer
            if entry.__class__ is PendingPrediction:
                expired_predictions += 1
                self._cell(entry.cell).expired += 1
            elif entry.__class__ is PendingOutcome:
                orphans += 1
            del pending[request_id]
            expired += 1
        if expired_predictions:
            self.counters["expired_predictions"] += expired_predictions
        if orphans:
            self.counters["orphan_outcomes"] += orphans
        self.expired_through_ms = max(self.expired_through_ms, now)
        self._freeze_units(now)
        self._expire_cells(now)
        return expired

    def _freeze_units(self, now_ms: int) -> None:
        """Reduce every unit whose predictions all joined or expired to a seen marker."""
        heap, units, changed = self._freeze, self.units, self._changes.units
        while heap and heap[0] <= now_ms:
            for uhash in self._freeze_due.pop(heapq.heappop(heap)):
                unit = units.pop(uhash, None)
                if unit is None:
                    continue
                changed.discard(uhash)
                rollout = self.rollouts.get(unit.cell[0])
                if rollout is not None:
                    rollout.seen.add(uhash)
                    self._changes.frozen.append((unit.cell[0], uhash))
                self.counters["units_frozen"] += 1

    def _expire_cells(self, now_ms: int) -> None:
        """Drop every cell whose window ended a retention before ``now_ms``.

        No event can change such a cell any more; a rollout is forgotten with its last cell.
        """
        retention_ms = self.config.retention_ms
        heap = self._cells_by_end
        dropped = self._changes.dropped_cells
        count = 0
        while heap and heap[0][0] + retention_ms <= now_ms:
            _, rollout_id, start_ms = heapq.heappop(heap)
            rollout = self.rollouts.get(rollout_id)
            keys = rollout.windows.pop(start_ms, None) if rollout is not None else None
            if rollout is None or keys is None:
                continue
            for key in keys:
                dropped[key] = self.cells.pop(key)
                self._changes.cells.discard(key)
                rollout.segments[key[2]] -= 1
                if not rollout.segments[key[2]]:
                    del rollout.segments[key[2]]
            count += len(keys)
            if not rollout.windows:
                del self.rollouts[rollout_id]
                self._forget(rollout_id)
        if count:
            self.counters["cells_dropped"] += count

    def _forget(self, rollout_id: str) -> None:
        """Report a forgotten rollout: its seen markers are not to be persisted any more."""
        changes = self._changes
        changes.forgotten.add(rollout_id)
        if changes.frozen:
            changes.frozen = [(r, u) for r, u in changes.frozen if r != rollout_id]

    @property
    def changed_entries(self) -> int:
        """Return how many request ids changed since the last take_changes."""
        return len(self._changes.entries)

    def take_changes(self) -> JoinChanges:
        """Return and reset what changed since the last call (for persistence and sending)."""
        changes, self._changes = self._changes, JoinChanges()
        return changes

    def restore(self, entries: dict[str, Entry], cells: dict[CellKey, CellState],
                units: dict[int, OpenUnit] | None = None,
                seen: Mapping[str, Iterable[int]] | None = None) -> None:
        """Load recovered entries, cells, open units and seen markers; drop what expired.

        Entries and cells already expired were expired, counted and sent before the crash;
        an old record may still hold them. An open unit past its freeze time froze before
        the crash: a later record holds its seen marker unless its rollout was forgotten since
        (then an old record's open state must not bring the marker back).
        """
        window_ms, retention_ms = self.config.window_ms, self.config.retention_ms
        cells = {key: cell for key, cell in cells.items()
                 if key[1] + window_ms + retention_ms > self.expired_through_ms}
        self.cells.update(cells)
        for key in sorted(cells):
            if self.rollouts.setdefault(key[0], RolloutCells()).add(key):
                self._cells_by_end.append((key[1] + window_ms, key[0], key[1]))
        heapq.heapify(self._cells_by_end)
        for request_id, entry in entries.items():
            if expiry_of(entry) > self.expired_through_ms:
                self.pending[request_id] = entry
                self._expiry.push(expiry_of(entry), request_id)
        for rollout_id, hashes in (seen or {}).items():
            rollout = self.rollouts.get(rollout_id)
            if rollout is not None:
                rollout.seen.update(hashes)
        for uhash, unit in (units or {}).items():
            rollout = self.rollouts.get(unit.cell[0])
            if rollout is None or uhash in rollout.seen:
                continue
            if unit.freeze_ms <= self.expired_through_ms:
                continue  # froze before the crash: its marker is in ``seen`` if still kept
            self.units[uhash] = unit
            self._due(unit.freeze_ms).append(uhash)

    def _join(self, request_id: str, cell: CellState, label: float | None,
              value: float | None, expires_at_ms: int, uhash: int = 0,
              covariate: float | None = None) -> None:
        self.counters["joined"] += 1
        unit = self.units.get(uhash) if uhash else None
        if unit is None:
            if uhash:  # cannot happen: a unit stays open while its predictions wait
                self.counters["unit_state_missing"] += 1
            add_outcome_sums(cell.sums, label, value)
        else:
            self._changes.units.add(uhash)
            x = unit.x  # CUPED sums per unit, by its first request's covariate
            if label is not None:
                if x is not None:
                    cell.add_unit_covariate("label", label, unit.label_y, unit.label_m, x)
                cell.add_unit(cell.sums, "label", label, unit.label_y, unit.label_m)
                unit.label_y += label
                unit.label_m += 1
            if value is not None:
                if x is not None:
                    cell.add_unit_covariate("value", value, unit.value_y, unit.value_m, x)
                cell.add_unit(cell.sums, "value", value, unit.value_y, unit.value_m)
                unit.value_y += value
                unit.value_m += 1
        if covariate is not None and unit is None:  # CUPED sums of a request-unit
            cell.add_covariate(label, value, covariate)
        self._put(request_id, expires_at_ms, expires_at_ms, new=False)

    def _put(self, request_id: str, entry: Entry, expires_ms: int, *, new: bool) -> None:
        self.pending[request_id] = entry
        changes = self._changes
        changes.entries[request_id] = entry
        if expires_ms > changes.max_expiry_ms:
            changes.max_expiry_ms = expires_ms
        if new:  # a joined request keeps its expiry, so its queue entry stays valid
            self._expiry.push(expires_ms, request_id)

    def _cell(self, key: CellKey) -> CellState:
        cell = self.cells.get(key)
        if cell is None:  # only a waiting prediction's own cell: retention outlives the TTL
            cell = self.cells[key] = CellState()
        self._changes.cells.add(key)
        return cell
