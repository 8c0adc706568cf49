"""Live checks: metrics endpoints of real processes, and the report read from real topics.

Tests that need a whole demo run take the session fixture ``demo_run`` (provided by the
lead's conftest: an object with ``settings``, ``rollout_id``, ``worker_metrics_port`` and
``actuator_metrics_port``, after the rollback was applied); until it exists they skip.
"""

from __future__ import annotations

import importlib.util
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Producer

from streammon import events
from streammon.config.settings import Settings
from streammon.control.actuator import Actuator
from streammon.control.commands import make_command
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import free_port
from streammon.kafka.topics import apply_topics
from streammon.ops.prometheus import actuator_registry, start_metrics_server
from streammon.ops.report import generate_report
from streammon.sdk.publisher import Publisher
from tests.helpers import DECIDER_KEY, NOW_MS, SERVING_NODE_KEY

KEY = DECIDER_KEY


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def sample(text: str, name: str, **labels: str) -> float | None:
    """Return the value of one sample in Prometheus text format, or None."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def demo_run(request: pytest.FixtureRequest) -> Any:
    try:
        return request.getfixturevalue("demo_run")
    except pytest.FixtureLookupError:
        pytest.skip("needs the session fixture `demo_run` (a finished demo scenario)")


def test_actuator_endpoint_counts_applied_rejected_and_the_rollback(
    settings: Settings, redis_client: redis.Redis, unique: str
) -> None:
    """A real actuator's Redis state, served over HTTP, shows commands applied and rejected
    and the rollback applied to the rollout."""
    base = f"v1-{unique}"  # pins are global in Redis: one version name per test
    Registry(redis_client).pin(Checkpoint(version=base, weights_uri="s3://m/v1",
                                          content_hash="sha256:" + "a" * 64))
    rid = f"r-{unique}"
    actuator = Actuator(settings=settings, client=redis_client)
    port = free_port()
    server = start_metrics_server(port, actuator_registry(redis_client))
    try:
        before = scrape(port)
        for seq, action, f in ((1, "start", 0.1), (2, "step", 0.2), (3, "rollback", 0.0)):
            assert actuator.apply(make_command(rollout_id=rid, seq=seq, action=action,
                                               baseline=base, candidate="v2", fraction=f,
                                               now_ms=NOW_MS + seq, key=KEY)) == "applied"
        forged = make_command(rollout_id=rid, seq=4, action="promote", baseline=base,
                              candidate="v2", fraction=1.0, now_ms=4, key=SERVING_NODE_KEY)
        assert actuator.apply(forged) == "rejected"
        after = scrape(port)
    finally:
        server.shutdown()
        server.server_close()

    def delta(result: str) -> float:
        name = "streammon_actuator_commands_total"
        return (sample(after, name, result=result) or 0) - (sample(before, name,
                                                                   result=result) or 0)

    assert delta("applied") == 3 and delta("rejected_signature") == 1
    assert sample(after, "streammon_route_commands_total", rollout_id=rid, action="rollback") == 1
    assert sample(after, "streammon_route_phase", rollout_id=rid, phase="rolled_back") == 1
    assert sample(after, "streammon_route_canary_fraction", rollout_id=rid) == 0.0


def _load_report_builder() -> Any:
    """Import tests/unit/ops/test_report.py's decided_rollout (the pure decider's synthetic run)."""
    path = Path(__file__).parent.parent / "unit" / "ops" / "test_report.py"
    spec = importlib.util.spec_from_file_location("report_builder", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_report_read_back_from_real_topics(settings: Settings, tmp_path: Path) -> None:
    """A decided rollout written to real cohorts/control/diagnostics topics is read back by
    generate_report(settings, rollout_id, dir) into a page with the rollback and charts."""
    builder = _load_report_builder()
    summaries, commands, diagnoses = builder.decided_rollout()
    apply_topics(settings.kafka, settings.topics)
    producer = Producer(settings.kafka.to_librdkafka())
    names = settings.topics
    for topic, items in ((names.cohorts, summaries), (names.control, commands),
                         (names.diagnostics, diagnoses)):
        for item in items:
            producer.produce(topic, key=item.rollout_id.encode(), value=events.encode(item))
    assert producer.flush(10) == 0
    page = generate_report(settings, summaries[0].rollout_id, tmp_path / "out")
    html = page.read_text()
    assert "ROLLED BACK" in html and "latency_ms" in html and "label" in html
    assert (tmp_path / "out" / "ramp.png").read_bytes().startswith(b"\x89PNG")


def test_worker_endpoint_counts_joined_events(settings: Settings, spawn: Any,
                                              unique: str) -> None:
    """A worker started with --metrics-port serves non-zero consumed and joined counts."""
    apply_topics(settings.kafka, settings.topics)
    port = free_port()
    spawn("worker", "--window-ms", "1000", "--metrics-port", str(port))
    now_ms = int(time.time() * 1000)
    with Publisher(settings=settings) as pub:
        for i in range(200):
            pub.prediction(request_id=f"m{i}", rollout_id=f"r-{unique}", model_version="v",
                           arm="canary", ts_ms=now_ms + i, latency_ms=3.0)
            pub.outcome(request_id=f"m{i}", rollout_id=f"r-{unique}", ts_ms=now_ms + i,
                        label=1.0)
    deadline, joined = time.monotonic() + 60, 0.0
    while time.monotonic() < deadline and joined < 200:
        try:
            text = scrape(port)
        except OSError:
            text = ""
        joined = sum(sample(text, "streammon_join_events_total", partition=str(p),
                            kind="joined") or 0 for p in range(16))
        time.sleep(0.5)
    assert joined == 200
    assert (sample(text, "streammon_join_events_consumed_total") or 0) >= 400


def test_demo_run_endpoints_show_joins_and_the_rollback(request: pytest.FixtureRequest) -> None:
    """During a demo run the worker endpoint shows joined events and the rolled-back phase,
    and the actuator endpoint shows the applied rollback command."""
    run = demo_run(request)
    worker = scrape(run.worker_metrics_port)
    joined = sum(s for s in (sample(worker, "streammon_join_events_total", partition=str(p),
                                    kind="joined") for p in range(64)) if s)
    assert joined > 0
    assert sample(worker, "streammon_rollout_phase", rollout_id=run.rollout_id,
                  phase="rolled_back") == 1
    actuator = scrape(run.actuator_metrics_port)
    assert sample(actuator, "streammon_route_commands_total", rollout_id=run.rollout_id,
                  action="rollback") == 1


def test_demo_run_report(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The report of a real demo run names every metric and marks the rollback."""
    run = demo_run(request)
    html = generate_report(run.settings, run.rollout_id, tmp_path).read_text()
    assert "ROLLED BACK" in html
    for metric in ("label", "latency_ms", "error"):
        assert f'alt="effect_{metric}"' in html
