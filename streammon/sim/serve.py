"""Simulated serving traffic through a real router and publisher.

``serve`` is the serving loop of the demo and of ``streammon traffic`` (the compose
file's traffic generator): every tick it routes the requests that arrived, publishes
their predictions, publishes the outcomes that have come due, and watches the router
for a terminal decision. ``demo_spec`` is the rollout both use.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streammon.control.commands import FINAL_PHASES
from streammon.control.registry import Checkpoint, Registry, hash_file
from streammon.events import MetricSpecWire, RolloutSpec
from streammon.sdk.publisher import Publisher
from streammon.sdk.router import Router
from streammon.sim.traffic_model import TrafficSim

TICK_S = 0.01


@dataclass
class RunResult:
    """What the traffic loop saw: when the decision came and when the router switched."""

    phase: str | None = None
    switched_at_s: float | None = None
    crashed: str = ""


def demo_spec(rollout_id: str, *, window_ms: int = 2000, grace_ms: int = 1200,
              alpha: float = 0.05) -> RolloutSpec:
    """Return the demo's rollout: stages 10/20/40/50 %, three guarded metrics.

    ``window_ms`` must be a multiple of the worker's join window (``--window-ms``).
    """
    return RolloutSpec(
        rollout_id=rollout_id, baseline="model-v1", candidate="model-v2",
        metrics=[
            MetricSpecWire(name="label", kind="binary", bad_direction="decrease", margin=0.03),
            MetricSpecWire(name="latency_ms", kind="continuous", bad_direction="increase",
                           margin=5.0),
            MetricSpecWire(name="error", kind="binary", bad_direction="increase", margin=0.01),
        ],
        alpha=alpha, f0=0.10, growth=2.0, f_max=0.5, step_windows=3, min_samples_per_stage=200,
        window_ms=window_ms, grace_ms=grace_ms, ttl_ms=30_000)


def pin_baseline(client: Any, data_dir: Path, version: str, *, local: bool = True) -> Checkpoint:
    """Pin a stand-in checkpoint of ``version`` in Redis.

    ``local`` writes a small weights file and pins its ``file://`` URI, which an actuator
    on the same machine re-hashes; otherwise (compose: the actuator runs in another
    container) the URI is remote-style and only the pin's hash format is checked.
    """
    content = f"pretend weights of {version}\n".encode()
    weights = data_dir / f"{version}.weights"
    weights.write_bytes(content)
    uri = f"file://{weights.resolve()}" if local else f"s3://streammon-demo/{version}.weights"
    return Registry(client).pin(Checkpoint(
        version=version, weights_uri=uri, config={"threshold": 0.5},
        features=["f1", "f2"], environment={"python": sys.version.split()[0]},
        content_hash=hash_file(weights), pinned_at_ms=0))


def serve(router: Router, publisher: Publisher, sim: TrafficSim, spec: RolloutSpec,
           t0: float, max_traffic_s: float,
           procs: list[subprocess.Popen[bytes]] | None = None) -> RunResult:
    """Serve simulated traffic until the router applies a terminal decision."""
    result = RunResult()
    last = time.monotonic()
    while (elapsed := time.monotonic() - t0) < max_traffic_s:
        dead = [_process_name(p) for p in procs or [] if p.poll() is not None]
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
        if snap is not None and snap.phase in FINAL_PHASES:
            if result.switched_at_s is None:
                result.phase, result.switched_at_s = snap.phase, elapsed
            elif elapsed - result.switched_at_s > 2.0:
                break
        time.sleep(TICK_S)
    return result


def _process_name(proc: subprocess.Popen[bytes]) -> str:
    """Return the streammon subcommand a child runs (``worker``, ``actuator``)."""
    argv = [str(a) for a in proc.args]  # type: ignore[union-attr]
    return argv[argv.index("streammon.cli") + 1] if "streammon.cli" in argv else argv[0]


def run_traffic(settings: Any, *, rollout_id: str, regression_at_s: float | None,
                rate_per_s: float, duration_s: float, window_ms: int, seed: int = 7) -> int:
    """Pin a baseline, start a demo rollout and serve simulated traffic into a live stack.

    This is the compose file's traffic generator; the worker and actuator run elsewhere.
    Returns 0 once the rollout reached a terminal phase, 1 if it did not in ``duration_s``.
    """
    from streammon.control import operator_commands
    from streammon.control.store import connect
    from streammon.sim.traffic_model import Scenario

    client = connect(settings)
    spec = demo_spec(rollout_id, window_ms=window_ms, grace_ms=window_ms // 2)
    work = Path(settings.data_dir)
    work.mkdir(parents=True, exist_ok=True)
    pin_baseline(client, work, spec.baseline, local=False)
    with Router.from_settings(settings, rollout_id=rollout_id, default_version=spec.baseline,
                              refresh_s=0.5) as router, Publisher(settings=settings) as publisher:
        operator_commands.start_rollout(settings, spec, client=client)
        router.wait_for_seq(1, timeout_s=60)
        scenario = Scenario(regression_at_s=regression_at_s, rate_per_s=rate_per_s)
        sim = TrafficSim(scenario, rollout_id=rollout_id, seed=seed)
        result = serve(router, publisher, sim, spec, time.monotonic(), duration_s)
    print(f"{rollout_id}: {result.phase or 'no decision'}", file=sys.stderr)
    return 0 if result.phase else 1
