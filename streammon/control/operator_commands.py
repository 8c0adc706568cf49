"""What an operator (or the demo) does to a rollout: start it, or steer it by hand.

Manual commands go through the same path as the decider's: they are built with
:func:`streammon.control.commands.make_command`, signed with this operator's own Ed25519 key
(principal ``settings.keys.operator``), and produced to the control topic as proposals;
the actuator decides whether and at which seq they apply (a rollback always does).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from streammon import events
from streammon.config.settings import Settings
from streammon.control import commands
from streammon.decide import strategies
from streammon.errors import CommandError, ConfigError, KafkaIOError
from streammon.events import Action, Command, RolloutSpec


def load_spec(path: str | Path) -> RolloutSpec:
    """Read a rollout spec from a JSON or TOML file; raise ConfigError naming a bad field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read rollout spec {path}: {exc}") from exc
    try:
        if path.suffix == ".toml":
            return msgspec.toml.decode(raw, type=RolloutSpec)
        return msgspec.json.decode(raw, type=RolloutSpec)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def produce_command(settings: Settings, cmd: Command, *, timeout_s: float = 10.0) -> None:
    """Produce one command to the control topic and wait until the broker has it."""
    from confluent_kafka import Producer

    errors: list[Any] = []
    producer = Producer(settings.kafka.to_librdkafka(acks="all"))
    producer.produce(settings.topics.control, key=cmd.rollout_id, value=events.encode(cmd),
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    if producer.flush(timeout_s) or errors:
        raise KafkaIOError(f"control command not delivered: {errors or 'timed out'}")


def now_ms() -> int:
    """Return the wall clock in integer milliseconds (only used at the I/O edge)."""
    return int(time.time() * 1000)


def start_rollout(settings: Settings, spec: RolloutSpec, *, client: Any) -> Command:
    """Check the spec and the baseline's pin, then send the signed ``start`` command (seq 1)."""
    from streammon.control.registry import Registry
    from streammon.decide.spec import check_spec

    check_spec(spec)
    Registry(client).require_pinned(spec.baseline)
    if client.exists(commands.route_key(spec.rollout_id)):
        raise ConfigError(f"rollout {spec.rollout_id!r} already exists: pick a new rollout_id")
    cmd = commands.make_command(
        rollout_id=spec.rollout_id, seq=1, action="start", baseline=spec.baseline,
        candidate=spec.candidate, fraction=strategies.served_fraction(spec, 0),
        now_ms=now_ms(), key=settings.keys.signer(settings.keys.operator),
        spec=spec, reason="rollout started", epoch=uuid.uuid4().hex)
    produce_command(settings, cmd)
    return cmd


def current_route(client: Any, rollout_id: str) -> commands.RouteState:
    """Return the applied route state of a rollout, or raise ConfigError if none."""
    raw = client.get(commands.route_key(rollout_id))
    if raw is None:
        raise ConfigError(f"no rollout {rollout_id!r} in Redis: start it first")
    return msgspec.json.decode(raw, type=commands.RouteState)


def route_history(client: Any, rollout_id: str) -> list[commands.RouteState]:
    """Return every route state the actuator applied for a rollout, oldest first."""
    raw = client.lrange(commands.log_key(rollout_id), 0, -1)
    if not raw:
        raise ConfigError(f"no history for rollout {rollout_id!r} in Redis")
    return [msgspec.json.decode(r, type=commands.RouteState) for r in raw]


def send_manual(settings: Settings, rollout_id: str, action: Action, *, client: Any,
                reason: str = "", confirm_timeout_s: float | None = 10.0,
                attempts: int = 3) -> Command:
    """Send an operator's promote / rollback / hold / resume for a running rollout.

    The command proposes the next sequence number after the applied route state. If the
    decider's proposal won that number first (a conflict), the command is re-made on
    the new state and sent again, up to ``attempts`` times; with ``confirm_timeout_s``
    the call returns only once the actuator applied it (CommandError otherwise).
    """
    signer = settings.keys.signer(settings.keys.operator)
    for _ in range(attempts):
        route = current_route(client, rollout_id)
        cmd = commands.make_command(
            rollout_id=rollout_id, seq=route.seq + 1, action=action, baseline=route.baseline,
            candidate=route.candidate, fraction=route.fraction, stage=route.stage,
            now_ms=now_ms(), key=signer, reason=reason or f"manual {action}",
            epoch=route.epoch)
        produce_command(settings, cmd)
        if confirm_timeout_s is None or _applied(client, cmd, confirm_timeout_s):
            return cmd
    raise CommandError(f"{action} for {rollout_id!r} was not applied after {attempts} tries: "
                       "is the actuator running? (see `streammon rollout history`)")


def _applied(client: Any, cmd: Command, timeout_s: float) -> bool:
    """Wait until the actuator holds ``cmd.seq`` or later; True if ours (or its effect) is in.

    A rollback or hold that finds the rollout already rolled back or held has its effect.
    """
    deadline = time.monotonic() + timeout_s
    effect = commands.PHASES[cmd.action]
    while time.monotonic() < deadline:
        route = current_route(client, cmd.rollout_id)
        if any(r.sig == cmd.sig for r in route_history(client, cmd.rollout_id)):
            return True
        if route.seq >= cmd.seq:
            return cmd.action in ("rollback", "hold") and route.phase == effect
        time.sleep(0.05)
    raise CommandError(f"the actuator did not apply seq {cmd.seq} of {cmd.rollout_id!r} "
                       f"within {timeout_s:.0f} s: is it running?")
