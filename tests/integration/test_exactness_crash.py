"""Exactness under failure: SIGKILL mid-stream and a rebalance between two workers leave the
cohort statistics equal to the truth computed from the input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from kafka_helpers import read_topic

from streammon import events
from streammon.config.settings import Settings
from streammon.events import CellKey
from streammon.join.cells import CellState, merge_summaries
from streammon.join.changelog import decode_record
from streammon.kafka.topics import apply_topics, check_copartitioned
from streammon.sdk.publisher import Publisher
from streammon.sim.join_workload import (
    JoinWorkload,
    compute_truth,
    count_events,
    diff_cells,
    generate,
)

WORKER_ARGS = ("worker", "--window-ms", "5000", "--ttl-ms", "20000")
STREAM_EVENTS_PER_S = 4_000
"""The join keeps up with the publisher, so what is applied is what was published: a stream
of 15-20 s leaves room for the kill to land mid-stream even on a saturated machine, where
each poll of the changelog takes seconds."""


def publish_throttled(settings: Settings, workload: JoinWorkload, events_per_s: int) -> Any:
    """Publish the workload in a background thread at about ``events_per_s``."""

    def run() -> None:
        start = time.monotonic()
        with Publisher(settings=settings, strict=True, batch_linger_ms=10) as pub:
            for i, (kind, fields) in enumerate(generate(workload)):
                (pub.prediction if kind == "prediction" else pub.outcome)(**fields)
                if i % 500 == 0:
                    time.sleep(max(0.0, start + i / events_per_s - time.monotonic()))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def applied_events(settings: Settings, partitions: int) -> int:
    """Return how many input events the join's latest records say it applied."""
    consumer = Consumer(settings.kafka.consumer_config(f"progress-{uuid.uuid4().hex}"))
    topic = f"{settings.app_id}-join-records-changelog"
    latest: dict[int, tuple[int, int]] = {}
    try:
        for p in range(partitions):
            try:
                high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            except KafkaException:  # the worker has not created its changelog yet
                continue
            if high <= 0:
                continue
            consumer.assign([TopicPartition(topic, p, max(0, high - 50))])
            for m in _drain(consumer, high):
                record = decode_record(m.value())
                total = record.counters.get("predictions", 0) + record.counters.get("outcomes", 0)
                if record.seq >= latest.get(p, (-1, 0))[0]:
                    latest[p] = (record.seq, total)
    finally:
        consumer.close()
    return sum(total for _, total in latest.values())


def _drain(consumer: Any, high: int) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        batch = [m for m in consumer.consume(500, 0.2) if m.error() is None]
        out.extend(m for m in batch if m.value())
        if batch and batch[-1].offset() >= high - 1:
            break
    return out


def wait_applied(settings: Settings, partitions: int, at_least: int, timeout_s: float) -> int:
    """Poll the changelog until at least ``at_least`` events are applied; return the count."""
    deadline = time.monotonic() + timeout_s
    applied = applied_events(settings, partitions)
    while applied < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
        applied = applied_events(settings, partitions)
    return applied


def final_cells(settings: Settings, truth: dict[CellKey, CellState]) -> dict[CellKey, CellState]:
    """Read the cohorts topic until its latest summaries reach the truth's label count."""
    want_n = sum(int(c.sums["label"][0]) for c in truth.values() if "label" in c.sums)

    def merged(msgs: list[Any]) -> dict[CellKey, CellState]:
        latest = {}
        for m in msgs:
            s = events.decode(events.CohortSummary, m.value())
            latest[s.key] = s
        return merge_summaries(latest.values())

    def done(msgs: list[Any]) -> bool:
        return sum(int(c.sums.get("label", [0])[0]) for c in merged(msgs).values()) >= want_n

    return merged(read_topic(settings, settings.topics.cohorts, until=done, timeout_s=30))


def setup(settings: Settings, unique: str, n: int) -> tuple[JoinWorkload, int, Any]:
    apply_topics(settings.kafka, settings.topics)
    partitions = check_copartitioned(settings.kafka, settings.topics)
    workload = JoinWorkload(n_predictions=n, rollout_id=f"r-{unique}", window_ms=5_000,
                            ttl_ms=20_000, step_ms=2)
    return workload, partitions, compute_truth(workload, partitions)


BUSY_LOOP = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:  # spin; stop if pytest dies without its finalizers
    for _ in range(1_000_000):
        pass
"""


@pytest.fixture(params=[0, 2, 2], ids=["idle", "cores-saturated", "cores-saturated-again"])
def busy_loops(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run ``param`` CPU-bound busy loops (one per core of this 2-core machine) meanwhile.

    The saturated case runs twice in every ``make test``; ``scripts/soak_exactness.sh N``
    runs it N times in a row (docs/join.md has the tally).
    """
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid())])
             for _ in range(request.param)]
    try:
        yield request.param
    finally:
        for loop in loops:
            loop.kill()
            loop.wait(10)


def kill9(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_sigkill_mid_stream_then_restart_is_exact(settings: Settings, spawn: Any,
                                                  unique: str, busy_loops: int) -> None:
    """A worker killed with SIGKILL while events stream in, then restarted, ends with cohort
    statistics equal to the truth: nothing lost, nothing counted twice (also with both
    cores saturated by busy loops)."""
    workload, partitions, truth = setup(settings, unique, 30_000)
    total = count_events(workload)
    worker = spawn(*WORKER_ARGS)
    publisher = publish_throttled(settings, workload, events_per_s=STREAM_EVENTS_PER_S)
    at_kill = wait_applied(settings, partitions, total // 5, timeout_s=60)
    kill9(worker)
    assert total // 5 <= at_kill < total
    spawn(*WORKER_ARGS)
    publisher.join(60)
    assert wait_applied(settings, partitions, total, timeout_s=180) == total
    assert diff_cells(final_cells(settings, truth), truth) == []


def test_rebalance_between_two_workers_and_a_kill_is_exact(settings: Settings, spawn: Any,
                                                           unique: str, busy_loops: int) -> None:
    """A second worker joining mid-stream (rebalance), then the first one SIGKILLed (its
    partitions move), ends with cohort statistics equal to the truth (also with both cores
    saturated by busy loops)."""
    workload, partitions, truth = setup(settings, unique, 40_000)
    total = count_events(workload)
    first = spawn(*WORKER_ARGS)
    publisher = publish_throttled(settings, workload, events_per_s=STREAM_EVENTS_PER_S)
    wait_applied(settings, partitions, total // 10, timeout_s=60)
    spawn(*WORKER_ARGS)
    at_kill = wait_applied(settings, partitions, total // 2, timeout_s=60)
    kill9(first)
    assert at_kill < total
    publisher.join(60)
    assert wait_applied(settings, partitions, total, timeout_s=180) == total
    assert diff_cells(final_cells(settings, truth), truth) == []
