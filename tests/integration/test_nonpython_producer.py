"""Events from non-Python clients (KafkaJS, the Tansu CLI, kcat) are joined exactly.

Each client sends one event per Kafka message keyed by request_id, as other stacks do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kafka_helpers import read_topic

from streammon import events
from streammon.config.settings import Settings
from streammon.devstack import broker_binary
from streammon.kafka.partitioner import partition_for
from streammon.kafka.topics import apply_topics, check_copartitioned
from streammon.sdk.publisher import Publisher

REQUESTS = 120
Produce = Callable[[Settings, str, int, list[dict[str, Any]]], None]


def tansu_produce(settings: Settings, topic: str, partition: int,
                  records: list[dict[str, Any]]) -> None:
    """Produce JSON records to one partition with `tansu cat produce` (a Rust client)."""
    lines = "".join(json.dumps({"key": r["request_id"], "value": r}) + "\n" for r in records)
    subprocess.run([broker_binary(), "cat", "produce", "--broker",
                    f"tcp://{settings.kafka.bootstrap_servers}", "--partition", str(partition),
                    topic], input=lines.encode(), check=True, capture_output=True, timeout=60)


def kcat_env(tmp_dir: Path) -> dict[str, str]:
    """Return an environment in which kcat loads the librdkafka of the confluent-kafka wheel.

    Debian's kcat links librdkafka 2.0.2, which cannot parse the embedded broker's
    ApiVersion v3 response ("Read underflow"); the same kcat on the newer librdkafka that
    the wheel ships talks to it fine (against Apache Kafka either works).
    """
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        return dict(os.environ)
    link = tmp_dir / "librdkafka.so.1"
    if not link.exists():
        link.symlink_to(found[0])
    return {**os.environ, "LD_LIBRARY_PATH": str(tmp_dir)}


def kcat_produce(settings: Settings, topic: str, partition: int,
                 records: list[dict[str, Any]]) -> None:
    """Produce key|value lines with kcat, letting its murmur2 partitioner choose."""
    lines = "".join(f"{partition_key(r)}|{json.dumps(r)}\n" for r in records)
    proc = subprocess.run(["kcat", "-P", "-b", settings.kafka.bootstrap_servers, "-t", topic,
                           "-K", "|", "-X", "topic.partitioner=murmur2_random"],
                          input=lines.encode(), capture_output=True, timeout=60,
                          env=kcat_env(Path(settings.data_dir)))
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


KAFKAJS_VERSION = "2.2.4"
KAFKAJS_SCRIPT = Path(__file__).parent / "clients" / "kafkajs_produce.js"


def kafkajs_dir() -> Path:
    """Return a directory holding node_modules/kafkajs, installing it with npm if needed.

    Skipped where node or npm is missing, except in CI (``CI`` set), where it must run.
    """
    where = Path(os.environ.get("STREAMMON_KAFKAJS_DIR",
                                Path.home() / ".cache" / "streammon" / "kafkajs"))
    if (where / "node_modules" / "kafkajs").is_dir():
        return where
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed for the KafkaJS test in CI")
        pytest.skip("node/npm not installed")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(where), "--no-audit", "--no-fund",
                    f"kafkajs@{KAFKAJS_VERSION}"], check=True, capture_output=True, timeout=300)
    return where


def kafkajs_produce(settings: Settings, topic: str, partition: int,
                    records: list[dict[str, Any]]) -> None:
    """Produce with KafkaJS (Node.js), whose default partitioner is Java's murmur2."""
    lines = "".join(f"{topic}\t{partition_key(r)}\t{json.dumps(r)}\n" for r in records)
    subprocess.run(["node", str(KAFKAJS_SCRIPT), settings.kafka.bootstrap_servers],
                   input=lines.encode(), check=True, capture_output=True, timeout=120,
                   env={**os.environ, "NODE_PATH": str(kafkajs_dir() / "node_modules")})


def partition_key(record: dict[str, Any]) -> str:
    """Return what a producer keys an event by: its unit id, else its request id."""
    return str(record.get("unit_id") or record["request_id"])


def _unit(i: int) -> dict[str, str]:
    """Every other request names its own unit (keyed by unit, not request, id)."""
    return {"unit_id": f"user-{i}"} if i % 2 else {}


def by_partition(records: list[dict[str, Any]], partitions: int) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(partition_for(partition_key(r).encode(), partitions), []).append(r)
    return out


def joined_counts(messages: list[Any], rollout_id: str) -> tuple[int, int]:
    """Return (label n, latency n) over the latest summary of every cell of the rollout."""
    latest: dict[str, events.CohortSummary] = {}
    for m in messages:
        s = events.decode(events.CohortSummary, m.value())
        if s.rollout_id == rollout_id:
            latest[s.key] = s
    label = sum(s.metrics["label"].n for s in latest.values() if "label" in s.metrics)
    latency = sum(s.metrics["latency_ms"].n for s in latest.values() if "latency_ms" in s.metrics)
    return label, latency


def run_clients(settings: Settings, spawn: Any, rollout_id: str, produce: Produce, *,
                mix_python: bool) -> None:
    """Predictions and outcomes from the non-Python client (with ``mix_python``, the odd
    outcomes from the Python publisher instead: every outcome must then meet its
    prediction on the partition murmur2 gives both clients)."""
    apply_topics(settings.kafka, settings.topics)
    partitions = check_copartitioned(settings.kafka, settings.topics)
    spawn("worker", "--window-ms", "1000")
    now_ms = int(time.time() * 1000)
    preds = [{"v": 1, "request_id": f"go-{i}", "rollout_id": rollout_id, "model_version": "m",
              "arm": "canary" if i % 3 == 0 else "baseline", "ts_ms": now_ms + i,
              "latency_ms": 10.0 + i % 7, **_unit(i)} for i in range(REQUESTS)]
    outs = [{"v": 1, "request_id": f"go-{i}", "rollout_id": rollout_id, "ts_ms": now_ms + i + 50,
             "label": float(i % 2), **_unit(i)} for i in range(REQUESTS)]
    for topic, records in ((settings.topics.predictions, preds),
                           (settings.topics.outcomes, outs[0::2] if mix_python else outs)):
        for partition, group in sorted(by_partition(records, partitions).items()):
            produce(settings, topic, partition, group)
    if mix_python:
        with Publisher(settings=settings) as pub:
            for out in outs[1::2]:
                pub.outcome(**{k: v for k, v in out.items() if k != "v"})

    def done(msgs: list[Any]) -> bool:
        return joined_counts(msgs, rollout_id) == (REQUESTS, REQUESTS)

    msgs = read_topic(settings, settings.topics.cohorts, until=done, timeout_s=60)
    assert joined_counts(msgs, rollout_id) == (REQUESTS, REQUESTS)


def test_tansu_cli_events_reach_a_cohort_summary(settings: Settings, spawn: Any,
                                                 unique: str) -> None:
    """JSON events produced by the Tansu CLI (a Rust client) to the murmur2 partition of
    their request_id are joined into cohort summaries with exact counts.

    Not mixed with another producer: Tansu 0.6 advances a partition's offset by one per
    `cat produce` batch, so a later producer's record would reuse an offset."""
    run_clients(settings, spawn, f"r-{unique}", tansu_produce, mix_python=False)


def test_kafkajs_events_reach_a_cohort_summary(settings: Settings, spawn: Any,
                                              unique: str) -> None:
    """A Node.js service publishing with KafkaJS, one event per message and its default
    (murmur2) partitioner, co-partitions with the Python publisher and is joined exactly."""
    kafkajs_dir()
    run_clients(settings, spawn, f"r-{unique}", kafkajs_produce, mix_python=True)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt: kcat)")
def test_kcat_events_reach_a_cohort_summary(settings: Settings, spawn: Any, unique: str) -> None:
    """kcat with the murmur2 partitioner co-partitions with the Python publisher."""
    run_clients(settings, spawn, f"r-{unique}", kcat_produce, mix_python=True)
