"""Hostile or unlucky input is absorbed at the join's edge or bounded in its state."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from helpers import outcome, pred

from streammon import events
from streammon.envelope import MAX_METRIC_ABS, decode_message, encode_batch
from streammon.errors import ConfigError
from streammon.join import changelog as joinlog
from streammon.join.changelog import JoinLog, decode_record, restore
from streammon.join.state import JoinConfig, JoinState, join_key
from streammon.kafka.partitioner import partition_for

NOW_MS = 1_700_000_000_000
PARTS = 4


def on_partition(partition: int, n: int, prefix: str = "id") -> list[str]:
    """Return ``n`` request ids that murmur2 puts on ``partition``."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        rid = f"{prefix}-{i}"
        if partition_for(rid.encode(), PARTS) == partition:
            out.append(rid)
        i += 1
    return out


def decode_on(kind: type, raw: bytes, rid: str, **kw: int) -> object:
    return decode_message(kind, raw, partition=partition_for(rid.encode(), PARTS),
                          partitions=PARTS, now_ms=NOW_MS, **kw)


def write(state: JoinState, log: JoinLog, store: dict[int, bytes],
          offsets: dict[str, int]) -> list[tuple[int, bytes]]:
    state.expire()
    records, dead = log.write(state, state.take_changes(), offsets)
    store.update(records)
    for seq in dead:
        store.pop(seq, None)
    return records


def test_huge_finite_values_are_rejected_at_the_edge() -> None:
    """A latency or value whose square would overflow Σx² (1e200) is dead-lettered with
    the field named; the bound itself is accepted and its square stays finite."""
    rid = "big"
    latency = json.dumps({"request_id": rid, "rollout_id": "r", "model_version": "m",
                          "arm": "canary", "ts_ms": NOW_MS, "latency_ms": 1e200}).encode()
    out = decode_on(events.Prediction, latency, rid)
    assert not out.events and "$.latency_ms" in out.rejects[0].reason  # type: ignore[attr-defined]
    value = json.dumps({"request_id": rid, "rollout_id": "r", "ts_ms": NOW_MS,
                        "value": -1e200}).encode()
    out = decode_on(events.Outcome, value, rid)
    assert not out.events and "$.value" in out.rejects[0].reason  # type: ignore[attr-defined]
    edge = events.encode(pred(rid, ts_ms=NOW_MS, latency_ms=MAX_METRIC_ABS))
    out = decode_on(events.Prediction, edge, rid)
    state = JoinState(config=JoinConfig(window_ms=1_000))
    state.add_predictions(out.events)  # type: ignore[attr-defined]
    state.add_predictions([pred(f"x{i}", ts_ms=NOW_MS, latency_ms=MAX_METRIC_ABS)
                           for i in range(1000)])
    (cell,) = state.cells.values()
    assert all(math.isfinite(x) for x in cell.sums["latency_ms"])


def test_restore_never_raises_on_an_old_record_with_null_sums() -> None:
    """A record an old build wrote with an overflowed sum (JSON null) and a record that is
    not JSON are skipped and counted; the rest of the partition restores."""
    config = JoinConfig(window_ms=1_000, ttl_ms=5_000)
    state, log, store = JoinState(config=config), JoinLog(), {}
    state.add_prediction(pred("a", ts_ms=1_000, rollout_id="bad"))
    state.add_prediction(pred("b", ts_ms=1_000, rollout_id="good"))
    write(state, log, store, {"predictions": 2})
    raw = json.loads(store[1])
    for wire in raw["cells"]:
        if wire[0] == "bad":
            wire[4]["latency_ms"] = [1, None, None]
    store[1] = json.dumps(raw).encode()
    store[2] = b"\x00not a record"
    restored, _, offsets = restore(store.values(), config)
    assert offsets == {"predictions": 2}
    assert "latency_ms" not in restored.cells[("bad", 1_000, "all", "canary")].sums
    assert restored.cells[("good", 1_000, "all", "canary")].sums["latency_ms"][0] == 1
    assert restored.counters["unreadable_sums"] == 1
    assert restored.counters["unreadable_records"] == 1


def test_records_have_a_byte_bound_after_a_lull() -> None:
    """When every record dies at once after a lull, the cells they carried are split over
    several records below the bound, and restoring them gives every cell back."""
    config = JoinConfig(window_ms=1_000, ttl_ms=5_000, cell_retention_ms=10**12)
    state, log, store = JoinState(config=config), JoinLog(), {}
    for window in range(150):
        for segment in range(40):
            state.add_prediction(pred(f"p{window}-{segment}", ts_ms=window * 1_000,
                                      segment=f"segment-{segment:03d}-" + "s" * 40))
        state.add_outcome(outcome(f"p{window}-0", ts_ms=window * 1_000 + 1))
        write(state, log, store, {"predictions": window})
    state.add_prediction(pred("wake", ts_ms=10_000_000))
    state.add_outcome(outcome("wake", ts_ms=10_000_000))
    records = write(state, log, store, {"predictions": 999})
    assert len(records) > 1
    assert all(len(raw) <= joinlog.RECORD_MAX_BYTES for _, raw in records)
    assert [decode_record(raw).final for _, raw in records][-1] is True
    assert not any(decode_record(raw).final for _, raw in records[:-1])
    restored, _, _ = restore(store.values(), config)
    assert restored.cells == state.cells


def test_a_crash_between_the_parts_of_a_write_applies_none_of_them() -> None:
    """Records after the last final one (a write cut short by a crash) are ignored, so the
    partition restores to the write before, with that write's offsets."""
    config = JoinConfig(window_ms=1_000, ttl_ms=5_000, cell_retention_ms=10**12)
    state, log, store = JoinState(config=config), JoinLog(), {}
    state.add_prediction(pred("a", ts_ms=1_000))
    write(state, log, store, {"predictions": 1})
    before = restore(store.values(), config)[0].cells
    for i in range(6000):
        state.add_prediction(pred(f"p{i}", ts_ms=2_000, segment=f"s{i % 900}",
                                  rollout_id="r" * 200))
    state.expire()
    records, _ = log.write(state, state.take_changes(), {"predictions": 6001})
    assert len(records) > 2
    store.update(records[:-1])
    restored, _, offsets = restore(store.values(), config)
    assert offsets == {"predictions": 1} and restored.cells == before


def test_cells_expire_a_retention_after_their_window_and_quiet_rollouts_go() -> None:
    """A cell is dropped once the expiry clock passes its window's end plus the retention
    (handing over its final value), a rollout that stopped is forgotten with its last cell,
    and restoring the records gives the same live cells."""
    config = JoinConfig(window_ms=1_000, ttl_ms=2_000, grace_ms=0, cell_retention_ms=5_000)
    state, log, store = JoinState(config=config), JoinLog(), {}
    state.add_prediction(pred("old", ts_ms=1_000, rollout_id="quiet"))
    dropped: dict[tuple[str, int, str, str], object] = {}
    for t in range(1_000, 12_000, 500):
        state.add_prediction(pred(f"live{t}", ts_ms=t, rollout_id="busy"))
        state.add_outcome(outcome(f"live{t}", ts_ms=t, rollout_id="busy"))
        state.expire()
        changes = state.take_changes()
        dropped.update(changes.dropped_cells)
        records, dead = log.write(state, changes, {"predictions": t})
        store.update(records)
        for seq in dead:
            store.pop(seq, None)
    assert "quiet" not in state.rollouts
    assert sorted(k[1] for k in state.cells) == list(range(6_000, 12_000, 1_000))
    assert dropped[("quiet", 1_000, "all", "canary")].expired == 1  # type: ignore[attr-defined]
    assert len(dropped) == 6 and state.counters["cells_dropped"] == 6
    restored, _, _ = restore(store.values(), config)
    assert restored.cells == state.cells


def test_an_event_far_ahead_of_its_arrival_is_dead_lettered_and_moves_no_watermark() -> None:
    """A prediction stamped minutes ahead of its message's Kafka timestamp is rejected as
    clock-skewed, so the real predictions after it are not dropped as late."""
    rid = on_partition(0, 1)[0]
    skewed = events.encode(pred(rid, ts_ms=NOW_MS + 5 * 60_000))
    out = decode_message(events.Prediction, skewed, partition=0, partitions=PARTS,
                         now_ms=NOW_MS + 10 * 60_000, arrival_ms=NOW_MS, max_lead_ms=30_000)
    assert not out.events and "clock skew" in out.rejects[0].reason
    ok = events.encode(pred(rid, ts_ms=NOW_MS + 20_000))
    assert decode_message(events.Prediction, ok, partition=0, partitions=PARTS,
                          now_ms=NOW_MS, arrival_ms=NOW_MS).events
    state = JoinState(config=JoinConfig(window_ms=1_000, grace_ms=1_000))
    state.add_predictions(out.events)
    state.add_prediction(pred("real", ts_ms=NOW_MS))
    assert state.counters["late_predictions"] == 0


def test_two_rollouts_sharing_request_ids_both_join() -> None:
    """Two concurrent rollouts that reuse request ids keep separate requests: neither
    drops the other's prediction or outcome as a duplicate."""
    state = JoinState(config=JoinConfig(window_ms=1_000))
    for rollout_id in ("one", "two"):
        state.add_prediction(pred("same", ts_ms=1_000, rollout_id=rollout_id))
    for rollout_id in ("one", "two"):
        state.add_outcome(outcome("same", ts_ms=1_100, rollout_id=rollout_id))
    assert state.counters["duplicate_predictions"] == 0
    assert state.counters["duplicate_outcomes"] == 0
    for rollout_id in ("one", "two"):
        assert state.cells[(rollout_id, 1_000, "all", "canary")].sums["label"][0] == 1
        assert isinstance(state.pending[join_key(rollout_id, "same")], int)


def test_cardinality_caps_reject_the_excess_with_a_reason() -> None:
    """Predictions opening a rollout beyond max_rollouts or a segment beyond max_segments
    are refused with the cap named; the admitted ones still join."""
    state = JoinState(config=JoinConfig(window_ms=1_000, max_rollouts=2, max_segments=3))
    refused = state.add_predictions([pred(f"r{i}", ts_ms=1_000, rollout_id=f"ro{i}")
                                     for i in range(4)])
    assert [i for i, _ in refused] == [2, 3] and "max_rollouts=2" in refused[0][1]
    refused = state.add_predictions([pred(f"s{i}", ts_ms=1_000, rollout_id="ro0",
                                          segment=f"seg{i}") for i in range(5)])
    assert [i for i, _ in refused] == [2, 3, 4] and "max_segments=3" in refused[0][1]
    assert {k[0] for k in state.cells} == {"ro0", "ro1"}
    assert state.counters["capped_predictions"] == 5
    assert join_key("ro2", "r2") not in state.pending


def test_a_rollout_id_with_the_key_separator_is_rejected() -> None:
    """A rollout id holding NUL could alias another rollout's join keys; it is rejected."""
    rid = "nul"
    raw = events.encode(pred(rid, ts_ms=NOW_MS, rollout_id="a\x00b"))
    out = decode_on(events.Prediction, raw, rid)
    assert not out.events and "rollout_id" in out.rejects[0].reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kwargs", "flag"), [
    ({"window_ms": 0}, "--window-ms"), ({"ttl_ms": -1}, "--ttl-ms"),
    ({"grace_ms": -5}, "--grace-ms"), ({"max_segments": 0}, "--max-segments"),
    ({"ttl_ms": 10, "grace_ms": 0, "cell_retention_ms": 5}, "--cell-retention-ms")])
def test_window_settings_are_checked_on_creation(kwargs: dict[str, int], flag: str) -> None:
    """A zero window (a division by zero later) or a retention shorter than an outcome may
    still arrive is refused at start, naming the flag."""
    with pytest.raises(ConfigError, match=flag):
        JoinConfig(**kwargs)


def test_a_rollout_window_not_a_multiple_of_the_join_window_is_refused() -> None:
    """A decision window of 15 s over 10 s join windows would mix cells; it is refused."""
    config = JoinConfig(window_ms=10_000)
    config.check_rollout_window(30_000)
    with pytest.raises(ConfigError, match="multiple"):
        config.check_rollout_window(15_000)


def test_worker_refuses_a_zero_window_before_connecting() -> None:
    """`streammon worker --window-ms 0` exits 2 with the flag named, before any I/O."""
    from streammon.cli import main

    assert main(["worker", "--window-ms", "0"]) == 2


def test_old_records_without_final_still_restore() -> None:
    """Records written before the byte bound (no `final` field) count as final."""
    raw = msgspec.json.encode({"v": 1, "seq": 3, "offsets": {"outcomes": 4},
                               "prediction_wm_ms": 0, "outcome_wm_ms": 0,
                               "expired_through_ms": 0, "counters": {}})
    _, log, offsets = restore([raw], JoinConfig())
    assert offsets == {"outcomes": 4} and log.seq == 3


def test_an_envelope_keeps_its_good_events_in_order_around_bad_ones() -> None:
    """In a batch envelope, only the implausible events (huge latency, wrong partition,
    label-less outcome) are dead-lettered; the others are kept, in their order."""
    here = 1
    *mine, spare = on_partition(here, 7, "env")
    (other,) = on_partition(2, 1, "env")
    good = [events.encode(pred(r, ts_ms=NOW_MS)) for r in mine]
    huge = events.encode(pred(spare, ts_ms=NOW_MS, latency_ms=1e300))
    wrong = events.encode(pred(other, ts_ms=NOW_MS))
    raw = encode_batch([good[0], huge, good[1], wrong, *good[2:]])
    out = decode_message(events.Prediction, raw, partition=here, partitions=PARTS,
                         now_ms=NOW_MS)
    assert [e.request_id for e in out.events] == mine
    assert [r.index for r in out.rejects] == [1, 3]
    assert "latency_ms" in out.rejects[0].reason and "partition" in out.rejects[1].reason
    labelless = encode_batch([events.encode(outcome(mine[0], ts_ms=NOW_MS, label=1.0)),
                              b'{"request_id":"%s","rollout_id":"r1","ts_ms":%d}'
                              % (mine[1].encode(), NOW_MS)])
    out = decode_message(events.Outcome, labelless, partition=here, partitions=PARTS,
                         now_ms=NOW_MS)
    assert [e.request_id for e in out.events] == [mine[0]] and len(out.rejects) == 1
