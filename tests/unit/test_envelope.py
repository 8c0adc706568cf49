"""Decoding batch envelopes and single events, and rejecting what cannot be joined."""

from __future__ import annotations

import json
import os

from helpers import outcome, pred

from streammon import events
from streammon.envelope import MAX_FUTURE_SKEW_MS, decode_message, encode_batch
from streammon.kafka.partitioner import partition_for, partition_for_py

NOW_MS = 1_700_000_000_000
PARTS = 4


def ids_on(partition: int, n: int) -> list[str]:
    out = []
    i = 0
    while len(out) < n:
        rid = f"id-{i}"
        if partition_for(rid.encode(), PARTS) == partition:
            out.append(rid)
        i += 1
    return out


def batch_of(*payloads: bytes) -> bytes:
    return encode_batch(list(payloads))


def test_batch_decodes_every_event_in_order() -> None:
    """A batch envelope yields its events in order, all valid, none rejected."""
    rids = ids_on(2, 3)
    raw = batch_of(*(events.encode(pred(r, ts_ms=NOW_MS)) for r in rids))
    out = decode_message(events.Prediction, raw, partition=2, partitions=PARTS, now_ms=NOW_MS)
    assert [e.request_id for e in out.events] == rids
    assert out.batched and not out.rejects


def test_single_event_message_is_accepted() -> None:
    """A plain single-event message (another stack's producer) on its murmur2 partition is
    accepted."""
    rid = ids_on(3, 1)[0]
    raw = events.encode(pred(rid, ts_ms=NOW_MS))
    out = decode_message(events.Prediction, raw, partition=3, partitions=PARTS, now_ms=NOW_MS)
    assert [e.request_id for e in out.events] == [rid]
    assert not out.batched


def test_single_event_on_the_wrong_partition_is_rejected() -> None:
    """A single event that a CRC32 partitioner put on another partition than murmur2 would
    never meet its other half: it is rejected, and the reason names the fix."""
    rid = ids_on(1, 1)[0]
    raw = events.encode(pred(rid, ts_ms=NOW_MS))
    out = decode_message(events.Prediction, raw, partition=2, partitions=PARTS, now_ms=NOW_MS)
    assert not out.events
    assert "murmur2" in out.rejects[0].reason and "partitioner" in out.rejects[0].reason


def test_an_event_with_a_unit_is_keyed_by_its_unit_id() -> None:
    """An event that names a unit must sit on its unit's murmur2 partition (so one join
    partition sees all of the unit's requests); on its request id's partition it is
    rejected, and the reason names unit_id."""
    unit, rid = ids_on(1, 1)[0], ids_on(2, 1)[0]
    for kind, event in ((events.Prediction, pred(rid, ts_ms=NOW_MS, unit_id=unit)),
                        (events.Outcome, outcome(rid, ts_ms=NOW_MS, unit_id=unit))):
        raw = events.encode(event)
        good = decode_message(kind, raw, partition=1, partitions=PARTS, now_ms=NOW_MS)
        assert [e.request_id for e in good.events] == [rid] and not good.rejects
        bad = decode_message(kind, raw, partition=2, partitions=PARTS, now_ms=NOW_MS)
        assert not bad.events and "unit_id" in bad.rejects[0].reason


def test_bad_event_in_batch_rejects_only_it() -> None:
    """A schema violation inside a batch rejects that event, with its index; the rest join."""
    good = ids_on(1, 2)
    bad = json.dumps({"request_id": good[0], "rollout_id": "r", "model_version": "m",
                      "arm": "canary", "ts_ms": NOW_MS, "latency_ms": -1}).encode()
    raw = batch_of(events.encode(pred(good[0], ts_ms=NOW_MS)), bad,
                   events.encode(pred(good[1], ts_ms=NOW_MS)))
    out = decode_message(events.Prediction, raw, partition=1, partitions=PARTS, now_ms=NOW_MS)
    assert len(out.events) == 2
    assert [(r.index, "$.latency_ms" in r.reason) for r in out.rejects] == [(1, True)]
    assert out.rejects[0].raw == bad


def test_misrouted_event_in_batch_is_rejected() -> None:
    """An event whose request id hashes to another partition would break co-partitioning."""
    here, there = ids_on(0, 1)[0], ids_on(3, 1)[0]
    raw = batch_of(events.encode(pred(here, ts_ms=NOW_MS)),
                   events.encode(pred(there, ts_ms=NOW_MS)))
    out = decode_message(events.Prediction, raw, partition=0, partitions=PARTS, now_ms=NOW_MS)
    assert [e.request_id for e in out.events] == [here]
    assert "another partition" in out.rejects[0].reason


def test_malformed_json_is_rejected_with_reason() -> None:
    """Bytes that are not JSON become one reject saying so."""
    out = decode_message(events.Outcome, b"{nope", partition=0, partitions=PARTS, now_ms=NOW_MS)
    assert not out.events
    assert "not valid JSON" in out.rejects[0].reason


def test_infinite_latency_and_far_future_are_rejected() -> None:
    """A latency that overflows to infinity and a timestamp a day ahead are absurd values."""
    a, b = ids_on(0, 2)
    inf = json.dumps({"request_id": a, "rollout_id": "r", "model_version": "m",
                      "arm": "canary", "ts_ms": NOW_MS}).replace("}", ',"latency_ms":1e999}')
    future = events.encode(pred(b, ts_ms=NOW_MS + MAX_FUTURE_SKEW_MS + 1))
    for raw, where in ((inf.encode(), "$.latency_ms"), (future, "$.ts_ms")):
        out = decode_message(events.Prediction, raw, partition=0, partitions=PARTS,
                             now_ms=NOW_MS)
        assert not out.events
        assert where in out.rejects[0].reason


def test_outcome_without_label_or_value_is_rejected() -> None:
    """The semantic check (label or value required) applies inside batches too."""
    rid = ids_on(0, 1)[0]
    raw = batch_of(json.dumps({"request_id": rid, "rollout_id": "r", "ts_ms": 5}).encode())
    out = decode_message(events.Outcome, raw, partition=0, partitions=PARTS, now_ms=NOW_MS)
    assert not out.events and "label" in out.rejects[0].reason


def test_batch_envelope_is_plain_json() -> None:
    """The envelope is ordinary JSON a person can read with kcat and jq."""
    raw = batch_of(events.encode(pred("a")), events.encode(pred("b")))
    doc = json.loads(raw)
    assert doc["v"] == 1 and [e["request_id"] for e in doc["events"]] == ["a", "b"]


def test_partitioner_matches_kafka_murmur2() -> None:
    """partition_for agrees with aiokafka's Java-compatible murmur2 on random keys."""
    from aiokafka.partitioner import murmur2

    for i in range(3000):
        key = os.urandom(i % 37)
        n = 1 + i % 11
        want = (murmur2(key) & 0x7FFFFFFF) % n
        assert partition_for(key, n) == partition_for_py(key, n) == want


def test_batch_of_an_unknown_version_is_rejected_whole() -> None:
    """A batch envelope with another schema version is rejected as one message, unread."""
    raw = encode_batch([events.encode(pred(ids_on(0, 1)[0], ts_ms=NOW_MS))])
    raw = raw.replace(b'{"v":1,', b'{"v":2,', 1)
    out = decode_message(events.Prediction, raw, partition=0, partitions=PARTS, now_ms=NOW_MS)
    assert not out.events and "v=2" in out.rejects[0].reason and out.rejects[0].raw == raw
