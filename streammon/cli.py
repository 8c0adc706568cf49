"""The ``streammon`` command line; the one place that reads the environment.

Settings come from ``STREAMMON_*`` environment variables, else from the dev stack that
``streammon dev up`` recorded, else from localhost defaults:

``STREAMMON_KAFKA_BOOTSTRAP``  ``STREAMMON_REDIS_URL``  ``STREAMMON_TOPIC_PREFIX``
``STREAMMON_APP_ID``  ``STREAMMON_HMAC_KEY``  ``STREAMMON_DATA_DIR``
``STREAMMON_FAST_GROUP_JOIN`` (1 for the embedded broker)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streammon.config import DEV_HMAC_KEY, KafkaSettings, RedisSettings, Settings, TopicNames
from streammon.errors import StreamMonError


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``STREAMMON_*`` variables and the recorded dev stack."""
    from streammon.devstack import read_state

    env = os.environ if env is None else env
    data_dir = env.get("STREAMMON_DATA_DIR", ".streammon")
    dev = read_state(data_dir)
    bootstrap = env.get("STREAMMON_KAFKA_BOOTSTRAP") or (
        dev.kafka_bootstrap if dev else "127.0.0.1:9092")
    redis_url = env.get("STREAMMON_REDIS_URL") or (
        dev.redis_url if dev else "redis://127.0.0.1:6379/0")
    fast = env.get("STREAMMON_FAST_GROUP_JOIN", "1" if dev else "0") == "1"
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, fast_group_join=fast),
        redis=RedisSettings(url=redis_url),
        topics=TopicNames(prefix=env.get("STREAMMON_TOPIC_PREFIX", "streammon.")),
        app_id=env.get("STREAMMON_APP_ID", "streammon"),
        hmac_key=env.get("STREAMMON_HMAC_KEY", "").encode() or DEV_HMAC_KEY,
        data_dir=data_dir,
    )


def settings_to_env(settings: Settings) -> dict[str, str]:
    """Return the environment that makes a child ``streammon`` process use ``settings``."""
    return {
        "STREAMMON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap_servers,
        "STREAMMON_REDIS_URL": settings.redis.url,
        "STREAMMON_TOPIC_PREFIX": settings.topics.prefix,
        "STREAMMON_APP_ID": settings.app_id,
        "STREAMMON_HMAC_KEY": settings.hmac_key.decode(),
        "STREAMMON_DATA_DIR": settings.data_dir,
        "STREAMMON_FAST_GROUP_JOIN": "1" if settings.kafka.fast_group_join else "0",
    }


def _redis(settings: Settings) -> Any:
    import redis

    return redis.Redis.from_url(settings.redis.url, **settings.redis.to_redis())


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Start, stop or show the embedded broker and Redis."""
    from streammon import devstack

    if args.action == "up":
        info = devstack.read_state(settings.data_dir)
        if info is None:
            info = devstack.DevStack(data_dir=settings.data_dir, tie_to_parent=False).up()
        print(f"kafka  {info.kafka_bootstrap}\nredis  {info.redis_url}  ({info.redis_flavour})")
    elif args.action == "down":
        stopped = devstack.stop_recorded(settings.data_dir)
        print("stopped" if stopped else "no dev stack recorded")
    else:
        info = devstack.read_state(settings.data_dir)
        print(json.dumps(info.__dict__ if info else None, indent=2))
        return 0 if info else 1
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    """Apply the topic specs, or regenerate the JSON Schemas."""
    from streammon import topics

    if args.action == "schemas":
        for path in topics.write_schemas():
            print(path)
        return 0
    report = topics.apply_topics(settings.kafka, settings.topics)
    for topic, status in sorted(report.items()):
        print(f"{status:10s} {topic}")
    return 1 if any(s.startswith("drift") for s in report.values()) else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the Faust worker (join + decider) until SIGTERM."""
    from streammon.app import run_worker
    from streammon.join import JoinConfig

    join_config = JoinConfig(window_ms=args.window_ms, ttl_ms=args.ttl_ms,
                             grace_ms=args.grace_ms)
    run_worker(settings, join_config=join_config,
               loglevel=args.loglevel, metrics_port=args.metrics_port,
               metrics_addr=args.metrics_addr)
    return 0


def cmd_actuator(args: argparse.Namespace, settings: Settings) -> int:
    """Run the actuator (control topic -> Redis) until SIGTERM."""
    from streammon.actuator import run_actuator

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.metrics_port is not None:
        from streammon.metrics import actuator_registry, start_metrics_server

        start_metrics_server(args.metrics_port, actuator_registry(_redis(settings)),
                             addr=args.metrics_addr)
    run_actuator(settings, stop, verify_weights=args.verify_weights)
    return 0


def cmd_rollout(args: argparse.Namespace, settings: Settings) -> int:
    """Start a rollout from a spec file, or steer / inspect a running one."""
    from streammon import operator

    client = _redis(settings)
    if args.action == "start":
        cmd = operator.start_rollout(settings, operator.load_spec(args.target), client=client)
        print(f"started {cmd.rollout_id}: {cmd.candidate} at {cmd.fraction:.0%}")
    elif args.action == "status" and args.json:
        route = operator.current_route(client, args.target)
        print(json.dumps({f: getattr(route, f) for f in route.__struct_fields__}, indent=2))
    elif args.action == "status":
        from streammon.status import run_status

        return run_status(settings, args.target, watch=args.watch)
    elif args.action == "diagnose":
        return _diagnose(settings, args.target, args.out)
    elif args.action == "history":
        for r in operator.route_history(client, args.target):
            weights = ", ".join(f"{v} {w:.0%}" for v, w in r.weights.items())
            print(f"seq {r.seq:3d}  {r.action:8s}  {r.phase:11s}  {weights:28s}  "
                  f"{r.issued_by}: {r.reason}")
    else:
        cmd = operator.send_manual(settings, args.target, args.action, client=client,
                                   reason=args.reason)
        print(f"sent {cmd.action} seq={cmd.seq} for {cmd.rollout_id}")
    return 0


def _diagnose(settings: Settings, rollout_id: str, out: str | None) -> int:
    """Print the latest rollback post-mortem of a rollout (and write it to ``out``)."""
    from pathlib import Path

    from streammon import events
    from streammon.postmortem import render_text
    from streammon.topicread import read_topic

    raw = [v for _t, k, v in read_topic(settings, settings.topics.rollbacks)
           if k == rollout_id.encode()]
    if not raw:
        print(f"no rollback recorded for {rollout_id!r}", file=sys.stderr)
        return 1
    report = events.decode(events.RollbackReport, raw[-1])
    print(render_text(report))
    if out:
        Path(out).write_bytes(raw[-1])
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    """Write a self-contained HTML report (and PNG charts) of a rollout."""
    from streammon.report import generate_report

    print(generate_report(settings, args.rollout_id, args.out or f"report-{args.rollout_id}"))
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """Explain what is wrong with a configuration file (exit 1), or say it is fine."""
    from streammon.settings_file import check_config

    problems = check_config(args.file)
    for line in problems:
        print(line)
    if not problems:
        print(f"{args.file}: ok")
    return 1 if problems else 0


def cmd_traffic(args: argparse.Namespace, settings: Settings) -> int:
    """Serve simulated traffic for a demo rollout into a running stack (compose)."""
    from streammon.traffic import run_traffic

    return run_traffic(settings, rollout_id=args.rollout_id, regression_at_s=args.regression_at_s,
                       rate_per_s=args.rate_per_s, duration_s=args.duration_s,
                       window_ms=args.window_ms)


def cmd_pin(args: argparse.Namespace, settings: Settings) -> int:
    """Pin a checkpoint (version, weights URI, content hash) so rollouts can start."""
    from streammon.registry import Checkpoint, Registry, hash_file, local_path

    path = local_path(args.weights_uri)
    content_hash = args.content_hash or (hash_file(path) if path and path.exists() else "")
    checkpoint = Checkpoint(version=args.version, weights_uri=args.weights_uri,
                            config=json.loads(args.model_config), features=args.features,
                            environment={}, content_hash=content_hash, pinned_at_ms=0)
    pinned = Registry(_redis(settings)).pin(checkpoint)
    print(f"pinned {pinned.version} {pinned.content_hash}")
    return 0


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the sequential test over a CSV of cohort statistics."""
    from streammon.stats.backtest import main as backtest_main

    return backtest_main(args.rest)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Run the simulated canary rollout and print its timeline."""
    from streammon.demo import run_demo

    return run_demo(regression=not args.no_regression, seed=args.seed, data_dir=settings.data_dir,
                    reports_dir=args.reports_dir, false_alarm_at_s=args.false_alarm_at_s)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="streammon", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument("--config", help="TOML settings file (default $STREAMMON_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace, Settings], int]] = {}

    def add(name: str, fn: Callable[[argparse.Namespace, Settings], int]) -> Any:
        commands[name] = fn
        return sub.add_parser(name, help=fn.__doc__)

    add("dev", cmd_dev).add_argument("action", choices=["up", "down", "status"])
    add("topics", cmd_topics).add_argument("action", choices=["apply", "schemas"])
    worker = add("worker", cmd_worker)
    worker.add_argument("--window-ms", type=int, default=10_000, help="join window width")
    worker.add_argument("--ttl-ms", type=int, default=3_600_000, help="event-time TTL")
    worker.add_argument("--grace-ms", type=int, default=60_000,
                        help="how late a prediction may arrive for its window")
    worker.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info"])
    actuator = add("actuator", cmd_actuator)
    actuator.add_argument("--verify-weights", choices=["pinned", "unchanged", "full"],
                          default="unchanged",
                          help="how hard a local baseline's weights file is re-hashed")
    for proc in (worker, actuator):
        proc.add_argument("--metrics-port", type=int, help="serve Prometheus metrics")
        proc.add_argument("--metrics-addr", default="127.0.0.1",
                          help="address of the metrics server (0.0.0.0 in a container)")
    ro = add("rollout", cmd_rollout)
    ro.add_argument("action", choices=["start", "status", "history", "diagnose", "promote",
                                       "rollback", "hold", "resume"])
    ro.add_argument("target", help="spec FILE for start, else the rollout id")
    ro.add_argument("--reason", default="", help="why (manual commands)")
    ro.add_argument("--watch", action="store_true", help="status: redraw until Ctrl-C")
    ro.add_argument("--json", action="store_true", help="status: the raw route state")
    ro.add_argument("--out", help="diagnose: also write the post-mortem JSON here")
    rep = add("report", cmd_report)
    rep.add_argument("rollout_id")
    rep.add_argument("--out", help="output folder (default report-<id>)")
    cfg = add("config", cmd_config)
    cfg.add_argument("action", choices=["check"])
    cfg.add_argument("file")
    tr = add("traffic", cmd_traffic)
    tr.add_argument("--rollout-id", required=True)
    tr.add_argument("--regression-at-s", type=float, default=None)
    tr.add_argument("--rate-per-s", type=float, default=400.0)
    tr.add_argument("--duration-s", type=float, default=900.0)
    tr.add_argument("--window-ms", type=int, default=20_000,
                    help="decision window; a multiple of the worker's --window-ms")
    pin = add("pin", cmd_pin)
    pin.add_argument("version")
    pin.add_argument("--weights-uri", required=True)
    pin.add_argument("--content-hash", default="", help="sha256:<hex>; computed for local files")
    pin.add_argument("--model-config", default="{}", help="JSON object of the model's config")
    pin.add_argument("--features", nargs="*", default=[])
    bt = add("backtest", cmd_backtest)
    bt.add_argument("rest", nargs=argparse.REMAINDER, help="FILE [--kind ...]")
    demo = add("demo", cmd_demo)
    demo.add_argument("--no-regression", action="store_true", help="a healthy candidate")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--reports-dir", default="reports",
                      help="where the rollout's HTML report goes (default reports/)")
    demo.add_argument("--false-alarm-at-s", type=float, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(_commands=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streammon`` command line; return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from streammon.settings_file import load_settings

        settings = load_settings(args.config, base=settings_from_env())
        code: int = args._commands[args.command](args, settings)
        return code
    except StreamMonError as exc:
        print(f"streammon: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
