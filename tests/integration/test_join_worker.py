"""The Faust join on the embedded broker: exact cohort sums, duplicates, dead letters."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from confluent_kafka import Producer
from kafka_helpers import read_topic

from streammon import events
from streammon.config.settings import Settings
from streammon.kafka.topics import apply_topics
from streammon.sdk.publisher import Publisher

T0_MS = 1_700_000_000_000


def latest_summaries(messages: list[Any]) -> dict[str, events.CohortSummary]:
    latest: dict[str, events.CohortSummary] = {}
    for m in messages:
        s = events.decode(events.CohortSummary, m.value())
        latest[s.key] = s
    return latest


def totals(latest: dict[str, events.CohortSummary],
           metric: str) -> dict[tuple[int, str], list[float]]:
    out: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for s in latest.values():
        if metric in s.metrics:
            out[(s.window_start_ms, s.arm)][0] += s.metrics[metric].n
            out[(s.window_start_ms, s.arm)][1] += s.metrics[metric].sum
    return dict(out)


def publish_workload(settings: Settings, rollout_id: str,
                     n: int) -> dict[tuple[int, str], list[float]]:
    rng = random.Random(3)
    truth: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0])
    with Publisher(settings=settings, strict=True) as pub:
        sent = []
        for i in range(n):
            arm = "canary" if i % 4 == 0 else "baseline"
            ts = T0_MS + i * 5
            pred = {"request_id": f"q{i}", "rollout_id": rollout_id, "model_version": arm,
                    "arm": arm, "ts_ms": ts, "latency_ms": rng.uniform(5, 50)}
            pub.prediction(**pred)
            sent.append(pred)
            if i % 10:
                label = float(rng.random() < 0.3)
                out = {"request_id": f"q{i}", "rollout_id": rollout_id, "ts_ms": ts + 300,
                       "label": label}
                pub.outcome(**out)
                cell = truth[(ts - ts % 1000, arm)]
                cell[0] += 1
                cell[1] += label
                if i % 37 == 0:
                    pub.outcome(**out)  # a duplicate outcome
        for pred in sent[:50]:
            pub.prediction(**pred)  # duplicate predictions
    return dict(truth)


def test_worker_join_sums_equal_the_truth(settings: Settings, spawn: Any, unique: str) -> None:
    """Joined label sums per (window, arm) on the cohorts topic equal those of the input,
    with duplicate predictions and outcomes dropped."""
    apply_topics(settings.kafka, settings.topics)
    spawn("worker", "--window-ms", "1000")
    truth = publish_workload(settings, f"r-{unique}", 3000)
    expected_n = sum(v[0] for v in truth.values())

    def done(msgs: list[Any]) -> bool:
        return sum(v[0] for v in totals(latest_summaries(msgs), "label").values()) >= expected_n

    msgs = read_topic(settings, settings.topics.cohorts, until=done, timeout_s=90)
    got = totals(latest_summaries(msgs), "label")
    assert got == {k: [v[0], v[1]] for k, v in truth.items()}
    latency_n = sum(s.metrics["latency_ms"].n for s in latest_summaries(msgs).values())
    assert latency_n == 3000


def test_bad_events_go_to_dead_letters_and_join_goes_on(
    settings: Settings, spawn: Any, unique: str
) -> None:
    """Malformed JSON and a schema violation reach the dead-letter topic with the reason in a
    header, and a valid event after them is still joined."""
    apply_topics(settings.kafka, settings.topics)
    spawn("worker", "--window-ms", "1000")
    producer = Producer(settings.kafka.to_librdkafka())
    producer.produce(settings.topics.predictions, key=b"bad1", value=b"{not json")
    bad = {"request_id": "bad2", "rollout_id": "r", "model_version": "v", "arm": "canary",
           "ts_ms": T0_MS, "latency_ms": -3.0}
    producer.produce(settings.topics.predictions, key=b"bad2",
                     value=__import__("json").dumps(bad).encode())
    producer.flush(10)
    with Publisher(settings=settings, strict=True) as pub:
        pub.prediction(request_id="ok", rollout_id=f"r-{unique}", model_version="v",
                       arm="canary", ts_ms=T0_MS, latency_ms=3.0)
        pub.outcome(request_id="ok", rollout_id=f"r-{unique}", ts_ms=T0_MS + 5, label=1.0)

    dead = read_topic(settings, settings.topics.deadletters, until=lambda m: len(m) >= 2)
    reasons = {m.key(): dict(m.headers())["streammon-reason"].decode() for m in dead}
    assert "not valid JSON" in reasons[b"bad1"]
    assert "$.latency_ms" in reasons[b"bad2"]

    def joined(msgs: list[Any]) -> bool:
        return any("label" in s.metrics for s in latest_summaries(msgs).values())

    msgs = read_topic(settings, settings.topics.cohorts, until=joined)
    assert joined(msgs)
