"""Seeded control-plane faults: rollouts driven through a durable stack while the
actuator is SIGKILLed, the broker is SIGKILLed and Redis restarts, at seeded moments.

For every seed, two rollouts run side by side: a *regression* (start, steps, then the
decider's rollback) and a *healthy* one (start, steps, then a promote). The proposer
acts like the decider: it proposes on the applied state it reads from Redis and waits
until its command is in the route log. Faults hit before each proposal with seeded
probabilities. The table counts, per seed, the faults injected and the outcomes:

- lost: a produced command that never reached the route log;
- double: an applied command that appears twice in a log (or a seq that repeats);
- the regression must end rolled back, the healthy rollout promoted.

Not covered here: SIGKILL of the Faust worker (the join's exactness under SIGKILL is
tests/integration/test_exactness_crash.py) and cohort counts against the truth.

    .venv/bin/python scripts/chaos.py --seeds 10      (make chaos)
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streammon import events
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control.commands import RouteState, log_key, make_command, route_key
from streammon.control.keys import DECIDER, dev_keyring
from streammon.control.registry import Checkpoint, Registry
from streammon.devstack import DevStack, StackInfo
from streammon.events import Action
from streammon.sim.demo import spawn_streammon

APPLY_TIMEOUT_S = 45.0
STEPS = (0.05, 0.1, 0.25, 0.5)


@dataclass
class SeedResult:
    """Faults injected and outcomes of one seed."""

    seed: int
    faults: dict[str, int] = field(default_factory=lambda: {"actuator": 0, "broker": 0,
                                                            "redis": 0})
    produced: int = 0
    lost: int = 0
    double: int = 0
    regression: str = ""
    healthy: str = ""


class Chaos:
    """One durable stack, one actuator child process, seeded faults."""

    def __init__(self, stack: DevStack, info: StackInfo, work: Path) -> None:
        self.stack, self.work = stack, work
        self.settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True),
            redis=RedisSettings(url=info.redis_url), topics=TopicNames(prefix="chaos."),
            app_id="chaos", data_dir=str(work), keys=dev_keyring())
        self.signer = self.settings.keys.signer(DECIDER)
        self.client = redis.Redis.from_url(info.redis_url, socket_timeout=2.0)
        self.actuator: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def setup(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.settings.kafka.bootstrap_servers})
        for future in admin.create_topics([NewTopic(self.settings.topics.control, 1)]).values():
            future.result(15)
        Registry(self.client).pin(Checkpoint(version="v1", weights_uri="s3://m/v1",
                                             content_hash="sha256:" + "c" * 64))
        self.start_actuator()

    def start_actuator(self) -> None:
        self.restarts += 1
        self.actuator = spawn_streammon(["actuator"], self.settings,
                                        self.work / f"actuator-{self.restarts}.log")

    def fault(self, rng: random.Random, result: SeedResult) -> None:
        """Maybe inject one fault, chosen from the seed."""
        roll = rng.random()
        if roll < 0.2 and self.actuator is not None:
            self.actuator.send_signal(signal.SIGKILL)
            self.actuator.wait()
            self.start_actuator()
            result.faults["actuator"] += 1
        elif roll < 0.3:
            self.stack.restart_broker()
            result.faults["broker"] += 1
        elif roll < 0.4:
            self.stack.restart_redis()
            result.faults["redis"] += 1

    def applied(self, rid: str) -> RouteState | None:
        for _ in range(100):
            try:
                raw = self.client.get(route_key(rid))
                return None if raw is None else msgspec.json.decode(raw, type=RouteState)
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("Redis did not come back")

    def propose(self, rid: str, action: Action, fraction: float, stage: int,
                result: SeedResult) -> None:
        held = self.applied(rid)
        cmd = make_command(rollout_id=rid, seq=(held.seq if held else 0) + 1, action=action,
                           baseline="v1", candidate="v2", fraction=fraction, stage=stage,
                           now_ms=int(time.time() * 1000), key=self.signer,
                           epoch=held.epoch if held else f"e-{rid}")
        producer = Producer(self.settings.kafka.to_librdkafka(acks="all"))
        producer.produce(self.settings.topics.control, key=rid, value=events.encode(cmd))
        if producer.flush(30):
            raise RuntimeError("a command could not be produced")
        result.produced += 1
        deadline = time.monotonic() + APPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            if cmd.sig in self.log_sigs(rid):
                return
            time.sleep(0.05)
        result.lost += 1

    def log_sigs(self, rid: str) -> list[str]:
        try:
            return [json.loads(e)["sig"] for e in self.client.lrange(log_key(rid), 0, -1)]
        except redis.RedisError:
            return []

    def run_seed(self, seed: int) -> SeedResult:
        rng, result = random.Random(seed), SeedResult(seed)
        runs = {"regression": f"chaos-{seed}-regression", "healthy": f"chaos-{seed}-healthy"}
        for stage, fraction in enumerate(STEPS):
            for rid in runs.values():
                self.fault(rng, result)
                self.propose(rid, "start" if stage == 0 else "step", fraction, stage, result)
        self.fault(rng, result)
        self.propose(runs["regression"], "rollback", 0.0, len(STEPS) - 1, result)
        self.fault(rng, result)
        self.propose(runs["healthy"], "promote", 1.0, len(STEPS) - 1, result)
        for kind, rid in runs.items():
            sigs = self.log_sigs(rid)
            result.double += len(sigs) - len(set(sigs))
            state = self.applied(rid)
            setattr(result, kind, state.phase if state else "missing")
        return result

    def close(self) -> None:
        if self.actuator is not None:
            self.actuator.terminate()
            self.actuator.wait(10)
        self.client.close()


def main(argv: list[str] | None = None) -> int:
    """Run the seeds; print the table; exit 1 unless every seed came out right."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args(argv)
    results: list[SeedResult] = []
    with tempfile.TemporaryDirectory(prefix="streammon-chaos-") as tmp:
        stack = DevStack(data_dir=tmp, durable=True)
        with stack as info:
            chaos = Chaos(stack, info, Path(tmp))
            try:
                chaos.setup()
                for seed in range(args.seeds):
                    results.append(chaos.run_seed(seed))
                    print(_row(results[-1]), flush=True)
            finally:
                chaos.close()
    ok = all(r.lost == 0 and r.double == 0 and r.regression == "rolled_back"
             and r.healthy == "promoted" for r in results)
    print(f"{'PASS' if ok else 'FAIL'}: {len(results)} seeds, "
          f"{sum(r.lost for r in results)} lost, {sum(r.double for r in results)} double-applied, "
          f"{sum(r.regression == 'rolled_back' for r in results)}/{len(results)} regressions "
          f"rolled back, {sum(r.healthy == 'rolled_back' for r in results)} healthy rolled back")
    return 0 if ok else 1


def _row(r: SeedResult) -> str:
    if r.seed == 0:
        print("seed  kill-actuator  kill-broker  restart-redis  commands  lost  double  "
              "regression   healthy")
    return (f"{r.seed:4d}  {r.faults['actuator']:13d}  {r.faults['broker']:11d}  "
            f"{r.faults['redis']:13d}  {r.produced:8d}  {r.lost:4d}  {r.double:6d}  "
            f"{r.regression:11s}  {r.healthy}")


if __name__ == "__main__":
    sys.exit(main())
