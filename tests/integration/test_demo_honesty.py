"""The demo tells the truth: windows are judged on all their data, wrong outcomes fail."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from streammon import events
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control.keys import dev_keyring
from streammon.devstack import StackInfo
from streammon.envelope import decode_message
from streammon.kafka.topic_reader import read_topic
from streammon.sim.demo import run_scenario

pytestmark = pytest.mark.integration


def _settings(stack: StackInfo, tmp: Path, token: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.kafka_bootstrap, fast_group_join=True),
        redis=RedisSettings(url=stack.redis_url), topics=TopicNames(prefix=f"honest{token}."),
        app_id=f"streammon-honest-{token}", data_dir=str(tmp), keys=dev_keyring())


def _published(settings: Settings) -> list[events.Prediction]:
    now_ms = int(time.time() * 1000)
    return [p for _t, _k, raw in read_topic(settings, settings.topics.predictions)
            for p in decode_message(events.Prediction, raw, partition=0, partitions=1,
                                    now_ms=now_ms).events]


def _judged_counts(preds: list[events.Prediction], end_ms: int, window_ms: int,
                   origin_ms: int) -> int:
    """Count predictions before ``end_ms`` in (window, segment) cells that hold both arms."""
    cells: dict[tuple[int, str], Counter[str]] = {}
    for p in preds:
        if origin_ms <= p.ts_ms < end_ms:
            cells.setdefault(((p.ts_ms - origin_ms) // window_ms, p.segment), Counter())[p.arm] += 1
    return sum(c["baseline"] + c["canary"] for c in cells.values()
               if c["baseline"] and c["canary"])


def test_late_worker_judges_every_window_on_all_its_data(stack: StackInfo,
                                                         tmp_path: Path) -> None:
    """With the worker starting 6 s after traffic (a backlog that partitions catch up on
    unevenly), every judged window already counts every prediction it will ever hold."""
    token = uuid.uuid4().hex[:8]
    settings = _settings(stack, tmp_path, token)
    with contextlib.ExitStack() as services:
        timeline = services.enter_context((tmp_path / "timeline.txt").open("w"))
        console = Console(file=timeline, width=150)
        result = run_scenario(settings, services, console=console, regression=True, seed=5,
                              run_id=token, alpha=0.01, worker_delay_s=6.0)
        preds = _published(settings)
        diagnoses = [events.decode(events.Diagnosis, raw) for _t, _k, raw
                     in read_topic(settings, settings.topics.diagnostics)]
        start = next(events.decode(events.Command, raw) for _t, _k, raw
                     in read_topic(settings, settings.topics.control))
    assert start.action == "start" and start.spec is not None
    window_ms = start.spec.window_ms
    origin_ms = start.ts_ms - start.ts_ms % window_ms
    judged = [d for d in diagnoses if d.metrics]
    assert len(judged) >= 5, (tmp_path / "timeline.txt").read_text()
    for d in judged:
        latency = next(m for m in d.metrics if m.name == "latency_ms")
        want = _judged_counts(preds, d.window_start_ms + window_ms, window_ms, origin_ms)
        assert latency.n_baseline + latency.n_canary == want, (d.windows_closed, d.action)
    assert result.exit_code == 0, (tmp_path / "timeline.txt").read_text()


def test_demo_exits_non_zero_when_the_rollback_precedes_the_regression(tmp_path: Path) -> None:
    """`streammon demo` (what `make demo` runs) calls a rollback before the regression a
    wrong outcome, in red, and exits 1."""
    env = {**os.environ, "STREAMMON_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "data").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "streammon.cli", "demo", "--false-alarm-at-s", "3",
         "--reports-dir", str(tmp_path / "reports")],
        env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wrong outcome" in proc.stdout and "before the regression" in proc.stdout
    assert list((tmp_path / "reports").glob("*/report.html")), proc.stdout[-2000:]
