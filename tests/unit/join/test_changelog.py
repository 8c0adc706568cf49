"""One changelog record per partition-batch: contents, deletion of dead records, restore."""

from __future__ import annotations

from helpers import outcome, pred

from streammon.join.changelog import JoinLog, decode_record, restore
from streammon.join.state import JoinConfig, JoinState, join_key

CONFIG = JoinConfig(window_ms=1_000, ttl_ms=5_000)


def persist(state: JoinState, log: JoinLog, store: dict[int, bytes],
            offsets: dict[str, int]) -> list[int]:
    state.expire()
    records, dead = log.write(state, state.take_changes(), offsets)
    store.update(records)
    for d in dead:
        del store[d]
    return dead


def test_record_holds_entries_cells_and_offsets() -> None:
    """A batch's record carries what it wrote, its cells' cumulative sums and the offsets."""
    state, log, store = JoinState(config=CONFIG), JoinLog(), {}
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_prediction(pred("b", ts_ms=1_200))
    state.add_outcome(outcome("a", ts_ms=1_300))
    persist(state, log, store, {"predictions": 2, "outcomes": 1})
    record = decode_record(store[1])
    assert record.offsets == {"predictions": 2, "outcomes": 1}
    assert [r[0] for r in record.predictions] == [join_key("r1", "b")]
    assert record.joined == [(join_key("r1", "a"), 1_000 + CONFIG.ttl_ms)]
    assert record.cells[0][4]["label"] == [1, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_dead_records_are_deleted_and_their_cells_carried() -> None:
    """Once every entry of a record expired it is deleted; a cell whose latest value it
    held moves to the new record, so restoring still finds the cell."""
    state, log, store = JoinState(config=CONFIG), JoinLog(), {}
    state.add_prediction(pred("a", ts_ms=1_000))
    state.add_outcome(outcome("a", ts_ms=1_100))
    persist(state, log, store, {"predictions": 1, "outcomes": 1})
    state.add_prediction(pred("z", ts_ms=9_000, rollout_id="other"))
    state.add_outcome(outcome("y", ts_ms=9_000, rollout_id="other"))
    dead = persist(state, log, store, {"predictions": 2, "outcomes": 2})
    assert dead == [1] and set(store) == {2}
    restored, _, offsets = restore(store.values(), CONFIG)
    assert restored.cells[("r1", 1_000, "all", "canary")].sums["label"][:3] == [1, 1.0, 1.0]
    assert offsets == {"predictions": 2, "outcomes": 2}


def test_records_stay_bounded_under_a_steady_stream() -> None:
    """With TTL expiry, the number of live records stops growing with the stream's length."""
    state, log, store = JoinState(config=CONFIG), JoinLog(), {}
    sizes = []
    for batch in range(400):
        for i in range(10):
            ts_ms = batch * 100 + i * 10
            state.add_prediction(pred(f"p{batch}-{i}", ts_ms=ts_ms))
            state.add_outcome(outcome(f"p{batch}-{i}", ts_ms=ts_ms + 50))
        persist(state, log, store, {"predictions": batch, "outcomes": batch})
        sizes.append(len(store))
    assert max(sizes[200:]) == max(sizes[100:200])
    assert max(sizes) <= CONFIG.ttl_ms // 100 + 3
    assert len(state.pending) <= 10 * (CONFIG.ttl_ms // 100 + 2)


def test_restore_of_nothing_is_empty() -> None:
    """A partition with no records starts empty, at offset zero."""
    state, log, offsets = restore([], CONFIG)
    assert not state.cells and not state.pending and offsets == {} and log.seq == 0
