"""Benchmark (not a test): rollback produce -> 50 routers all routing to the baseline.

Starts its own embedded stack (Tansu + Redis) and a real ``streammon actuator`` child
process, pins the baseline, then for each path runs ``--trials`` trials of: step the
canary to 50 % (wait until every router has it), produce a signed ``rollback``, and time
from just before ``produce()`` to the moment the last of ``--routers`` routers switched
(each router stamps ``changed_at_s`` when it swaps its snapshot). After each trial every
router is checked to send a sample of units to the baseline.

Paths (all in one run, one after the other, so they never compete for the 2 cores):

- ``redis``: actuator process -> Lua write + PUBLISH -> each router's pub/sub refresh.
- ``follower``: one :class:`~streammon.sdk.control_follower.ControlFollower` in the router process
  reads the control topic and offers each command to every router (no Redis thread).
- ``both``: routers run their Redis refresh *and* are fed by the follower (deployment
  shape); whichever copy of the rollback arrives first counts.

Prints a table, then one JSON line (the contract with ``bench/run_all.py``)::

    python bench/bench_switch.py [--routers 50] [--trials 200] [--paths redis,follower,both]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streammon import events
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control.commands import make_command, route_key
from streammon.control.keys import DECIDER, dev_keyring
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import DevStack, StackInfo, stop_process
from streammon.events import Action
from streammon.sdk.control_follower import ControlFollower
from streammon.sdk.router import Router
from streammon.sim.demo import spawn_streammon

TARGET_P99_MS = 250.0
TRIAL_TIMEOUT_S = 5.0
SAMPLE_UNITS = [f"user-{i}" for i in range(100)]


class Bench:
    """One rollout, one producer, and a running seq shared by every path."""

    def __init__(self, settings: Settings, rollout_id: str) -> None:
        self.settings = settings
        self.rollout_id = rollout_id
        self.seq = 0
        self.producer = Producer(settings.kafka.to_librdkafka(**{"linger.ms": 0, "acks": "all"}))

    def send(self, action: Action, fraction: float) -> tuple[int, float]:
        """Produce the next signed command; return (seq, monotonic time before produce)."""
        self.seq += 1
        if self.seq == 1:
            action = "start"
        cmd = make_command(rollout_id=self.rollout_id, seq=self.seq, action=action,
                           baseline="v1", candidate="v2", fraction=fraction,
                           now_ms=int(time.time() * 1000),
                           key=self.settings.keys.signer(DECIDER))
        value = events.encode(cmd)
        started_s = time.monotonic()
        self.producer.produce(self.settings.topics.control, key=self.rollout_id, value=value)
        self.producer.flush(10)
        return self.seq, started_s

    def trial(self, routers: list[Router]) -> float:
        """Step to 50 %, then time one switch back to 0 % until every router switched.

        The switch back is a step to 0 % rather than a rollback: a rollback ends a rollout
        (the actuator refuses any step after it), and the routers do the same work for both.
        """
        seq, _ = self.send("step", 0.5)
        _wait_all(routers, seq)
        time.sleep(random.uniform(0.01, 0.05))  # de-phase from poll intervals
        seq, started_s = self.send("step", 0.0)
        if not _wait_all(routers, seq):
            return float("inf")
        for router in routers:
            if {router.route(u).version for u in SAMPLE_UNITS} != {"v1"}:
                raise RuntimeError(f"router at seq {seq} still routes to the candidate")
        return (max(r.changed_at_s or 0.0 for r in routers) - started_s) * 1000.0


def _wait_all(routers: list[Router], seq: int) -> bool:
    deadline = time.monotonic() + TRIAL_TIMEOUT_S
    return all(r.wait_for_seq(seq, max(0.0, deadline - time.monotonic())) for r in routers)


@contextlib.contextmanager
def _routers(bench: Bench, path: str, count: int) -> Iterator[list[Router]]:
    """Yield ``count`` routers wired for ``path``; stop them (and any follower) after."""
    routers = [Router.from_settings(bench.settings, rollout_id=bench.rollout_id,
                                    default_version="v1", refresh_s=5.0) for _ in range(count)]
    follower = ControlFollower(settings=bench.settings) if path != "redis" else None
    try:
        for router in routers:
            if follower is not None:
                follower.register(router)
            if path != "follower":
                router.start()
        if follower is not None:
            follower.start()
        yield routers
    finally:
        if follower is not None:
            follower.close()
        for router in routers:
            router.close()


def run_path(bench: Bench, path: str, routers: int, trials: int) -> np.ndarray:
    """Return the switch latencies (ms) of ``trials`` rollbacks on ``path``."""
    with _routers(bench, path, routers) as fleet:
        for _ in range(3):  # warm-up: connections, subscriptions, fetch sessions
            bench.trial(fleet)
        return np.array([bench.trial(fleet) for _ in range(trials)])


def _prepare(info: StackInfo, data_dir: Path) -> tuple[Settings, str]:
    unique = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True),
        redis=RedisSettings(url=info.redis_url), topics=TopicNames(prefix=f"bench{unique}."),
        app_id=f"bench-{unique}", data_dir=str(data_dir), keys=dev_keyring())
    admin = AdminClient({"bootstrap.servers": info.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(settings.topics.control, 1)]).values():
        future.result(10)
    client = redis.Redis.from_url(info.redis_url)
    Registry(client).pin(Checkpoint(version="v1", weights_uri="s3://bench/v1",
                                    content_hash="sha256:" + "b" * 64))
    client.close()
    return settings, f"bench-{unique}"


def _wait_applied(settings: Settings, rollout_id: str, timeout_s: float = 30.0) -> None:
    client = redis.Redis.from_url(settings.redis.url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if client.exists(route_key(rollout_id)):
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError("the actuator did not apply the start command in time")


def summarise(results: dict[str, np.ndarray], routers: int) -> dict[str, object]:
    """Print the table and return the JSON summary."""
    summary: dict[str, object] = {"bench": "switch", "routers": routers,
                                  "target_p99_ms": TARGET_P99_MS}
    print(f"{'path':10s} {'trials':>6s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} "
          f"{'max ms':>8s} {'timeouts':>8s}")
    for path, ms in results.items():
        p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
        timeouts = int(np.isinf(ms).sum())
        print(f"{path:10s} {ms.size:6d} {p50:8.1f} {p90:8.1f} {p99:8.1f} "
              f"{float(ms.max()):8.1f} {timeouts:8d}")
        summary.update({f"{path}_trials": int(ms.size), f"{path}_p50_ms": round(p50, 2),
                        f"{path}_p99_ms": round(p99, 2), f"{path}_timeouts": timeouts})
    summary["pass"] = all(float(np.percentile(ms, 99)) < TARGET_P99_MS
                          for ms in results.values())
    return summary


def main() -> int:
    """Run the benchmark; exit 0 when every path meets the p99 target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, default=50)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--paths", default="redis,follower,both")
    args = parser.parse_args()
    random.seed(5)
    with tempfile.TemporaryDirectory(prefix="bench-switch-") as tmp, \
            DevStack(data_dir=tmp) as info:
        settings, rollout_id = _prepare(info, Path(tmp))
        actuator = spawn_streammon(["actuator"], settings, Path(tmp) / "actuator.log")
        try:
            bench = Bench(settings, rollout_id)
            bench.send("start", 0.05)
            _wait_applied(settings, rollout_id)
            results = {path: run_path(bench, path, args.routers, args.trials)
                       for path in args.paths.split(",")}
            del bench  # closes the producer before the broker goes away
        finally:
            stop_process(actuator)
    summary = summarise(results, args.routers)
    print(json.dumps(summary))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
