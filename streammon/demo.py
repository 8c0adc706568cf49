"""``streammon demo``: a simulated canary rollout that regresses and is rolled back.

It brings up the embedded stack (or uses the one ``streammon dev up`` started), runs a
worker (join + decider) and an actuator as child processes, pins the baseline, starts a
rollout, and serves simulated traffic through a real :class:`~streammon.router.Router`.
A timeline thread prints every command and every closed window's effect estimates from
the control and diagnostics topics. ``--no-regression`` runs a healthy candidate that
is promoted. The exit code is 0 when the outcome matches the scenario.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from streammon import devstack, operator
from streammon.config import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.demo_timeline import Timeline
from streammon.events import MetricSpecWire, RolloutSpec
from streammon.publish import Publisher
from streammon.registry import Checkpoint, Registry, hash_file
from streammon.router import Router
from streammon.sim import Scenario, TrafficSim

JOIN_WINDOW_MS = 1000
TICK_S = 0.01


@dataclass
class RunResult:
    """What the traffic loop saw: when the decision came and when the router switched."""

    phase: str | None = None
    switched_at_s: float | None = None
    crashed: str = ""


def demo_spec(rollout_id: str) -> RolloutSpec:
    """Return the demo's rollout: 2 s windows, stages 10/20/40/50 %, three guarded metrics."""
    return RolloutSpec(
        rollout_id=rollout_id, baseline="model-v1", candidate="model-v2",
        metrics=[
            MetricSpecWire(name="label", kind="binary", bad_direction="decrease", margin=0.03),
            MetricSpecWire(name="latency_ms", kind="continuous", bad_direction="increase",
                           margin=5.0),
            MetricSpecWire(name="error", kind="binary", bad_direction="increase", margin=0.01),
        ],
        alpha=0.05, f0=0.10, growth=2.0, f_max=0.5, step_windows=3, min_samples_per_stage=200,
        window_ms=2000, grace_ms=1200, ttl_ms=30_000)


def spawn_streammon(args: list[str], settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``streammon <args>`` as a child that uses ``settings`` and dies with us."""
    from streammon.cli import settings_to_env

    env = {**os.environ, **settings_to_env(settings)}
    return devstack.spawn_logged([sys.executable, "-m", "streammon.cli", *args], log_path,
                                 env=env)


def _pin_baseline(client: Any, data_dir: Path, version: str) -> Checkpoint:
    weights = data_dir / f"{version}.weights"
    weights.write_bytes(f"pretend weights of {version}\n".encode())
    return Registry(client).pin(Checkpoint(
        version=version, weights_uri=f"file://{weights.resolve()}", config={"threshold": 0.5},
        features=["f1", "f2"], environment={"python": sys.version.split()[0]},
        content_hash=hash_file(weights), pinned_at_ms=0))


@dataclass(frozen=True)
class ScenarioResult:
    """How a scenario ended: the rollout id, its final phase and the demo's exit code."""

    rollout_id: str
    phase: str | None
    exit_code: int
    work_dir: Path


def run_demo(*, regression: bool = True, seed: int = 7, max_traffic_s: float = 150.0,
             console: Console | None = None, data_dir: str = ".streammon") -> int:
    """Run the demo end to end; return 0 when the outcome matches the scenario."""
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    with contextlib.ExitStack() as stack:
        info = devstack.read_state(data_dir)
        if info is None:
            console.print("[dim]starting the embedded broker and Redis ...[/dim]")
            info = stack.enter_context(devstack.DevStack(data_dir=Path(data_dir) / "demo-stack"))
        run_id = uuid.uuid4().hex[:6]
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True),
            redis=RedisSettings(url=info.redis_url), topics=TopicNames(prefix=f"demo-{run_id}."),
            app_id=f"streammon-demo-{run_id}", data_dir=data_dir)
        return run_scenario(settings, stack, console=console, regression=regression,
                            seed=seed, max_traffic_s=max_traffic_s, run_id=run_id).exit_code
    return 1  # pragma: no cover - unreachable, for mypy


def start_services(settings: Settings, stack: contextlib.ExitStack, work: Path,
                   worker_args: tuple[str, ...] = ()) -> list[subprocess.Popen[bytes]]:
    """Start a worker and an actuator as children; ``stack`` stops them."""
    procs = []
    for name, args in (("worker", ["worker", "--window-ms", str(JOIN_WINDOW_MS),
                                   "--ttl-ms", "30000", *worker_args]),
                       ("actuator", ["actuator"])):
        proc = spawn_streammon(args, settings, work / f"{name}.log")
        stack.callback(devstack.stop_process, proc)
        procs.append(proc)
    return procs


def run_scenario(settings: Settings, stack: contextlib.ExitStack, *, console: Console,
                 regression: bool, seed: int = 7, max_traffic_s: float = 150.0,
                 run_id: str | None = None,
                 worker_args: tuple[str, ...] = ()) -> ScenarioResult:
    """Run one simulated rollout on a running stack; services live until ``stack`` closes."""
    import redis

    from streammon.topics import apply_topics

    run_id = run_id or uuid.uuid4().hex[:6]
    work = Path(settings.data_dir) / f"demo-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    apply_topics(settings.kafka, settings.topics)
    procs = start_services(settings, stack, work, worker_args)
    client = redis.Redis.from_url(settings.redis.url, **settings.redis.to_redis())
    spec = demo_spec(f"demo-{run_id}")
    _pin_baseline(client, work, spec.baseline)
    scenario = Scenario(regression_at_s=20.0 if regression else None)
    console.rule(f"[bold]streammon demo[/bold] rollout {spec.rollout_id}: {spec.baseline} -> "
                 f"{spec.candidate} ({'regresses at +20 s' if regression else 'healthy'})")
    router = stack.enter_context(Router.from_settings(
        settings, rollout_id=spec.rollout_id, default_version=spec.baseline, refresh_s=0.5))
    timeline = stack.enter_context(Timeline(settings, console, spec))
    timeline.print_legend()
    operator.start_rollout(settings, spec, client=client)
    if not router.wait_for_seq(1, timeout_s=30):
        console.print("[red]the actuator did not apply the start command within 30 s; "
                      f"see {work}/actuator.log[/red]")
        return ScenarioResult(spec.rollout_id, None, 1, work)
    publisher = stack.enter_context(Publisher(settings=settings))
    t0 = time.monotonic()
    timeline.set_origin(t0, scenario.regression_at_s)
    sim = TrafficSim(scenario, rollout_id=spec.rollout_id, seed=seed)
    result = _serve(router, publisher, sim, spec, t0, max_traffic_s, procs)
    if result.crashed:
        console.print(f"[red]a streammon process died: {result.crashed}; logs in {work}[/red]")
        return ScenarioResult(spec.rollout_id, result.phase, 1, work)
    time.sleep(0.5)
    code = timeline.summarise(result.phase, result.switched_at_s,
                              expected="rolled_back" if regression else "promoted")
    return ScenarioResult(spec.rollout_id, result.phase, code, work)


def _serve(router: Router, publisher: Publisher, sim: TrafficSim, spec: RolloutSpec,
           t0: float, max_traffic_s: float,
           procs: list[subprocess.Popen[bytes]]) -> RunResult:
    """Serve simulated traffic until the router applies a terminal decision."""
    result = RunResult()
    last = time.monotonic()
    while (elapsed := time.monotonic() - t0) < max_traffic_s:
        dead = [p.args[3] for p in procs if p.poll() is not None]  # type: ignore[index]
        if dead:
            result.crashed = ", ".join(map(str, dead))
            break
        now = time.monotonic()
        wall_s = time.time()
        for _ in range(sim.arrivals(now - last)):
            # Practically one unit per request: the sample-ratio check counts requests, and a
            # small population of sticky units would make the realised split drift from
            # the intended one by O(1/sqrt(units)).
            unit = f"user-{int(sim.rng.integers(1 << 40))}"
            a = router.route(unit)
            publisher.prediction(**sim.request(unit_id=unit, version=a.version, arm=a.arm,
                                               candidate=spec.candidate,
                                               weights_seq=a.weights_seq, now_s=wall_s,
                                               elapsed_s=elapsed))
        for outcome in sim.due_outcomes(wall_s):
            publisher.outcome(**outcome)
        last = now
        snap = router.snapshot
        if snap is not None and snap.phase in ("rolled_back", "promoted"):
            if result.switched_at_s is None:
                result.phase, result.switched_at_s = snap.phase, elapsed
            elif elapsed - result.switched_at_s > 2.0:
                break
        time.sleep(TICK_S)
    return result
