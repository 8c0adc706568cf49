"""The librdkafka join loop without a broker: records, fencing, retry of a failed batch."""

from __future__ import annotations

from typing import Any

from helpers import outcome, pred

from streammon import events
from streammon.app.join_service import JoinService
from streammon.config.settings import KafkaSettings, Settings, TopicNames
from streammon.join.state import JoinConfig
from streammon.kafka.partitioner import partition_for

PARTS = 2
NOW_MS = 1_700_000_000_000
SETTINGS = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"),
                    topics=TopicNames(prefix="t."))


class Msg:
    """What the loop reads of a confluent-kafka Message."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        self._t, self._p, self._o, self._v = topic, partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return b"k"

    def timestamp(self) -> tuple[int, int]:
        return 1, NOW_MS


class Producer:
    """Keeps what was produced, per topic and partition, like a compacted log."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.flushes = 0

    def produce(self, topic: str, value: bytes | None, key: bytes | None,
                partition: int | None = None, **_: Any) -> None:
        self.log.append((topic, value, key, partition))

    def poll(self, _: float) -> int:
        return 0

    def flush(self, _: float = 0) -> int:
        self.flushes += 1
        return 0


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def service() -> JoinService:
    s = JoinService(settings=SETTINGS, config=JoinConfig(window_ms=1_000), partitions=PARTS,
                    app_id="app")
    s._producer, s._consumer = Producer(), Consumer()
    s.read_records = lambda partition: [  # type: ignore[method-assign]
        value for topic, value, key, p in _compacted(s._producer.log)
        if topic == s.changelog_topic and p == partition]
    return s


def _compacted(log: list[Any]) -> list[Any]:
    latest: dict[Any, Any] = {}
    for topic, value, key, partition in log:
        if value is None:
            latest.pop((topic, key), None)
        else:
            latest[(topic, key)] = (topic, value, key, partition)
    return list(latest.values())


def rid_on(partition: int, i: int = 0) -> str:
    found = [f"q{n}" for n in range(200) if partition_for(f"q{n}".encode(), PARTS) == partition]
    return found[i]


def pmsg(rid: str, offset: int) -> Msg:
    return Msg("t.predictions", partition_for(rid.encode(), PARTS), offset,
               events.encode(pred(rid, ts_ms=NOW_MS)))


def omsg(rid: str, offset: int) -> Msg:
    return Msg("t.outcomes", partition_for(rid.encode(), PARTS), offset,
               events.encode(outcome(rid, ts_ms=NOW_MS + 1)))


def test_records_carry_offsets_and_a_restart_resumes_from_them() -> None:
    """A batch's records hold its input offsets; a new owner restores the state and
    seeks the input to them, and a replayed message is skipped."""
    s = service()
    s._restore(0)
    rid = rid_on(0)
    s.handle([pmsg(rid, 0), omsg(rid, 0)])
    again = service()
    again._producer = s._producer
    pj = again._restore(0)
    assert pj.offsets == {"predictions": 1, "outcomes": 1}
    again.handle([omsg(rid, 0)])
    assert again.counters["replayed_messages_skipped"] == 1
    assert pj.state.cells == s.joins[0].state.cells


def test_revoked_partition_is_flushed_and_forgotten() -> None:
    """Revocation delivers every record written so far, then drops the partition: later
    messages of it are not applied."""
    s = service()
    s._restore(0)
    s.handle([pmsg(rid_on(0), 0)])
    s._on_revoke(None, [type("TP", (), {"partition": 0, "topic": "t.predictions"})()])
    assert s._producer.flushes == 1 and 0 not in s.joins
    s.handle([pmsg(rid_on(0, 1), 1)])
    assert s.counters["unassigned_messages_skipped"] == 1


def test_a_failed_batch_is_rebuilt_from_the_records_and_read_again() -> None:
    """A batch that raises halfway leaves no trace: the state is re-read from the records
    and the input sought back to their offsets, so the retry counts every event once."""
    s = service()
    s._restore(0)
    first, second = rid_on(0), rid_on(0, 1)
    s.handle([pmsg(first, 0)])
    calls = 0
    apply = s._apply

    def flaky(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        apply(*args)

    s._apply = flaky  # type: ignore[method-assign]
    batch = [pmsg(second, 1), omsg(first, 0)]
    try:
        s.handle(batch)
    except RuntimeError as exc:
        assert s._retry(exc, 1)
    assert ("t.predictions", 0, 1) in s._consumer.seeks
    assert ("t.outcomes", 0, -2) in s._consumer.seeks
    s.handle(batch)
    cell = s.joins[0].state.cells[("r1", NOW_MS - NOW_MS % 1_000, "all", "canary")]
    assert cell.sums["latency_ms"][0] == 2 and cell.sums["label"][0] == 1
