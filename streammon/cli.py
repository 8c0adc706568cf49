"""The ``streammon`` command line.

Settings come from :func:`streammon.config.env.settings_from_env`, then the settings file.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from streammon.config.env import settings_from_env
from streammon.config.settings import (
    Settings,
)
from streammon.errors import ConfigError, StreamMonError


def _redis(settings: Settings) -> Any:
    from streammon.control.store import connect

    return connect(settings)


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Start, stop or show a local broker and Redis for trying streammon (no Docker)."""
    from streammon import devstack

    if args.action == "up":
        info = devstack.read_state(settings.data_dir)
        if info is None:
            info = devstack.DevStack(data_dir=settings.data_dir, tie_to_parent=False,
                                     durable=args.durable).up()
        print(f"kafka  {info.kafka_bootstrap}\nredis  {info.redis_url}  ({info.redis_flavour})")
        if info.s3_endpoint:
            print(f"s3     {info.s3_endpoint}  (topics survive a broker restart)")
    elif args.action == "down":
        stopped = devstack.stop_recorded(settings.data_dir)
        print("stopped" if stopped else "no dev stack recorded")
    else:
        info = devstack.read_state(settings.data_dir)
        print(json.dumps(info.__dict__ if info else None, indent=2))
        return 0 if info else 1
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    """Create the Kafka topics streammon needs, or check that they match (idempotent)."""
    from streammon.kafka import topics

    if args.action == "schemas":
        for path in topics.write_schemas():
            print(path)
        return 0
    report = topics.apply_topics(settings.kafka, settings.topics)
    for topic, status in sorted(report.items()):
        print(f"{status:10s} {topic}")
    return 1 if any(s.startswith("drift") for s in report.values()) else 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Join predictions with outcomes and judge rollouts; start more to share the load."""
    from streammon.app import run_worker
    from streammon.join.state import JoinConfig

    join_config = JoinConfig(window_ms=args.window_ms, ttl_ms=args.ttl_ms,
                             grace_ms=args.grace_ms, cell_retention_ms=args.cell_retention_ms,
                             max_rollouts=args.max_rollouts, max_segments=args.max_segments)
    if args.max_lead_ms < 0:
        raise ConfigError(f"--max-lead-ms={args.max_lead_ms} must be >= 0")
    run_worker(settings, join_config=join_config, max_lead_ms=args.max_lead_ms,
               join_engine=args.join_engine, decide=not args.no_decide,
               loglevel=args.loglevel, metrics_port=args.metrics_port,
               metrics_addr=args.metrics_addr)
    return 0


def cmd_actuator(args: argparse.Namespace, settings: Settings) -> int:
    """Apply rollout commands to the route state in Redis that routers read."""
    from streammon.control.actuator import run_actuator

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.metrics_port is not None:
        from streammon.ops.prometheus import actuator_registry, start_metrics_server

        start_metrics_server(args.metrics_port, actuator_registry(_redis(settings)),
                             addr=args.metrics_addr)
    run_actuator(settings, stop, verify_weights=args.verify_weights,
                 weights_roots=tuple(args.weights_root))
    return 0


def cmd_rollout_start(args: argparse.Namespace, settings: Settings) -> int:
    """Start a rollout from a spec file (JSON or TOML); the baseline must be pinned."""
    from streammon.control import operator_commands

    cmd = operator_commands.start_rollout(settings, operator_commands.load_spec(args.spec),
                                          client=_redis(settings))
    print(f"started {cmd.rollout_id}: {cmd.candidate} at {cmd.fraction:.0%} of traffic\n"
          f"watch it with: streammon rollout status {cmd.rollout_id} --watch")
    return 0


def cmd_rollout_status(args: argparse.Namespace, settings: Settings) -> int:
    """Show where a rollout stands: stage, effects with bounds, ratio check, commands."""
    if args.json:
        from streammon.control import operator_commands

        route = operator_commands.current_route(_redis(settings), args.rollout_id)
        print(json.dumps({f: getattr(route, f) for f in route.__struct_fields__}, indent=2))
        return 0
    from streammon.ops.status import run_status

    return run_status(settings, args.rollout_id, watch=args.watch)


def cmd_rollout_history(args: argparse.Namespace, settings: Settings) -> int:
    """List every route change the actuator applied, oldest first."""
    from streammon.control import operator_commands

    for r in operator_commands.route_history(_redis(settings), args.rollout_id):
        weights = ", ".join(f"{v} {w:.0%}" for v, w in r.weights.items())
        print(f"seq {r.seq:3d}  {r.action:8s}  {r.phase:11s}  {weights:28s}  "
              f"{r.issued_by}: {r.reason}")
    return 0


def cmd_rollout_diagnose(args: argparse.Namespace, settings: Settings) -> int:
    """Print the post-mortem of a rolled-back rollout (each metric overall and per segment)."""
    return _diagnose(settings, args.rollout_id, args.out)


def cmd_rollout_manual(args: argparse.Namespace, settings: Settings) -> int:
    """Send a signed operator command and wait until the actuator applied it."""
    from streammon.control import operator_commands

    cmd = operator_commands.send_manual(settings, args.rollout_id, args.action,
                                        client=_redis(settings), reason=args.reason)
    print(f"{cmd.action} applied to {cmd.rollout_id} (seq {cmd.seq})")
    return 0


def _diagnose(settings: Settings, rollout_id: str, out: str | None) -> int:
    """Print the latest rollback post-mortem of a rollout (and write it to ``out``)."""
    from pathlib import Path

    from streammon import events
    from streammon.decide.postmortem import render_text
    from streammon.kafka.topic_reader import read_topic

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
    """Write a rollout's HTML report: effects over time, commands, segments, checks."""
    from streammon.ops.report import generate_report

    print(generate_report(settings, args.rollout_id, args.out or f"report-{args.rollout_id}"))
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    """Check a settings file and explain what is wrong with it (exit 1), or say it is fine."""
    from streammon.config.settings_file import check_config

    problems = check_config(args.file)
    for line in problems:
        print(line)
    if not problems:
        print(f"{args.file}: ok")
    return 1 if problems else 0


def cmd_traffic(args: argparse.Namespace, settings: Settings) -> int:
    """Send simulated traffic for a demo rollout into a running stack (compose's demo)."""
    from streammon.sim.serve import run_traffic

    return run_traffic(settings, rollout_id=args.rollout_id, regression_at_s=args.regression_at_s,
                       rate_per_s=args.rate_per_s, duration_s=args.duration_s,
                       window_ms=args.window_ms)


def cmd_pin(args: argparse.Namespace, settings: Settings) -> int:
    """Pin a model version (weights URI, content hash) as the last-known-good to roll back to."""
    from streammon.control.registry import Checkpoint, Registry, hash_file, local_path

    path = local_path(args.weights_uri)
    content_hash = args.content_hash or (hash_file(path) if path and path.exists() else "")
    checkpoint = Checkpoint(version=args.version, weights_uri=args.weights_uri,
                            config=json.loads(args.model_config), features=args.features,
                            environment={}, content_hash=content_hash, pinned_at_ms=0)
    pinned = Registry(_redis(settings)).pin(checkpoint)
    print(f"pinned {pinned.version} {pinned.content_hash}")
    return 0


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    """Replay recorded events (``--spec``) or a CSV of cohort statistics (``FILE``)."""
    if args.spec is not None:
        from streammon.ops.backtest import main_events as events_main

        if not (args.predictions and args.outcomes):
            raise ConfigError("backtest --spec needs --predictions P.jsonl and --outcomes O.jsonl")
        argv = ["--spec", args.spec, "--predictions", args.predictions,
                "--outcomes", args.outcomes]
        return events_main(argv + (["--commands", args.commands] if args.commands else []))
    from streammon.ops.backtest import main as backtest_main

    return backtest_main(args.rest)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Watch a simulated canary rollout regress and get rolled back (about a minute)."""
    from streammon.sim.demo import run_demo

    return run_demo(regression=not args.no_regression, seed=args.seed, data_dir=settings.data_dir,
                    reports_dir=args.reports_dir, false_alarm_at_s=args.false_alarm_at_s)


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Make an Ed25519 key pair for a principal (decider, actuator, operator-NAME)."""
    from streammon.control.keys import KEY_DIR_ENV, new_key

    private, public = new_key(args.principal, args.dir)
    print(f"private {private}  (keep it only where {args.principal} runs; mode 0600)\n"
          f"public  {public}  (copy to the key dir of every actuator, router and worker)\n"
          f"then set {KEY_DIR_ENV}={args.dir}")
    return 0


_DESCRIPTION = """\
streammon watches a model rollout while it serves and rolls it back by itself.

Serving nodes publish predictions and (later) outcomes; the worker joins them and
judges the canary against the baseline after every window; the actuator applies the
resulting step / promote / rollback commands to Redis, where routers read them.

Try it:     streammon demo
Run it:     streammon dev up; streammon topics apply; streammon worker & streammon actuator &
            streammon pin model-v1 --weights-uri file:///models/v1.bin
            streammon rollout start rollout.json; streammon rollout status ID --watch
Settings:   STREAMMON_KAFKA_BOOTSTRAP, STREAMMON_REDIS_URL, STREAMMON_TOPIC_PREFIX, ... or
            --config streammon.toml (check it with: streammon config check FILE)
"""

_EXAMPLES: dict[str, str] = {
    "demo": "streammon demo                   # regression at +20 s, rolled back\n"
            "streammon demo --no-regression   # a healthy candidate, promoted",
    "dev": "streammon dev up      # prints the broker and Redis addresses\n"
           "streammon dev down",
    "topics": "streammon topics apply     # create or check the topics (idempotent)\n"
              "streammon topics schemas   # regenerate topics/schemas/*.json",
    "worker": "streammon worker --window-ms 10000 --metrics-port 9100",
    "actuator": "streammon actuator --metrics-port 9101",
    "pin": "streammon pin ranker-v7 --weights-uri s3://models/ranker-v7.bin "
           "--content-hash sha256:...",
    "report": "streammon report ranker-2026-11-26   # writes report-ranker-2026-11-26/report.html",
    "backtest": "streammon backtest --spec rollout.json --predictions P.jsonl --outcomes O.jsonl\n"
                "streammon backtest cells.csv --kind binary --bad-direction decrease",
    "config": "streammon config check streammon.toml",
    "traffic": "streammon traffic --rollout-id demo-1 --regression-at-s 60",
    "rollout start": "streammon rollout start rollout.json",
    "rollout status": "streammon rollout status ranker-2026-11-26 --watch",
    "rollout history": "streammon rollout history ranker-2026-11-26",
    "rollout diagnose": "streammon rollout diagnose ranker-2026-11-26 --out postmortem.json",
    "rollout promote": 'streammon rollout promote ranker-2026-11-26 --reason "looks good"',
    "rollout rollback": 'streammon rollout rollback ranker-2026-11-26 --reason "pager #123"',
    "rollout hold": 'streammon rollout hold ranker-2026-11-26 --reason "freeze"',
    "rollout resume": "streammon rollout resume ranker-2026-11-26",
}

_MANUAL_HELP = {
    "promote": "Send all traffic to the candidate now, skipping the remaining stages.",
    "rollback": "Send all traffic back to the pinned baseline now.",
    "hold": "Freeze the traffic split; the decider stops judging until you resume.",
    "resume": "Let the decider judge and step again after a hold.",
}

Handler = Callable[[argparse.Namespace, Settings], int]


def _first_line(fn: Handler) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0]


def _add(sub: Any, name: str, fn: Handler, *, example_key: str | None = None,
         help_text: str | None = None) -> argparse.ArgumentParser:
    """Add subcommand ``name`` running ``fn``, with its help and an example."""
    text = help_text or _first_line(fn)
    example = _EXAMPLES.get(example_key or name)
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=text, description=text,
        epilog=f"example:\n  {example.replace(chr(10), chr(10) + '  ')}" if example else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(_handler=fn)
    return parser


def _add_rollout(sub: Any) -> None:
    ro = sub.add_parser("rollout", help="Start, watch and steer rollouts.",
                        description="Start, watch and steer rollouts. Manual commands are "
                                    "signed, sequenced, and confirmed once applied.",
                        epilog="examples:\n  " + "\n  ".join(
                            v for k, v in _EXAMPLES.items() if k.startswith("rollout ")),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = ro.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add(actions, "start", cmd_rollout_start, example_key="rollout start").add_argument(
        "spec", help="rollout spec file (JSON or TOML; see docs/rollouts.md)")
    status = _add(actions, "status", cmd_rollout_status, example_key="rollout status")
    status.add_argument("rollout_id")
    status.add_argument("--watch", action="store_true", help="redraw every second until Ctrl-C")
    status.add_argument("--json", action="store_true",
                        help="print the raw route state from Redis instead")
    _add(actions, "history", cmd_rollout_history,
         example_key="rollout history").add_argument("rollout_id")
    diagnose = _add(actions, "diagnose", cmd_rollout_diagnose, example_key="rollout diagnose")
    diagnose.add_argument("rollout_id")
    diagnose.add_argument("--out", help="also write the post-mortem JSON to this file")
    for action, text in _MANUAL_HELP.items():
        manual = _add(actions, action, cmd_rollout_manual, example_key=f"rollout {action}",
                      help_text=text)
        manual.add_argument("rollout_id")
        manual.add_argument("--reason", default="", help="why (kept in the route log)")


def _add_services(sub: Any) -> None:
    worker = _add(sub, "worker", cmd_worker)
    worker.add_argument("--window-ms", type=int, default=10_000,
                        help="join window width in ms (rollout windows are multiples of it)")
    worker.add_argument("--ttl-ms", type=int, default=3_600_000,
                        help="how long (event time) a prediction waits for its outcome")
    worker.add_argument("--grace-ms", type=int, default=60_000,
                        help="how late a prediction may arrive for its window")
    worker.add_argument("--cell-retention-ms", type=int, default=None,
                        help="keep a rollout's cells this long after its last window "
                             "(default and minimum: ttl + grace)")
    worker.add_argument("--max-lead-ms", type=int, default=30_000,
                        help="dead-letter events stamped further ahead of their message's "
                             "Kafka timestamp (clock skew)")
    worker.add_argument("--no-decide", action="store_true",
                        help="run only the join (scale join workers apart from the decider)")
    worker.add_argument("--join-engine", choices=["batch", "faust"], default="batch",
                        help="batch: librdkafka batch loop hosted by the Faust app (fast); "
                             "faust: a Faust agent over per-message streams")
    worker.add_argument("--max-rollouts", type=int, default=256,
                        help="rollouts a partition's join holds at once; more are dead-lettered")
    worker.add_argument("--max-segments", type=int, default=1_000,
                        help="segments per rollout; more are dead-lettered")
    worker.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info"])
    actuator = _add(sub, "actuator", cmd_actuator)
    actuator.add_argument("--verify-weights", choices=["pinned", "unchanged", "full"],
                          default="unchanged",
                          help="how hard a local baseline's weights file is re-hashed")
    actuator.add_argument("--weights-root", action="append", default=[],
                          help="a directory local weights must lie under (repeatable)")
    for proc in (worker, actuator):
        proc.add_argument("--metrics-port", type=int, help="serve Prometheus metrics here")
        proc.add_argument("--metrics-addr", default="127.0.0.1",
                          help="address of the metrics server (0.0.0.0 in a container)")


def _add_tools(sub: Any) -> None:
    dev = _add(sub, "dev", cmd_dev)
    dev.add_argument("action", choices=["up", "down", "status"])
    dev.add_argument("--durable", action="store_true",
                     help="up: topics in a loopback S3 server (survive a broker restart), "
                          "Redis with its append-only file")
    _add(sub, "topics", cmd_topics).add_argument("action", choices=["apply", "schemas"])
    pin = _add(sub, "pin", cmd_pin)
    pin.add_argument("version")
    pin.add_argument("--weights-uri", required=True)
    pin.add_argument("--content-hash", default="", help="sha256:<hex>; computed for local files")
    pin.add_argument("--model-config", default="{}", help="JSON object of the model's config")
    pin.add_argument("--features", nargs="*", default=[])
    keys = _add(sub, "keys", cmd_keys)
    keys.add_argument("action", choices=["new"])
    keys.add_argument("principal", help="decider, actuator, operator or operator-NAME")
    keys.add_argument("--dir", required=True, help="the key directory to write into")
    rep = _add(sub, "report", cmd_report)
    rep.add_argument("rollout_id")
    rep.add_argument("--out", help="output folder (default report-<id>)")
    bt = _add(sub, "backtest", cmd_backtest)
    bt.add_argument("--spec", help="rollout spec JSON: replay recorded events (needs "
                    "--predictions and --outcomes, JSON lines as on the topics)")
    bt.add_argument("--predictions", help="prediction events, JSON lines (a kcat dump)")
    bt.add_argument("--outcomes", help="outcome events, JSON lines")
    bt.add_argument("--commands", help="operator hold/resume commands, JSON lines")
    bt.add_argument("rest", nargs=argparse.REMAINDER, help="FILE [--kind ...] (cells CSV)")
    cfg = _add(sub, "config", cmd_config)
    cfg.add_argument("action", choices=["check"])
    cfg.add_argument("file")
    tr = _add(sub, "traffic", cmd_traffic)
    tr.add_argument("--rollout-id", required=True)
    tr.add_argument("--regression-at-s", type=float, default=None)
    tr.add_argument("--rate-per-s", type=float, default=400.0)
    tr.add_argument("--duration-s", type=float, default=900.0)
    tr.add_argument("--window-ms", type=int, default=20_000,
                    help="decision window; a multiple of the worker's --window-ms")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="streammon", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    parser.add_argument("--config", help="TOML settings file (default $STREAMMON_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = _add(sub, "demo", cmd_demo)
    demo.add_argument("--no-regression", action="store_true", help="a healthy candidate")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--reports-dir", default="reports",
                      help="where the rollout's HTML report goes (default reports/)")
    demo.add_argument("--false-alarm-at-s", type=float, default=None, help=argparse.SUPPRESS)
    _add_rollout(sub)
    _add_services(sub)
    _add_tools(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``streammon`` command line; return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from streammon.config.settings_file import load_settings

        settings = load_settings(args.config, base=settings_from_env())
        code: int = args._handler(args, settings)
        return code
    except StreamMonError as exc:
        print(f"streammon: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
