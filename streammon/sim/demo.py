"""``streammon demo``: a simulated canary rollout that regresses and is rolled back.

It brings up the embedded stack (or uses the one ``streammon dev up`` started), runs a
worker (join + decider) and an actuator as child processes, pins the baseline, starts a
rollout, and serves simulated traffic through a real :class:`~streammon.sdk.router.Router`.
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

from rich.console import Console

from streammon import devstack
from streammon.config.settings import KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.control import operator_commands
from streammon.control.commands import route_key
from streammon.control.keys import dev_keyring
from streammon.sdk.control_follower import ControlFollower
from streammon.sdk.publisher import Publisher
from streammon.sdk.router import Router
from streammon.sim.demo_timeline import Timeline
from streammon.sim.serve import demo_spec, pin_baseline, serve
from streammon.sim.traffic_model import Scenario, TrafficSim

JOIN_WINDOW_MS = 1000


def spawn_streammon(args: list[str], settings: Settings, log_path: Path, *,
                    delay_s: float = 0.0) -> subprocess.Popen[bytes]:
    """Start ``streammon <args>`` as a child that uses ``settings`` and dies with us.

    ``delay_s`` makes the child wait before it starts (as a slow machine's first start
    does), so tests can show that traffic published before a worker runs is judged right.
    """
    from streammon.config.env import settings_to_env

    env = {**os.environ, **settings_to_env(settings)}
    argv = [sys.executable, "-m", "streammon.cli", *args]
    if delay_s > 0:
        argv = ["sh", "-c", 'sleep "$0"; exec "$@"', str(delay_s), *argv]
    return devstack.spawn_logged(argv, log_path, env=env)


@dataclass(frozen=True)
class ScenarioResult:
    """How a scenario ended: the rollout id, its final phase and the demo's exit code."""

    rollout_id: str
    phase: str | None
    exit_code: int
    work_dir: Path


def run_demo(*, regression: bool = True, seed: int = 7, max_traffic_s: float = 150.0,
             console: Console | None = None, data_dir: str = ".streammon",
             reports_dir: str = "reports", false_alarm_at_s: float | None = None) -> int:
    """Run the demo end to end; return 0 only when the outcome is right.

    At the end the rollout's HTML report is written to ``reports/<rollout>/report.html``
    (the embedded broker forgets everything when the demo stops). ``false_alarm_at_s``
    injects a rollback at that time, to show that the demo calls a rollback before the
    regression a wrong outcome and exits non-zero.
    """
    console = console or Console(highlight=False, width=None if sys.stdout.isatty() else 150)
    with contextlib.ExitStack() as stack:
        info = devstack.read_state(data_dir)
        run_id = uuid.uuid4().hex[:6]
        if info is None:
            console.print("[dim]starting the embedded broker and Redis ... (to watch the "
                          "rollout with `streammon rollout status`, run `streammon dev up` "
                          "before the demo)[/dim]")
            info = stack.enter_context(devstack.DevStack(data_dir=Path(data_dir) / "demo-stack"))
        else:
            console.print(f"[dim]using the stack of `streammon dev up`; watch it live from "
                          f"another terminal:[/dim]\n  {watch_command(run_id)}", soft_wrap=True)
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=info.kafka_bootstrap, fast_group_join=True),
            redis=RedisSettings(url=info.redis_url), topics=TopicNames(prefix=f"demo-{run_id}."),
            app_id=f"streammon-demo-{run_id}", data_dir=data_dir, keys=dev_keyring())
        result = run_scenario(settings, stack, console=console, regression=regression,
                              seed=seed, max_traffic_s=max_traffic_s, run_id=run_id,
                              false_alarm_at_s=false_alarm_at_s)
        write_demo_report(settings, result.rollout_id, Path(reports_dir), console)
        return result.exit_code
    return 1  # pragma: no cover - unreachable, for mypy


def watch_command(run_id: str) -> str:
    """Return the command that shows demo run ``run_id`` live (its topics are prefixed)."""
    return (f"STREAMMON_TOPIC_PREFIX=demo-{run_id}. streammon rollout status demo-{run_id} "
            "--watch")


def write_demo_report(settings: Settings, rollout_id: str, reports_dir: Path,
                      console: Console) -> Path | None:
    """Write the rollout's HTML report under ``reports_dir/<rollout>/``; print its path."""
    from streammon.errors import StreamMonError
    from streammon.ops.report import generate_report

    try:
        path = generate_report(settings, rollout_id, reports_dir / rollout_id)
    except (StreamMonError, OSError) as exc:
        console.print(f"[red]could not write the report: {exc}[/red]")
        return None
    console.print(f"report: [bold]{path}[/bold]  (open it in a browser)")
    return path


def start_services(settings: Settings, stack: contextlib.ExitStack, work: Path,
                   worker_args: tuple[str, ...] = (),
                   actuator_args: tuple[str, ...] = (),
                   worker_delay_s: float = 0.0) -> list[subprocess.Popen[bytes]]:
    """Start a worker and an actuator as children; ``stack`` stops them."""
    procs = []
    for name, args, delay_s in (
            ("worker", ["worker", "--window-ms", str(JOIN_WINDOW_MS), "--ttl-ms", "30000",
                        *worker_args], worker_delay_s),
            ("actuator", ["actuator", *actuator_args], 0.0)):
        proc = spawn_streammon(args, settings, work / f"{name}.log", delay_s=delay_s)
        stack.callback(devstack.stop_process, proc)
        procs.append(proc)
    return procs


def run_scenario(settings: Settings, stack: contextlib.ExitStack, *, console: Console,
                 regression: bool, seed: int = 7, max_traffic_s: float = 150.0,
                 run_id: str | None = None, worker_args: tuple[str, ...] = (),
                 actuator_args: tuple[str, ...] = (), alpha: float = 0.05,
                 false_alarm_at_s: float | None = None,
                 worker_delay_s: float = 0.0) -> ScenarioResult:
    """Run one simulated rollout on a running stack; services live until ``stack`` closes."""
    from streammon.control.store import connect
    from streammon.kafka.topics import apply_topics

    run_id = run_id or uuid.uuid4().hex[:6]
    work = Path(settings.data_dir) / f"demo-{run_id}"
    work.mkdir(parents=True, exist_ok=True)
    apply_topics(settings.kafka, settings.topics)
    procs = start_services(settings, stack, work, worker_args, actuator_args, worker_delay_s)
    client = connect(settings)
    spec = demo_spec(f"demo-{run_id}", alpha=alpha)
    pin_baseline(client, work, spec.baseline)
    scenario = Scenario(regression_at_s=20.0 if regression else None)
    console.rule(f"[bold]streammon demo[/bold] rollout {spec.rollout_id}: {spec.baseline} -> "
                 f"{spec.candidate} ({'regresses at +20 s' if regression else 'healthy'})")
    router = stack.enter_context(Router.from_settings(
        settings, rollout_id=spec.rollout_id, default_version=spec.baseline, refresh_s=0.5))
    follower = stack.enter_context(ControlFollower(settings=settings))  # the fast path
    follower.register(router)
    timeline = stack.enter_context(Timeline(settings, console, spec))
    timeline.print_legend()
    operator_commands.start_rollout(settings, spec, client=client)
    if not router.wait_for_seq(1, timeout_s=30):
        console.print("[red]the actuator did not apply the start command within 30 s; "
                      f"see {work}/actuator.log[/red]")
        return ScenarioResult(spec.rollout_id, None, 1, work)
    publisher = stack.enter_context(Publisher(settings=settings))
    t0 = time.monotonic()
    timeline.set_origin(t0, scenario.regression_at_s)
    sim = TrafficSim(scenario, rollout_id=spec.rollout_id, seed=seed)
    if false_alarm_at_s is not None:
        _inject_false_alarm(settings, spec.rollout_id, t0 + false_alarm_at_s, stack)
    result = serve(router, publisher, sim, spec, t0, max_traffic_s, procs)
    if result.crashed:
        console.print(f"[red]a streammon process died: {result.crashed}; logs in {work}[/red]")
        return ScenarioResult(spec.rollout_id, result.phase, 1, work)
    time.sleep(0.5)
    code = timeline.summarise(result.phase, result.switched_at_s,
                              expected="rolled_back" if regression else "promoted")
    return ScenarioResult(spec.rollout_id, result.phase, code, work)


def _inject_false_alarm(settings: Settings, rollout_id: str, at_monotonic: float,
                        stack: contextlib.ExitStack) -> None:
    """Send a rollback at ``at_monotonic`` from a thread, as a decider acting too early."""
    import threading

    from streammon.control.store import connect

    def fire() -> None:
        time.sleep(max(0.0, at_monotonic - time.monotonic()))
        client = connect(settings)
        deadline = time.monotonic() + 30.0
        while client.get(route_key(rollout_id)) is None and time.monotonic() < deadline:
            time.sleep(0.1)  # routers may follow the control topic before the actuator ran
        operator_commands.send_manual(settings, rollout_id, "rollback", client=client,
                             reason="injected false alarm (demo self-test)",
                             confirm_timeout_s=None)

    thread = threading.Thread(target=fire, name="false-alarm", daemon=True)
    thread.start()
    stack.callback(thread.join, 10.0)
