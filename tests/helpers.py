"""Builders for events used across unit tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from streammon.control.keys import Signer, dev_keyring
from streammon.devstack import free_port, redis_argv, spawn_logged, stop_process
from streammon.events import Outcome, Prediction

DEV_KEYS = dev_keyring()
DECIDER_KEY = DEV_KEYS.signer("decider")
OPERATOR_KEY = DEV_KEYS.signer("operator")
ACTUATOR_KEY = DEV_KEYS.signer("actuator")
# a serving node's own key pair: a principal nobody trusts to steer rollouts
SERVING_NODE_KEY = Signer("serving-node", bytes(range(32)))
# a wall-clock origin for commands in integration tests (commands expire 10 min after)
NOW_MS = int(time.time() * 1000)


def pred(request_id: str, ts_ms: int = 1_000, **kw: Any) -> Prediction:
    fields: dict[str, Any] = {"rollout_id": "r1", "model_version": "v2", "arm": "canary",
                              "segment": "all", "latency_ms": 10.0}
    fields.update(kw)
    return Prediction(request_id=request_id, ts_ms=ts_ms, **fields)


def outcome(request_id: str, ts_ms: int = 2_000, label: float | None = 1.0, **kw: Any) -> Outcome:
    return Outcome(request_id=request_id, rollout_id=kw.pop("rollout_id", "r1"), ts_ms=ts_ms,
                   label=label, **kw)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` every 50 ms until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def pings(client: redis.Redis) -> bool:
    """Return True if the Redis server behind ``client`` answers PING."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class PrivateRedis:
    """A Redis server of a test's own (on a free port) that the test may stop and restart."""

    def __init__(self, directory: Path, *extra: str, password: str | None = None) -> None:
        self.port, self.directory, self.extra = free_port(), directory, extra
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.proc = spawn_logged(redis_argv(self.port, self.directory, *self.extra),
                                 self.directory / f"redis-{self.port}.log")
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        try:
            assert wait_until(lambda: pings(client), 10.0), "private Redis did not start"
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
