"""Running one real join worker against preloaded topics, and reading what it wrote.

The worker is ``streammon worker`` in a child process, exactly as deployed. Progress
and timing come from its changelog: every join record carries the partition's
cumulative counters, and its Kafka timestamp says when the batch was done. The
result comes from the cohorts topic: the latest cumulative summary per key, merged.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from streammon import events
from streammon.config.settings import Settings
from streammon.devstack import stop_process
from streammon.events import CellKey
from streammon.join.cells import CellState, merge_summaries
from streammon.sim.demo import spawn_streammon


def consumer(settings: Settings) -> Any:
    """Return a librdkafka consumer for reading (no group offsets used)."""
    from confluent_kafka import Consumer

    return Consumer(settings.kafka.consumer_config(f"bench-{uuid.uuid4().hex}"))


def end_offsets(settings: Settings, topic: str, partitions: int) -> list[int]:
    """Return the high watermark of every partition of ``topic``."""
    c = consumer(settings)
    try:
        return [c.get_watermark_offsets(_tp(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def _tp(topic: str, partition: int, offset: int = -1001) -> Any:
    from confluent_kafka import TopicPartition

    return TopicPartition(topic, partition, offset)


def peak_rss_mb(pid: int) -> float:
    """Return the peak resident set size of a process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time a live process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_jiffies() -> tuple[int, int]:
    """Return (busy, total) CPU jiffies of the whole machine since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Return the share of all cores' time that was busy between two readings."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else float("nan")


class _RecordHead(msgspec.Struct):
    """The two fields of a changelog record the bench follows (the rest is skipped)."""

    seq: int
    counters: dict[str, int]


_HEAD = msgspec.json.Decoder(_RecordHead)


@dataclasses.dataclass
class Progress:
    """What the changelog says: per partition, the latest counters, and batch timestamps."""

    latest: dict[int, tuple[int, int]] = dataclasses.field(default_factory=dict)
    points: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)
    cpu_pids: tuple[int, ...] = ()
    """Worker processes whose CPU time is read at the first record and at the end."""
    cpu_at_first: tuple[float, int] | None = None
    """(their CPU seconds, events applied) when the first record was read."""

    def add(self, partition: int, ts_ms: int, raw: bytes) -> None:
        """Take one changelog record (ts, cumulative events of its partition)."""
        record = _HEAD.decode(raw)  # not decode_record: the bench shares the worker's cores
        total = record.counters.get("predictions", 0) + record.counters.get("outcomes", 0)
        if record.seq >= self.latest.get(partition, (-1, 0))[0]:
            self.latest[partition] = (record.seq, total)
        self.points.append((ts_ms, partition, total))
        if self.cpu_at_first is None and self.cpu_pids:
            self.cpu_at_first = (self.cpu_seconds(), self.events())

    def cpu_seconds(self) -> float:
        """Return the CPU seconds the worker processes have used so far."""
        return sum(cpu_seconds(pid) for pid in self.cpu_pids)

    def events_per_cpu_s(self) -> float:
        """Return events applied per worker CPU-second since the first record (start-up,
        imports and group join excluded). Call while the workers are still alive."""
        if self.cpu_at_first is None:
            return float("nan")
        cpu_s = self.cpu_seconds() - self.cpu_at_first[0]
        return (self.events() - self.cpu_at_first[1]) / cpu_s if cpu_s > 0 else float("nan")

    def events(self) -> int:
        """Return how many input events the worker has applied, over all partitions."""
        return sum(total for _, total in self.latest.values())

    def rate(self) -> tuple[float, float]:
        """Return (events/s, seconds) from the first batch done to the last."""
        self.points.sort()
        t0 = self.points[0][0]
        at_t0: dict[int, int] = {}
        for ts, part, total in self.points:
            if ts <= t0:
                at_t0[part] = max(at_t0.get(part, 0), total)
        t_end = self.points[-1][0]
        seconds = max(t_end - t0, 1) / 1000
        return (self.events() - sum(at_t0.values())) / seconds, seconds


def follow_changelog(settings: Settings, app_id: str, partitions: int, total: int,
                     timeout_s: float, proc: Any, cpu_pids: tuple[int, ...] = ()) -> Progress:
    """Read the join's changelog until it has applied ``total`` events (or time runs out)."""
    c = consumer(settings)
    topic = f"{app_id}-join-records-changelog"
    c.assign([_tp(topic, p, -2) for p in range(partitions)])
    progress = Progress(cpu_pids=cpu_pids)
    deadline = time.monotonic() + timeout_s
    try:
        while progress.events() < total and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}; see its log")
            for m in c.consume(1000, 0.2):
                if m.error() is None and m.value():
                    progress.add(m.partition(), m.timestamp()[1], m.value())
    finally:
        c.close()
    return progress


def read_cells(settings: Settings, start_offset: int, until_label_n: int,
               timeout_s: float = 60.0) -> tuple[dict[CellKey, CellState], list[Any]]:
    """Read the cohorts topic from ``start_offset``; return merged latest cells and messages."""
    c = consumer(settings)
    c.assign([_tp(settings.topics.cohorts, 0, start_offset)])
    latest: dict[str, events.CohortSummary] = {}
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            batch = [m for m in c.consume(5000, 0.2) if m.error() is None]
            for m in batch:
                s = events.decode(events.CohortSummary, m.value())
                latest[s.key] = s
                messages.append((m.timestamp()[1], s))
            if not batch and _label_n(latest) >= until_label_n:
                break
    finally:
        c.close()
    return merge_summaries(latest.values()), messages


def _label_n(latest: dict[str, events.CohortSummary]) -> int:
    return sum(s.metrics["label"].n for s in latest.values() if "label" in s.metrics)


WORKER_ARGS: tuple[str, ...] = ()
"""Arguments every worker the bench starts gets (``--join-engine``)."""


def commit_at_end(settings: Settings, group_id: str, topic: str) -> None:
    """Commit ``group_id``'s offsets on every partition of ``topic`` at its end.

    A worker's decider reads the cohorts topic in the worker's consumer group. A fresh
    group starts at the earliest offset, so in a bench that runs many workers over the
    same topics each new worker's decider would first read every earlier run's
    summaries (thousands per run, growing round after round) and slow that run's join.
    A deployed worker keeps its group; this puts each bench worker in that steady state.
    The embedded broker reports a partition's end as its last batch's base offset + 1,
    so the decider reads at most that last batch again.
    """
    from confluent_kafka import Consumer

    c = Consumer(settings.kafka.consumer_config(group_id, **{"enable.auto.commit": False}))
    try:
        partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.commit(offsets=[_tp(topic, p, c.get_watermark_offsets(_tp(topic, p), timeout=10)[1])
                          for p in partitions], asynchronous=False)
    finally:
        c.close()


def start_worker(settings: Settings, log_dir: Path, *, window_ms: int, ttl_ms: int,
                 tag: str, extra: tuple[str, ...] = (),
                 app_id: str | None = None) -> tuple[Settings, Any]:
    """Start ``streammon worker`` with a fresh app id (so it reads every input from the
    start, and the cohorts topic from its end: :func:`commit_at_end`), or with ``app_id``
    (to join another worker's group)."""
    from streammon.control.keys import dev_keyring

    # The worker's decider signs its commands: a bench, like the demo, uses dev keys.
    run = dataclasses.replace(settings, app_id=app_id or f"bench-{tag}-{uuid.uuid4().hex[:6]}",
                              keys=dev_keyring() if settings.keys.empty else settings.keys)
    if app_id is None:
        commit_at_end(run, run.app_id, settings.topics.cohorts)
    proc = spawn_streammon(["worker", "--window-ms", str(window_ms), "--ttl-ms", str(ttl_ms),
                            *WORKER_ARGS, *extra], run, log_dir / f"worker-{tag}.log")
    return run, proc


def stop_worker(proc: Any) -> None:
    """Stop a worker started by :func:`start_worker`."""
    stop_process(proc)
