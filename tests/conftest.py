"""Shared fixtures: the embedded stack for the whole session, settings, unique names."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control.keys import dev_keyring
from streammon.devstack import DevStack, StackInfo

sys.path.insert(0, str(Path(__file__).parent))  # for `from helpers import ...`


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """Start the embedded broker and Redis once per session; stop them at the end."""
    data_dir = tmp_path_factory.mktemp("devstack")
    with DevStack(data_dir=data_dir, tie_to_parent=True) as info:
        yield info


@pytest.fixture
def unique() -> str:
    """Return a short unique token for topic prefixes, groups and rollout ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(stack: StackInfo, unique: str, tmp_path: Path) -> Settings:
    """Return settings pointing at the session stack, with topics under a unique prefix."""
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.kafka_bootstrap, fast_group_join=True),
        redis=RedisSettings(url=stack.redis_url),
        topics=TopicNames(prefix=f"t{unique}."),
        app_id=f"streammon-test-{unique}",
        data_dir=str(tmp_path),
        keys=dev_keyring(),
    )


@pytest.fixture
def redis_client(stack: StackInfo) -> Iterator[object]:
    """Return a redis-py client on the session's Redis."""
    import redis

    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as an integration test."""
    for item in items:
        if f"{os.sep}integration{os.sep}" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def spawn(settings: Settings, tmp_path: Path) -> Iterator[object]:
    """Return a function that starts ``streammon <args>`` as a child process with the test's
    settings; every process it started is stopped (SIGTERM, then SIGKILL) at teardown."""
    import subprocess

    from streammon.devstack import stop_process
    from streammon.sim.demo import spawn_streammon

    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = spawn_streammon(list(args), settings, tmp_path / f"{args[0]}-{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


@dataclasses.dataclass
class LoopRun:
    """A finished demo scenario whose worker and actuator still run until the session ends."""

    settings: Settings
    rollout_id: str
    phase: str | None
    exit_code: int
    work_dir: Path
    worker_metrics_port: int
    actuator_metrics_port: int


def _run_loop(stack: StackInfo, tmp: Path, *, regression: bool) -> Iterator[LoopRun]:
    """Run one scenario; alpha = 0.01 bounds a false rollback (a flaky test) at 1%."""
    import contextlib

    from rich.console import Console

    from streammon.devstack import free_port
    from streammon.sim.demo import run_scenario

    token = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.kafka_bootstrap, fast_group_join=True),
        redis=RedisSettings(url=stack.redis_url), topics=TopicNames(prefix=f"loop{token}."),
        app_id=f"streammon-loop-{token}", data_dir=str(tmp), keys=dev_keyring())
    worker_port, actuator_port = free_port(), free_port()
    with contextlib.ExitStack() as services:
        timeline = services.enter_context((tmp / "timeline.txt").open("w"))
        console = Console(file=timeline, width=150, highlight=False)
        result = run_scenario(settings, services, console=console, regression=regression,
                              seed=11, max_traffic_s=150, run_id=token, alpha=0.01,
                              worker_args=("--metrics-port", str(worker_port)),
                              actuator_args=("--metrics-port", str(actuator_port)))
        timeline.flush()
        yield LoopRun(settings, result.rollout_id, result.phase, result.exit_code,
                      result.work_dir, worker_port, actuator_port)


@pytest.fixture(scope="session")
def regression_run(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopRun]:
    """Run the regression scenario once per session (publish → join → decide → control →
    Redis → router); its worker keeps running (metrics on ``metrics_port``) until the end."""
    yield from _run_loop(stack, tmp_path_factory.mktemp("regression"), regression=True)


@pytest.fixture(scope="session")
def demo_run(regression_run: LoopRun) -> LoopRun:
    """The regression scenario, for tests that inspect a real demo run (report, metrics)."""
    return regression_run


@pytest.fixture(scope="session")
def healthy_run(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopRun]:
    """Run the healthy scenario once per session; the candidate should be promoted."""
    yield from _run_loop(stack, tmp_path_factory.mktemp("healthy"), regression=False)
