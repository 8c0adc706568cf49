"""A real worker at 10,000 events/s: every outcome reaches a cohort summary.

How fast it gets there (p99 outcome-to-summary) is a speed target, so it is measured by
`make bench` (bench/latency.py), not asserted here: a timed test on a shared 2-core
machine would be flaky.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from kafka_helpers import read_topic

from streammon import events
from streammon.config.settings import Settings
from streammon.kafka.topics import apply_topics, check_copartitioned

_SPEC = importlib.util.spec_from_file_location(
    "streammon_bench_latency", Path(__file__).parents[2] / "bench" / "latency.py")
assert _SPEC is not None and _SPEC.loader is not None
latency = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(latency)


def test_every_outcome_reaches_a_summary_at_ten_thousand_events_per_s(
    settings: Settings, spawn: Any
) -> None:
    """At 10,000 events/s every published outcome is joined into a cohort summary, and the
    latency helper the benchmark uses matches each one to its summary."""
    apply_topics(settings.kafka, settings.topics)
    partitions = check_copartitioned(settings.kafka, settings.topics)
    spawn("worker", "--window-ms", "1000", "--ttl-ms", "60000")
    latency.publish_live(settings, rollout_id="warmup", events_per_s=200, seconds=0.5,
                         window_ms=1000, partitions=partitions)
    warm = read_topic(settings, settings.topics.cohorts, until=lambda m: len(m) > 0)
    times = latency.publish_live(settings, rollout_id="live", events_per_s=10_000, seconds=6.0,
                                 window_ms=1000, partitions=partitions)
    n = sum(len(v) for v in times.values())

    def summaries(msgs: list[Any]) -> list[tuple[int, events.CohortSummary]]:
        return [(m.timestamp()[1], events.decode(events.CohortSummary, m.value()))
                for m in msgs[len(warm):]]

    def labelled(msgs: list[Any]) -> int:
        latest = {s.key: s for _, s in summaries(msgs) if s.rollout_id == "live"}
        return sum(s.metrics["label"].n for s in latest.values() if "label" in s.metrics)

    msgs = read_topic(settings, settings.topics.cohorts, until=lambda m: labelled(m) >= n)
    lat = latency.latencies_ms(times, summaries(msgs))
    # The publisher aims at 10,000 events/s (≈28,000 outcomes in 6 s) but falls behind on
    # a loaded machine (19,375 at load 14): what is asserted is that every one it sent
    # arrived, over a stream long enough to span several windows and flushes.
    assert n > 5_000 and len(lat) == n
    assert all(ms >= 0 for ms in lat)
