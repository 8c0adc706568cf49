"""Seeded faults on the whole loop: two real rollouts, one regressing, while the worker, the
actuator and the broker are SIGKILLed and Redis restarts, at moments drawn from a seed.

Per seed, on a fresh durable embedded stack (Tansu on its S3 engine against a loopback moto
server, so topics survive a broker kill; Redis with its append-only file), a real worker
(join + decider, ``streammon worker``) and a real actuator (``streammon actuator``) run as
child processes. Two rollouts start side by side and simulated traffic is served through
real routers and one publisher: a *regression* (the candidate regresses ``REGRESSION_AT_S``
into the traffic) and a *healthy* one. The seed draws the moment of each fault: one SIGKILL
of the worker, one of the actuator, one of the broker and one Redis restart, plus up to two
more faults of random kinds, within ``FAULT_WINDOW_S``; each killed process is started again
at once.

Checks, per seed (the exit code is 1 unless every one holds for every seed):

- the regression ends rolled back, by the decider;
- the healthy rollout is not rolled back (it is promoted if the seed's traffic sufficed);
- cohort counts equal the truth: per rollout and arm, the predictions and the joined labels
  in the cohort topic's latest summaries (summed over windows and segments) equal what the
  publisher's delivery reports say the broker acknowledged;
- no command lost or applied twice: the control topic, replayed through the actuator's own
  rule (:func:`streammon.control.commands.plan`), gives exactly the route logs in Redis
  (lost: should have applied, is not in the log; double: a signature or seq twice in a log;
  extra: in a log, though the rule refuses it).

The S3 engine is slow (moto is a Python server, and this machine has 2 shared cores), so the
load is shaped to what it carries: 500 ms publisher envelopes, one join partition, one
segment (see ``SEGMENTS``, ``PUBLISH_LINGER_MS``).

    .venv/bin/python scripts/chaos.py --seeds 10      (make chaos; about 9 minutes)
    .venv/bin/python scripts/chaos.py --seeds 1 --first-seed 3 --keep /tmp/c   (logs kept)
    .venv/bin/python scripts/chaos.py --seeds 1 --faults broker@8,worker@15
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import redis

from streammon import events
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control import operator_commands
from streammon.control.commands import RouteState, log_key, plan, route_key
from streammon.control.keys import dev_keyring
from streammon.control.store import connect
from streammon.devstack import DevStack, StackInfo, stop_process
from streammon.events import RolloutSpec
from streammon.kafka.topic_reader import Record, TopicReader
from streammon.kafka.topics import TopicSpec, apply_topics, load_specs
from streammon.sdk.publisher import Publisher
from streammon.sdk.router import Router
from streammon.sim.demo import JOIN_WINDOW_MS, spawn_streammon
from streammon.sim.serve import demo_spec, pin_baseline
from streammon.sim.traffic_model import Scenario, TrafficSim

REGRESSION_AT_S = 10.0
RATE_PER_S = 300.0
"""Requests per second per rollout (two rollouts share the publisher)."""
FAULT_WINDOW_S = (2.0, 20.0)
"""Faults land this many seconds into the traffic: before, around and after the regression."""
SEGMENTS = (("all", 1.0, 0.0),)
"""One segment and one join partition: the decider writes one changelog record per cohort
summary, and on Tansu's S3 engine (moto) its producer manages ~20 records/s on this 2-core
machine; two segments on four partitions send ~100 summaries/s and it falls behind."""
PUBLISH_LINGER_MS = 500
"""Tansu's S3 engine against moto stores every produced batch as an object and lists them
on fetch: at the publisher's default 20 ms linger (hundreds of small messages a second)
the join falls minutes behind; half-second envelopes keep it in step (measured here)."""
MAX_TRAFFIC_S = 50.0
ALPHA = 0.01
"""The decider's false-rollback bound per rollout (as in the loop tests): a smaller alpha
makes a healthy promotion need more traffic than a seed serves."""
COHORT_WAIT_S = 120.0
KINDS = ("worker", "actuator", "broker", "redis")
_STATE = msgspec.json.Decoder(RouteState)


@dataclass
class Truth:
    """What the broker acknowledged, from the publisher's delivery reports."""

    predictions: dict[str, tuple[str, str]] = field(default_factory=dict)
    """request_id -> (rollout_id, arm)."""
    outcomes: set[str] = field(default_factory=set)
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_delivery(self, topic: str, payloads: list[bytes], acknowledged: bool) -> None:
        """Record one delivery report (a Publisher ``on_delivery`` hook)."""
        with self.lock:
            if not acknowledged:
                self.failed += len(payloads)
                return
            for raw in payloads:
                event = json.loads(raw)
                if "arm" in event:
                    self.predictions[event["request_id"]] = (event["rollout_id"], event["arm"])
                elif event.get("label") is not None:
                    self.outcomes.add(event["request_id"])

    def counts(self) -> Counter[tuple[str, str, str]]:
        """Return (rollout, arm, "n" | "labels") -> count."""
        out: Counter[tuple[str, str, str]] = Counter()
        with self.lock:
            for request_id, (rollout, arm) in self.predictions.items():
                out[rollout, arm, "n"] += 1
                if request_id in self.outcomes:
                    out[rollout, arm, "labels"] += 1
        return out


@dataclass
class SeedResult:
    """Faults injected and outcomes of one seed."""

    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)
    commands: int = 0
    applied: int = 0
    lost: int = 0
    double: int = 0
    extra: int = 0
    regression: str = ""
    healthy: str = ""
    regression_by: str = ""
    cohorts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """"rollout/arm n|labels" -> (cohort topic, truth)."""
    undelivered: int = 0
    crashed: str = ""
    seconds: float = 0.0
    ended_at_s: dict[str, float] = field(default_factory=dict)
    """Seconds into the traffic at which each rollout's router saw its terminal phase."""

    @property
    def counts_ok(self) -> bool:
        return bool(self.cohorts) and all(got == want for got, want in self.cohorts.values())

    @property
    def ok(self) -> bool:
        return (self.lost == self.double == self.extra == 0 and not self.crashed
                and self.regression == "rolled_back" and self.regression_by == "decider"
                and self.healthy != "rolled_back" and self.counts_ok)


class Services:
    """The seed's worker and actuator children, restarted after a kill."""

    def __init__(self, settings: Settings, work: Path, worker_loglevel: str) -> None:
        self.settings, self.work, self.loglevel = settings, work, worker_loglevel
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def start(self, name: str) -> None:
        self.starts[name] += 1
        args = ["worker", "--window-ms", str(JOIN_WINDOW_MS), "--ttl-ms", "30000",
                "--loglevel", self.loglevel] if name == "worker" else ["actuator"]
        self.procs[name] = spawn_streammon(args, self.settings,
                                           self.work / f"{name}-{self.starts[name]}.log")

    def kill_and_restart(self, name: str) -> None:
        with self.lock:
            proc = self.procs[name]
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            self.start(name)

    def died(self) -> str:
        with self.lock:
            return ", ".join(n for n, p in self.procs.items() if p.poll() is not None)

    def dump_stacks(self) -> None:
        """SIGABRT the worker: its log gets every thread's stack (PYTHONFAULTHANDLER)."""
        proc = self.procs.get("worker")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)


def chaos_spec(rollout_id: str) -> RolloutSpec:
    """The demo's rollout (three guarded metrics) ramped in two stages, 25 % then 50 %, on
    1 s windows, two windows per stage: a healthy run is promoted within about 30 s."""
    return msgspec.structs.replace(demo_spec(rollout_id, window_ms=JOIN_WINDOW_MS,
                                             grace_ms=800, alpha=ALPHA),
                                   strategy="stages", stages=[0.25, 0.5], f0=0.25,
                                   step_windows=2, min_samples_per_stage=150)


def chaos_topics() -> list[TopicSpec]:
    """The topic specs with one partition for predictions and outcomes (see ``SEGMENTS``)."""
    return [dataclasses.replace(spec, partitions=1) if spec.name in ("predictions", "outcomes")
            else spec for spec in load_specs()]


def fault_plan(rng: random.Random) -> list[tuple[float, str]]:
    """Return (seconds into the traffic, kind): each kind once, then up to two more."""
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(rng.randint(0, 2))]
    return sorted((round(rng.uniform(*FAULT_WINDOW_S), 1), k) for k in kinds)


def inject(faults: list[tuple[float, str]], t0: float, stack: DevStack, services: Services,
           result: SeedResult, stop: threading.Event, restarter: ThreadPoolExecutor) -> None:
    """Inject the planned faults at their moments (a fault thread).

    Processes are restarted by ``restarter``, one thread that lives as long as the run: a
    child dies with the *thread* that started it (PR_SET_PDEATHSIG), so a short-lived fault
    thread would take the restarted broker, Redis or worker with it when it ends.
    """
    for at_s, kind in faults:
        if stop.wait(max(0.0, t0 + at_s - time.monotonic())):
            return
        started = time.monotonic()
        if kind in ("worker", "actuator"):
            restarter.submit(services.kill_and_restart, kind).result()
        elif kind == "broker":
            restarter.submit(stack.restart_broker).result()
        else:
            restarter.submit(stack.restart_redis).result()
        result.faults[kind] += 1
        result.fault_log.append(f"{kind}@{started - t0:.1f}s({time.monotonic() - started:.1f}s)")


def serve_both(routers: dict[str, Router], sims: dict[str, TrafficSim], publisher: Publisher,
               candidate: str, t0: float, services: Services, result: SeedResult) -> None:
    """Serve both rollouts until both are over (plus 2 s) or ``MAX_TRAFFIC_S`` passes."""
    last, done_at = time.monotonic(), None
    while (elapsed := time.monotonic() - t0) < MAX_TRAFFIC_S:
        now, wall_s = time.monotonic(), time.time()
        for name, sim in sims.items():
            router = routers[name]
            for _ in range(sim.arrivals(now - last)):
                unit = f"user-{int(sim.rng.integers(1 << 40))}"
                a = router.route(unit)
                publisher.prediction(**sim.request(
                    unit_id=unit, version=a.version, arm=a.arm, candidate=candidate,
                    weights_seq=a.weights_seq, now_s=wall_s, elapsed_s=elapsed))
            for outcome in sim.due_outcomes(wall_s):
                publisher.outcome(**outcome)
        last = now
        for name, router in routers.items():
            snap = router.snapshot
            if snap is not None and snap.phase in ("rolled_back", "promoted"):
                result.ended_at_s.setdefault(name, round(elapsed, 1))
        if len(result.ended_at_s) == len(routers):
            done_at = done_at or elapsed
            if elapsed - done_at > 2.0:
                break
        if not services.lock.locked() and (dead := services.died()):
            result.crashed = dead
            break
        time.sleep(0.01)
    for sim in sims.values():  # the outcomes still due: every published request may join
        for outcome in sim.due_outcomes(float("inf")):
            publisher.outcome(**outcome)


def read_quiet(settings: Settings, topic: str, quiet_s: float = 3.0) -> list[Record]:
    """Read ``topic`` from the start until nothing new arrives for ``quiet_s``.

    Not :func:`read_topic`: Tansu's S3 engine reports a high watermark behind the last
    offset it has acknowledged, so "read up to the high watermark" can stop short.
    """
    out: list[Record] = []
    with TopicReader(settings, [topic]) as reader:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            batch = reader.poll(0.5)
            if batch:
                out += batch
                quiet_since = time.monotonic()
    return out


def check_commands(settings: Settings, client: redis.Redis, rollout_ids: list[str],
                   result: SeedResult) -> None:
    """Replay the control topic through the actuator's rule; compare with the route logs."""
    records = read_quiet(settings, settings.topics.control)
    cmds = [events.decode(events.Command, value) for _t, _k, value in records]
    for rid in rollout_ids:
        held: RouteState | None = None
        seen: set[str] = set()
        expected: list[str] = []
        for cmd in (c for c in cmds if c.rollout_id == rid):
            result.commands += 1
            if cmd.sig in seen:
                continue
            verdict, state = plan(held, cmd, now_ms=cmd.ts_ms)
            if verdict == "apply" and state is not None:
                held = msgspec.structs.replace(state, sig=cmd.sig)
                seen.add(cmd.sig)
                expected.append(cmd.sig)
        log = [json.loads(e) for e in client.lrange(log_key(rid), 0, -1)]
        sigs = [e["sig"] for e in log]
        seqs = [e["seq"] for e in log]
        result.applied += len(sigs)
        result.lost += len(set(expected) - set(sigs))
        result.extra += len(set(sigs) - set(expected))
        result.double += (len(sigs) - len(set(sigs))) + (len(seqs) - len(set(seqs)))


def check_cohorts(settings: Settings, truth: Truth, rollout_ids: list[str],
                  result: SeedResult) -> None:
    """Wait until the cohort topic's latest summaries match the truth (or time runs out)."""
    want = truth.counts()
    latest: dict[str, events.CohortSummary] = {}
    got: Counter[tuple[str, str, str]] = Counter()
    deadline = time.monotonic() + COHORT_WAIT_S
    with TopicReader(settings, [settings.topics.cohorts]) as reader:
        while time.monotonic() < deadline:
            batch = reader.poll(0.5, 5000)
            for _t, _k, value in batch:
                summary = events.decode(events.CohortSummary, value)
                latest[summary.key] = summary
            got = Counter()
            for s in latest.values():
                got[s.rollout_id, s.arm, "n"] += s.metrics["error"].n if "error" in s.metrics \
                    else 0
                got[s.rollout_id, s.arm, "labels"] += s.metrics["label"].n \
                    if "label" in s.metrics else 0
            if not batch and all(got[k] == want[k] for k in set(want) | set(got)):
                break
    for rid in rollout_ids:
        kind = "regression" if rid.endswith("regression") else "healthy"
        for arm in ("baseline", "canary"):
            for what in ("n", "labels"):
                result.cohorts[f"{kind}/{arm} {what}"] = (got[rid, arm, what],
                                                          want[rid, arm, what])


def _parse_faults(text: str | None) -> list[tuple[float, str]] | None:
    if not text:
        return None
    plan = []
    for item in text.split(","):
        kind, _, at_s = item.partition("@")
        if kind not in KINDS:
            raise SystemExit(f"--faults: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        plan.append((float(at_s), kind))
    return sorted(plan)


def run_seed(stack: DevStack, info: StackInfo, seed: int, work_root: Path,
             restarter: ThreadPoolExecutor, faults_override: list[tuple[float, str]] | None,
             worker_loglevel: str) -> SeedResult:
    """One seed: fresh topics and services, two rollouts, the seed's faults, the checks."""
    rng, result = random.Random(seed), SeedResult(seed)
    began = time.monotonic()
    token = f"{seed}-{uuid.uuid4().hex[:6]}"
    work = work_root / f"seed-{token}"
    work.mkdir(parents=True)
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True),
        redis=RedisSettings(url=info.redis_url), topics=TopicNames(prefix=f"chaos{token}."),
        app_id=f"streammon-chaos-{token}", data_dir=str(work), keys=dev_keyring())
    apply_topics(settings.kafka, settings.topics, chaos_topics())
    client = connect(settings, socket_timeout=5.0)
    services = Services(settings, work, worker_loglevel)
    truth, stop = Truth(), threading.Event()
    names = {"regression": f"chaos-{token}-regression", "healthy": f"chaos-{token}-healthy"}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(services.stop)
        services.start("worker")
        services.start("actuator")
        specs = {k: chaos_spec(rid) for k, rid in names.items()}
        pin_baseline(client, work, specs["regression"].baseline)
        routers = {k: cleanup.enter_context(Router.from_settings(
            settings, rollout_id=rid, default_version=specs[k].baseline, refresh_s=0.5))
            for k, rid in names.items()}
        for spec in specs.values():
            operator_commands.start_rollout(settings, spec, client=client)
        for router in routers.values():
            if not router.wait_for_seq(1, timeout_s=60):
                result.crashed = "no start applied"
                return result
        publisher = Publisher(settings=settings, on_delivery=truth.on_delivery,
                              batch_linger_ms=PUBLISH_LINGER_MS, batch_max_events=5000,
                              producer_options={"logger": logging.getLogger("chaos.publisher")})
        cleanup.callback(publisher.close, 60)
        sims = {k: TrafficSim(Scenario(regression_at_s=REGRESSION_AT_S if k == "regression"
                                       else None, rate_per_s=RATE_PER_S, segments=SEGMENTS),
                              rollout_id=rid, seed=seed * 2 + (k == "healthy"))
                for k, rid in names.items()}
        t0 = time.monotonic()
        faults = threading.Thread(target=inject, daemon=True, args=(
            fault_plan(rng) if faults_override is None else faults_override, t0, stack,
            services, result, stop, restarter))
        faults.start()
        cleanup.callback(faults.join, 120)
        cleanup.callback(stop.set)
        serve_both(routers, sims, publisher, specs["regression"].candidate, t0, services,
                   result)
        stop.set()
        faults.join(120)
        publisher.close(60)
        result.undelivered = publisher.stats.queued - publisher.stats.delivered \
            - publisher.stats.failed + truth.failed
        for kind, rid in names.items():
            raw = client.get(route_key(rid))
            state = _STATE.decode(raw) if raw else None
            setattr(result, kind, state.phase if state else "missing")
            if kind == "regression" and state is not None:
                result.regression_by = state.issued_by
        check_commands(settings, client, list(names.values()), result)
        check_cohorts(settings, truth, list(names.values()), result)
        if not result.ok:  # leave the stuck worker's stacks in its log for a post-mortem
            services.dump_stacks()
            result.crashed = result.crashed or f"see {work}/worker-{services.starts['worker']}.log"
    client.close()
    result.seconds = time.monotonic() - began
    return result


HEADER = ("seed  k-worker  k-actuator  k-broker  r-redis  cmds  applied  lost  double  extra  "
          "regression(by)          healthy      cohorts=truth  secs")


def _row(r: SeedResult) -> str:
    f = r.faults
    cohorts = "yes" if r.counts_ok else "NO"
    return (f"{r.seed:4d}  {f['worker']:8d}  {f['actuator']:10d}  {f['broker']:8d}  "
            f"{f['redis']:7d}  {r.commands:4d}  {r.applied:7d}  {r.lost:4d}  {r.double:6d}  "
            f"{r.extra:5d}  {(r.regression + '(' + r.regression_by + ')'):22s}  "
            f"{r.healthy:11s}  {cohorts:13s}  {r.seconds:4.0f}"
            + (f"  CRASHED: {r.crashed}" if r.crashed else ""))


def _details(r: SeedResult) -> str:
    counts = ", ".join(f"{k} {got}/{want}" for k, (got, want) in r.cohorts.items())
    ended = ", ".join(f"{k} at {v:.0f} s" for k, v in r.ended_at_s.items())
    return (f"      faults: {' '.join(r.fault_log)}; ended: {ended}\n"
            f"      cohort/truth: {counts}; undelivered events: {r.undelivered}")


def main(argv: list[str] | None = None) -> int:
    """Run the seeds; print the table; exit 1 unless every seed came out right."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="keep logs and the stack's data in DIR")
    parser.add_argument("--faults", metavar="KIND@S,...", help="inject these faults instead of "
                        "the seed's (e.g. broker@15,worker@20; kinds: " + ", ".join(KINDS) + ")")
    parser.add_argument("--worker-loglevel", default="warn", choices=["error", "warn", "info"])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the children on SIGTERM
    os.environ["PYTHONFAULTHANDLER"] = "1"  # children dump their stacks on SIGABRT
    logging.basicConfig(level=logging.ERROR)  # routers and the publisher warn on every fault
    results: list[SeedResult] = []
    print(HEADER, flush=True)
    with contextlib.ExitStack() as dirs:
        tmp = args.keep or dirs.enter_context(
            tempfile.TemporaryDirectory(prefix="streammon-chaos-"))
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            # a fresh stack per seed: Tansu's S3 engine slows down as the bucket fills
            stack = DevStack(data_dir=Path(tmp) / f"stack-{seed}", durable=True)
            with stack as info, ThreadPoolExecutor(1, thread_name_prefix="restarter") as pool:
                results.append(run_seed(stack, info, seed, Path(tmp), pool,
                                        _parse_faults(args.faults), args.worker_loglevel))
            print(_row(results[-1]), flush=True)
            print(_details(results[-1]), flush=True)
    total: Counter[str] = Counter()
    for r in results:
        total.update(r.faults)
    ok = bool(results) and all(r.ok for r in results)
    print(f"{'PASS' if ok else 'FAIL'}: {len(results)} seeds; faults: {total['worker']} worker "
          f"kills, {total['actuator']} actuator kills, {total['broker']} broker kills, "
          f"{total['redis']} Redis restarts; {sum(r.commands for r in results)} commands, "
          f"{sum(r.lost for r in results)} lost, {sum(r.double for r in results)} "
          f"double-applied, {sum(r.extra for r in results)} extra; "
          f"{sum(r.regression == 'rolled_back' for r in results)}/{len(results)} regressions "
          f"rolled back, {sum(r.healthy == 'rolled_back' for r in results)} healthy rolled back "
          f"({sum(r.healthy == 'promoted' for r in results)} promoted); cohort counts equal "
          f"the truth in {sum(r.counts_ok for r in results)}/{len(results)} seeds")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
