"""Hypothesis: a join that crashes anywhere and recovers from its records ends exactly
as one that never crashed."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streammon.events import CellKey, Outcome, Prediction
from streammon.join.cells import CellState
from streammon.join.changelog import restore
from streammon.join.state import JoinConfig

CONFIG = JoinConfig(window_ms=1_000, ttl_ms=4_000, grace_ms=2_000)
Message = tuple[str, int, Prediction | Outcome]  # (role, offset, event)


@st.composite
def streams(draw: st.DrawFn) -> list[Message]:
    n = draw(st.integers(1, 60))
    out: list[Message] = []
    offsets = {"predictions": 0, "outcomes": 0}
    for _ in range(n):
        rid = f"r{draw(st.integers(0, 12))}"
        ts_ms = draw(st.integers(0, 20_000))
        if draw(st.booleans()):
            event: Prediction | Outcome = Prediction(
                request_id=rid, rollout_id="x", model_version="m", ts_ms=ts_ms,
                arm=draw(st.sampled_from(["baseline", "canary"])), latency_ms=ts_ms % 7 / 4,
                score=draw(st.sampled_from([None, 0.25, 1.0])))
            role = "predictions"
        else:
            event = Outcome(request_id=rid, rollout_id="x", ts_ms=ts_ms,
                            label=draw(st.sampled_from([0.0, 1.0])), value=ts_ms % 5 / 4)
            role = "outcomes"
        out.append((role, offsets[role], event))
        offsets[role] += 1
    return out


class Worker:
    """The agent's loop without Faust: apply a batch, skip what was applied, persist."""

    def __init__(self, store: dict[int, bytes]) -> None:
        self.store = store
        self.state, self.log, self.offsets = restore(store.values(), CONFIG)

    def batch(self, messages: list[Message], *, persist: bool | int = True) -> None:
        """Apply a batch; ``persist`` False writes no record, an int only that many parts."""
        touched = False
        for role, offset, event in messages:
            if offset < self.offsets.get(role, 0):
                continue
            touched = True
            if isinstance(event, Prediction):
                self.state.add_prediction(event)
            else:
                self.state.add_outcome(event)
            self.offsets[role] = offset + 1
        if touched and persist:
            self.state.expire()
            records, dead = self.log.write(self.state, self.state.take_changes(),
                                           self.offsets)
            kept = len(records) if persist is True else int(persist)
            self.store.update(records[:kept])
            if kept == len(records):  # tombstones go after the last part
                for d in dead:
                    self.store.pop(d, None)


def split(messages: list[Message], cuts: list[int]) -> list[list[Message]]:
    bounds = sorted({0, len(messages), *(c % (len(messages) + 1) for c in cuts)})
    return [messages[a:b] for a, b in itertools.pairwise(bounds)]


def run(batches: list[list[Message]]) -> dict[CellKey, CellState]:
    worker = Worker({})
    for b in batches:
        worker.batch(b)
    return worker.state.cells


@settings(max_examples=300, deadline=None)
@given(streams(), st.lists(st.integers(0, 60), max_size=8), st.integers(0, 8),
       st.integers(0, 8), st.booleans())
def test_crash_and_replay_end_as_undisturbed(messages: list[Message], cuts: list[int],
                                             crash_at: int, committed: int,
                                             persisted_before_crash: bool) -> None:
    """Crashing in batch k (its record written or not), restarting from the records and
    replaying from any earlier committed batch gives the same cells as no crash."""
    crash_and_replay(messages, cuts, crash_at, committed, persisted_before_crash)


def crash_and_replay(messages: list[Message], cuts: list[int], crash_at: int, committed: int,
                     persist: bool | int) -> None:
    """Crash in batch ``crash_at`` (writing ``persist`` of its record), restart from the
    records, replay from batch ``committed``; assert the cells and counters of no crash."""
    batches = split(messages, cuts)
    want = run(batches)
    crash_at %= len(batches)
    committed = min(committed, crash_at)
    store: dict[int, bytes] = {}
    first = Worker(store)
    for b in batches[:crash_at]:
        first.batch(b)
    first.batch(batches[crash_at], persist=persist)
    second = Worker(store)
    for b in batches[committed:]:
        second.batch(b)
    assert second.state.cells == want
    assert second.state.counters == counters_of(batches)


def counters_of(batches: list[list[Message]]) -> Any:
    worker = Worker({})
    for b in batches:
        worker.batch(b)
    return worker.state.counters


@settings(max_examples=100, deadline=None)
@given(streams(), st.lists(st.integers(0, 60), max_size=8))
def test_records_alive_hold_the_whole_state(messages: list[Message], cuts: list[int]) -> None:
    """Restoring from the surviving records alone (old ones deleted) rebuilds the live
    state: same cells, same waiting entries, same offsets."""
    store: dict[int, bytes] = {}
    worker = Worker(store)
    for b in split(messages, cuts):
        worker.batch(b)
    again = Worker(store)
    assert again.state.cells == worker.state.cells
    assert again.state.pending == worker.state.pending
    assert again.offsets == worker.offsets


@settings(max_examples=150, deadline=None)
@given(streams(), st.lists(st.integers(0, 60), max_size=8), st.integers(0, 8),
       st.integers(0, 8), st.integers(0, 6))
def test_crash_between_record_parts_ends_as_undisturbed(messages: list[Message],
                                                        cuts: list[int], crash_at: int,
                                                        committed: int, parts: int) -> None:
    """With records split into many small parts, crashing after any prefix of a write's
    parts and replaying gives the same cells and counters as no crash."""
    from streammon.join import changelog as joinlog

    target = joinlog.RECORD_TARGET_BYTES
    joinlog.RECORD_TARGET_BYTES = 150
    try:
        crash_and_replay(messages, cuts, crash_at, committed, parts)
    finally:
        joinlog.RECORD_TARGET_BYTES = target
