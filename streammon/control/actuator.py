"""The actuator: control topic -> Redis route state, idempotent and at-least-once.

For each command on ``settings.topics.control`` the actuator verifies the HMAC, checks
the weights, checks that a ``start`` or ``rollback`` baseline is pinned, then runs one
Lua script that atomically compares ``seq`` with the stored one, writes the new route
state, appends it to the rollout's log and PUBLISHes the rollout_id. Only after Redis
took the write is the offset stored; while Redis is down the same command is retried
with back-off, so no command is lost, and a replay changes nothing.

Redis layout: see ``control.py`` (route state, ``:log`` capped at LOG_MAX_ENTRIES,
channel ``streammon:changes``) and docs/control-plane.md, plus the
hash ``streammon:actuator:stats`` -> counters: applied, duplicate, conflict (same seq,
  different command: two issuers raced for one seq, the first one won), rejected_stale,
  rejected_signature (forged), rejected_unsigned, rejected_invalid, rejected_unpinned,
  rejected_integrity (baseline weights do not match their pin), bad_message, redis_errors.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Literal

import msgspec
import redis
from confluent_kafka import Consumer, KafkaException, Message

from streammon import events
from streammon.config.settings import Settings
from streammon.control.commands import (
    CHANGES_CHANNEL,
    check_command,
    route_key,
    route_state_for,
    signature_counter,
    verify,
)
from streammon.control.registry import Registry
from streammon.control.store import connect, redis_io_error
from streammon.errors import (
    CommandError,
    EventError,
    IntegrityError,
    KafkaIOError,
    RedisIOError,
    RegistryError,
)

log = logging.getLogger(__name__)

STATS_KEY = "streammon:actuator:stats"
LOG_MAX_ENTRIES = 1000
ApplyResult = Literal["applied", "stale", "rejected"]
WeightsCheck = Literal["pinned", "unchanged", "full"]

# KEYS: route state, route log. ARGV: seq, state JSON, channel, rollout_id, action, log cap, sig.
# hold/resume keep the stored weights: they freeze or unfreeze traffic where it is.
_APPLY_LUA = """
local current = redis.call('GET', KEYS[1])
local stored_seq = 0
local old = nil
if current then
  old = cjson.decode(current)
  stored_seq = tonumber(old['seq']) or 0
end
local seq = tonumber(ARGV[1])
if seq == stored_seq then
  if old['sig'] == nil or old['sig'] == ARGV[7] then return {'duplicate', stored_seq} end
  return {'conflict', stored_seq}
end
if seq < stored_seq then return {'stale', stored_seq} end
local state = ARGV[2]
if old and (ARGV[5] == 'hold' or ARGV[5] == 'resume') then
  local new = cjson.decode(state)
  new['weights'] = old['weights']
  new['fraction'] = old['fraction']
  new['stage'] = old['stage']
  state = cjson.encode(new)
end
redis.call('SET', KEYS[1], state)
redis.call('RPUSH', KEYS[2], state)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[6]), -1)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'applied', seq}
"""


class Actuator:
    """Apply signed, sequenced commands to Redis route state.

    Before a ``start`` or ``rollback`` the baseline must be pinned with a well-formed
    hash. ``verify_weights`` says how hard its *local* weights file (``file://`` or a
    path; remote URIs are never fetched) is checked (:meth:`Registry.verify`):

    - ``"pinned"``: the pin only; no access to the weights.
    - ``"unchanged"`` (default): hashed in full at ``start`` and at the first rollback
      this process sees; at later rollbacks hashed again only if its size or mtime
      changed, so the rollback path does not pay a multi-second hash of a big model.
    - ``"full"``: hashed in full every time (about 1.3 GB/s on the dev machine).
    """

    def __init__(self, *, settings: Settings, client: redis.Redis, key: bytes,
                 verify_weights: WeightsCheck = "unchanged") -> None:
        self.settings = settings
        self.verify_weights = verify_weights
        self._client = client
        self._key = key
        self._registry = Registry(client)
        self._script = client.register_script(_APPLY_LUA)
        self.stats: Counter[str] = Counter()

    def apply(self, cmd: events.Command) -> ApplyResult:
        """Apply ``cmd`` if it is authentic, valid and newer; raise RedisIOError if Redis fails."""
        try:
            verify(cmd, self._key)
        except CommandError as exc:
            return self._reject(signature_counter(cmd), exc)
        try:
            check_command(cmd)
        except CommandError as exc:
            return self._reject("rejected_invalid", exc)
        if cmd.action in ("start", "rollback"):
            try:
                self._check_baseline(cmd)
            except IntegrityError as exc:
                return self._reject("rejected_integrity", exc)
            except RegistryError as exc:
                return self._reject("rejected_unpinned", exc)
        return self._write(cmd)

    def _check_baseline(self, cmd: events.Command) -> None:
        """Raise RegistryError unless the baseline is pinned and its weights verify."""
        if self.verify_weights == "pinned":
            self._registry.require_pinned(cmd.baseline)
        else:
            trust = self.verify_weights == "unchanged"
            self._registry.verify(cmd.baseline, trust_unchanged=trust)

    def _write(self, cmd: events.Command) -> ApplyResult:
        state = msgspec.json.encode(route_state_for(cmd))
        keys = [route_key(cmd.rollout_id), f"{route_key(cmd.rollout_id)}:log"]
        argv: list[bytes | str | int] = [
            cmd.seq, state, CHANGES_CHANNEL, cmd.rollout_id, cmd.action, LOG_MAX_ENTRIES, cmd.sig
        ]
        try:
            verdict, stored_seq = self._script(keys=keys, args=argv)
        except redis.RedisError as exc:
            self.stats["redis_errors"] += 1
            raise redis_io_error(f"cannot apply {cmd.rollout_id}#{cmd.seq}", exc) from exc
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        if verdict == "applied":
            self._count("applied")
            log.info(
                "applied %s#%d %s weights=%s", cmd.rollout_id, cmd.seq, cmd.action, cmd.weights
            )
            return "applied"
        self._count(verdict if verdict in ("duplicate", "conflict") else "rejected_stale")
        level = logging.ERROR if verdict == "conflict" else logging.INFO
        log.log(level, "ignored %s#%d by %s: %s (stored seq %s)",
                cmd.rollout_id, cmd.seq, cmd.issued_by, verdict, stored_seq)
        return "stale"

    def _reject(self, counter: str, exc: Exception) -> ApplyResult:
        log.error("rejected command (%s): %s", counter, exc)
        self._count(counter)
        return "rejected"

    def _count(self, counter: str) -> None:
        """Count locally always, in Redis when it answers (counters are best effort)."""
        self.stats[counter] += 1
        try:
            self._client.hincrby(STATS_KEY, counter, 1)
        except redis.RedisError:
            log.warning("cannot record counter %s in Redis", counter)

    def handle(self, value: bytes | None) -> ApplyResult:
        """Decode and apply one control message; undecodable ones are counted and dropped."""
        try:
            cmd = events.decode(events.Command, value or b"")
        except EventError as exc:
            return self._reject("bad_message", exc)
        return self.apply(cmd)

    def run(self, stop: threading.Event, *, group_id: str | None = None) -> None:
        """Consume the control topic until ``stop`` is set, storing offsets after each write."""
        group = group_id or f"{self.settings.app_id}-actuator"
        consumer = Consumer(self.settings.kafka.consumer_config(group))
        consumer.subscribe([self.settings.topics.control])
        try:
            while not stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None or _is_error(msg):
                    continue
                if self._handle_until_written(msg.value(), stop):
                    _store_offset(consumer, msg)
        finally:
            consumer.close()

    def _handle_until_written(self, value: bytes | None, stop: threading.Event) -> bool:
        """Handle one message, retrying with back-off while Redis is down; False if stopped.

        The consumer is not polled meanwhile: if the outage outlasts
        ``max.poll.interval.ms`` the group rebalances and the unstored offset makes
        Kafka deliver the command again, which the seq check turns into a no-op.
        """
        backoff_s = _INITIAL_BACKOFF_S
        while not stop.is_set():
            try:
                self.handle(value)
            except RedisIOError as exc:
                log.warning("Redis unavailable, retrying in %.2f s: %s", backoff_s, exc)
                stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, _MAX_BACKOFF_S)
                continue
            return True
        return False


_INITIAL_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0


def _is_error(msg: Message) -> bool:
    """Log a consumer error; raise KafkaIOError when it is fatal."""
    error = msg.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaIOError(f"control consumer failed: {error}") from KafkaException(error)
    log.warning("control consumer: %s", error)
    return True


def _store_offset(consumer: Consumer, msg: Message) -> None:
    """Store ``msg``'s offset; after a rebalance the command simply comes again."""
    try:
        consumer.store_offsets(msg)
    except KafkaException as exc:
        log.warning("cannot store offset %s (partition revoked?): %s", msg.offset(), exc)


def run_actuator(settings: Settings, stop: threading.Event, *,
                 verify_weights: WeightsCheck = "unchanged") -> None:
    """Entry point for the CLI: run one actuator with settings' Redis and HMAC key."""
    client = connect(settings)
    try:
        Actuator(settings=settings, client=client, key=settings.hmac_key,
                 verify_weights=verify_weights).run(stop)
    finally:
        client.close()
