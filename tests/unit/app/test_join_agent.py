"""The join agent's shell without Faust: fencing of revoked partitions, dead letters."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from helpers import pred

from streammon import events
from streammon.app.join_agent import JoinAgent
from streammon.join.state import JoinConfig
from streammon.kafka.partitioner import partition_for

PARTS = 2
NOW_MS = 1_700_000_000_000


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    timestamp: float

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class Event:
    message: Message
    value: bytes


class FakeTable:
    """The two things RecordStore uses of a Faust table: its local data and changelog."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.sent: list[tuple[int, bytes, bytes | None]] = []

    def send_changelog(self, partition: int, key: bytes, value: bytes | None,
                       **_: Any) -> Any:
        self.sent.append((partition, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class FakeTopic:
    def __init__(self, on_send: Any = None) -> None:
        self.sent: list[tuple[bytes, bytes, list[tuple[str, bytes]]]] = []
        self.on_send = on_send

    async def send(self, *, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((key, value, headers))
        if self.on_send is not None:
            await self.on_send()


class FakeConsumer:
    def __init__(self, owned: set[TP]) -> None:
        self.owned = owned

    def assignment(self) -> set[TP]:
        return set(self.owned)


def agent(config: JoinConfig | None = None) -> JoinAgent:
    """A JoinAgent wired to fakes (no Faust app), owning both partitions of both topics."""
    a = JoinAgent.__new__(JoinAgent)
    a.config = config or JoinConfig(window_ms=1_000)
    a.partitions = PARTS
    a.max_lead_ms = 30_000
    a.roles = {"preds": "predictions", "outs": "outcomes"}
    a.table = FakeTable()
    a.deadletters = FakeTopic()
    a.joins = {}
    a.counters = Counter()
    a.failed = None

    class App:
        consumer = FakeConsumer({TP(t, p) for t in a.roles for p in range(PARTS)})

    a.app = App()
    return a


def ids_on(partition: int, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if partition_for(f"q{i}".encode(), PARTS) == partition:
            out.append(f"q{i}")
        i += 1
    return out


def message(rid: str, offset: int, **kw: Any) -> Event:
    part = partition_for(rid.encode(), PARTS)
    value = events.encode(pred(rid, ts_ms=NOW_MS, **kw))
    return Event(Message("preds", part, offset, rid.encode(), NOW_MS / 1000), value)


def test_a_partition_revoked_mid_batch_writes_no_record() -> None:
    """When a partition is revoked while its batch awaits (a dead-letter send), nothing
    more is applied to it and its record is never written: the new owner's records are
    the only ones after the revocation."""
    a = agent()
    bad, good = ids_on(0, 2)
    other = ids_on(1, 1)[0]

    async def revoke() -> None:
        a.app.consumer.owned = {tp for tp in a.app.consumer.owned if tp.partition != 0}
        await a.on_revoked(None, [TP("preds", 0), TP("outs", 0)])

    a.deadletters = FakeTopic(on_send=revoke)
    batch = [message(other, 0), message(bad, 0, rollout_id="x\x00y"), message(good, 1)]
    asyncio.run(a.handle_batch(batch))
    assert {partition for partition, _, _ in a.table.sent} == {1}
    assert a.counters["revoked_messages_skipped"] == 1
    assert 0 not in a.joins


def test_capped_predictions_go_to_dead_letters_with_the_reason() -> None:
    """A prediction refused by the rollout cap is dead-lettered, reason in a header."""
    a = agent(JoinConfig(window_ms=1_000, max_rollouts=1))
    first, second = ids_on(0, 2)
    asyncio.run(a.handle_batch([message(first, 0, rollout_id="one"),
                                message(second, 1, rollout_id="two")]))
    (key, value, headers), = a.deadletters.sent
    assert key == second.encode() and events.decode(events.Prediction, value).rollout_id == "two"
    assert b"max_rollouts=1" in dict(headers)["streammon-reason"]
    assert a.joins[0].offsets == {"predictions": 2}


def test_a_failed_batch_stops_the_worker_and_applies_nothing_more() -> None:
    """A batch that raises halfway writes no record, drops the half-changed state, crashes
    the app, and later batches are ignored (not applied on top of that state)."""
    a = agent()
    crashed: list[BaseException] = []

    async def crash(exc: BaseException) -> None:
        crashed.append(exc)

    a.app.crash = crash  # type: ignore[attr-defined]
    first, second = ids_on(0, 2)
    calls = 0
    apply = a._apply

    def flaky(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        return apply(*args)

    a._apply = flaky  # type: ignore[method-assign]
    asyncio.run(a.run_batch([message(first, 0), message(second, 1)]))
    assert not a.table.sent and 0 not in a.joins
    assert [str(e) for e in crashed] == ["boom"]
    asyncio.run(a.run_batch([message(ids_on(1, 1)[0], 0)]))
    assert not a.table.sent and a.counters["messages_after_failure_ignored"] == 1


def test_recovery_commits_the_offsets_the_records_hold() -> None:
    """After recovery each assigned input partition's committed offset is set to what its
    records say was applied, rolling back a commit Faust made ahead of them."""
    a = agent()
    rid = ids_on(0, 1)[0]
    asyncio.run(a.handle_batch([message(rid, 7)]))
    restored = agent()
    restored.table = a.table
    committed: list[dict[TP, int]] = []

    class Assignor:
        @staticmethod
        def assigned_actives() -> set[TP]:
            return {TP("preds", 0), TP("outs", 0), TP("cohorts", 0)}

    async def commit(offsets: dict[TP, int]) -> bool:
        committed.append(dict(offsets))
        return True

    restored.app.assignor = Assignor()  # type: ignore[attr-defined]
    restored.app.consumer._commit = commit  # type: ignore[attr-defined]
    asyncio.run(restored.seek_to_records())
    assert committed == [{TP("preds", 0): 8, TP("outs", 0): 0}]
