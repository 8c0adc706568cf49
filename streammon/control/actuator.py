"""The actuator: control topic -> signed Redis route state; the one sequence authority.

For each command on ``settings.topics.control`` the actuator verifies its Ed25519
signature against the proposer's trusted keys, checks the weights, checks that a
``start`` or ``rollback`` baseline is pinned, reads the applied route state, and lets
:func:`streammon.control.plan` decide whether the proposal applies and which ``seq`` it
gets. The new state is signed with the actuator's key and written by one Lua script
that compares-and-sets the route key (retrying if it moved), appends to the rollout's
log, records the command as seen and PUBLISHes the rollout_id. Only after Redis took
the write is the offset stored; while Redis is down the same command is retried with
back-off, so no command is lost, and a replay changes nothing (``duplicate``).

A stored value the actuator cannot trust (not JSON, wrong type, bad or missing
signature, say a forged ``seq`` of 2**53) is quarantined: the reason goes to the hash
``streammon:quarantine`` and the counter ``quarantined``, and the rollout continues from
the last authentic state in its log. Nothing about one rollout blocks the others.

A rollback whose baseline cannot be verified (not pinned, weights changed or missing)
still routes to the baseline - refusing it would leave traffic on the candidate that is
being rolled back - and counts ``rollback_unverified_baseline`` (alerted on).

Redis layout: see ``control.py`` and docs/control-plane.md, plus the hash
``streammon:actuator:stats`` -> counters: applied, duplicate, conflict (a proposal made
on a state that has moved on), rejected_stale (a hold/rollback already in effect),
rejected_signature (forged), rejected_unsigned, rejected_invalid, rejected_unpinned,
rejected_integrity (a start's baseline does not match its pin), rejected_expired,
rejected_epoch, rejected_unknown, rejected_terminal, quarantined,
rollback_unverified_baseline, bad_message, redis_errors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal

import msgspec
import redis
from confluent_kafka import Consumer, KafkaException, Message

from streammon import events
from streammon.config.settings import Settings
from streammon.control.commands import (
    CHANGES_CHANNEL,
    ROUTE_RETENTION_S,
    RouteState,
    check_command,
    log_key,
    plan,
    route_key,
    seen_key,
    sign_state,
    signature_counter,
    verify,
    verify_state,
)
from streammon.control.keys import ACTUATOR, DECIDER
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
QUARANTINE_KEY = "streammon:quarantine"
LOG_MAX_ENTRIES = 1000
_LOG_SCAN = 50
_CAS_ATTEMPTS = 5
ApplyResult = Literal["applied", "stale", "rejected"]
WeightsCheck = Literal["pinned", "unchanged", "full"]
_STATE = msgspec.json.Decoder(RouteState)

# KEYS: route state, route log, seen set. ARGV: expected token of the route key ('' when
# absent, the value when a string, '\0' .. type otherwise), new state, channel,
# rollout_id, log cap, command sig, retention_s. Compare-and-set: 'moved' if the key
# changed since the actuator read it; keys of the wrong type are replaced.
_APPLY_LUA = """
local kind = redis.call('TYPE', KEYS[1])['ok']
local token = ''
if kind == 'string' then token = redis.call('GET', KEYS[1])
elseif kind ~= 'none' then token = '\0' .. kind end
if token ~= ARGV[1] then return 'moved' end
if redis.call('TYPE', KEYS[3])['ok'] == 'set' then
  if redis.call('SISMEMBER', KEYS[3], ARGV[6]) == 1 then return 'duplicate' end
else
  redis.call('DEL', KEYS[3])
end
if redis.call('TYPE', KEYS[2])['ok'] ~= 'list' then redis.call('DEL', KEYS[2]) end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[7])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('SADD', KEYS[3], ARGV[6])
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 'applied'
"""


class Actuator:
    """Apply signed command proposals to signed Redis route state.

    Refuses to be built without the actuator's private key and a trusted decider key
    (ConfigError naming ``streammon keys new``). Before a ``start`` the baseline must be
    pinned with a well-formed hash (a rollback applies anyway, counted). ``verify_weights``
    says how hard its *local* weights file (``file://`` or a
    path; remote URIs are never fetched) is checked (:meth:`Registry.verify`):

    - ``"pinned"``: the pin only; no access to the weights.
    - ``"unchanged"`` (default): hashed in full at ``start`` and at the first rollback
      this process sees; at later rollbacks hashed again only if its size or mtime
      changed, so the rollback path does not pay a multi-second hash of a big model.
    - ``"full"``: hashed in full every time (about 1.3 GB/s on the dev machine).
    """

    def __init__(self, *, settings: Settings, client: redis.Redis,
                 verify_weights: WeightsCheck = "unchanged",
                 clock_ms: Callable[[], int] | None = None,
                 weights_roots: tuple[str, ...] = ()) -> None:
        keys = settings.keys
        keys.require_trust("the actuator", (DECIDER,))
        self._signer = keys.signer(ACTUATOR)
        self.settings = settings
        self.verify_weights = verify_weights
        self._keys = keys
        self._client = client
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._registry = Registry(client, roots=weights_roots)
        self._script = client.register_script(_APPLY_LUA)
        self.stats: Counter[str] = Counter()

    def apply(self, cmd: events.Command) -> ApplyResult:
        """Apply ``cmd`` if it is authentic, valid and may follow the applied state.

        Raise RedisIOError if Redis fails (the caller retries the same command).
        """
        try:
            verify(cmd, self._keys)
        except CommandError as exc:
            return self._reject(signature_counter(cmd), exc)
        try:
            check_command(cmd)
        except CommandError as exc:
            return self._reject("rejected_invalid", exc)
        if cmd.action == "start":
            try:
                self._check_baseline(cmd)
            except IntegrityError as exc:
                return self._reject("rejected_integrity", exc)
            except RegistryError as exc:
                return self._reject("rejected_unpinned", exc)
        elif cmd.action == "rollback":
            try:
                self._check_baseline(cmd)
            except RegistryError as exc:
                self._count("rollback_unverified_baseline")
                log.error("rollback of %s routes to baseline %s although it cannot be "
                          "verified: %s", cmd.rollout_id, cmd.baseline, exc)
        for _ in range(_CAS_ATTEMPTS):
            result = self._write(cmd)
            if result is not None:
                return result
        raise RedisIOError(f"route state of {cmd.rollout_id} kept moving; retrying")

    def _check_baseline(self, cmd: events.Command) -> None:
        """Raise RegistryError unless the baseline is pinned and its weights verify."""
        if self.verify_weights == "pinned":
            self._registry.require_pinned(cmd.baseline)
        else:
            trust = self.verify_weights == "unchanged"
            self._registry.verify(cmd.baseline, trust_unchanged=trust)

    def _write(self, cmd: events.Command) -> ApplyResult | None:
        """One compare-and-set attempt; None if the route key moved meanwhile."""
        rid = cmd.rollout_id
        try:
            if self._seen(rid, cmd.sig):
                return self._refuse(cmd, "duplicate", None)
            token, held = self._read_held(rid)
        except redis.RedisError as exc:
            raise redis_io_error(f"cannot read route state of {rid}", exc) from exc
        now_ms = self._clock_ms()
        verdict, new = plan(held, cmd, now_ms)
        if new is None:
            return self._refuse(cmd, verdict, held)
        new = msgspec.structs.replace(new, applied_ms=now_ms)
        state = msgspec.json.encode(sign_state(new, self._signer))
        argv: list[bytes | str | int] = [token, state, CHANGES_CHANNEL, rid,
                                         LOG_MAX_ENTRIES, cmd.sig, ROUTE_RETENTION_S]
        try:
            raw = self._script(keys=[route_key(rid), log_key(rid), seen_key(rid)], args=argv)
        except redis.RedisError as exc:
            raise redis_io_error(f"cannot apply {rid}#{cmd.seq}", exc) from exc
        outcome = raw.decode() if isinstance(raw, bytes) else str(raw)
        if outcome == "moved":
            return None
        if outcome == "duplicate":
            return self._refuse(cmd, "duplicate", held)
        self._count("applied")
        log.info("applied %s#%d %s by %s weights=%s", rid, new.seq, cmd.action, cmd.issued_by,
                 new.weights)
        return "applied"

    def _refuse(self, cmd: events.Command, verdict: str, held: RouteState | None) -> ApplyResult:
        counter = verdict if verdict.startswith("rejected") or verdict in (
            "duplicate", "conflict") else "rejected_stale"
        self._count(counter)
        level = logging.INFO if verdict in ("duplicate", "stale") else logging.WARNING
        log.log(level, "ignored %s#%d %s by %s: %s (applied seq %s)", cmd.rollout_id, cmd.seq,
                cmd.action, cmd.issued_by, verdict, held.seq if held else None)
        return "rejected" if verdict.startswith("rejected") else "stale"

    def _seen(self, rid: str, sig: str) -> bool:
        """Return True if this very command was applied before (a redelivery or a replay)."""
        try:
            return bool(self._client.sismember(seen_key(rid), sig))
        except redis.ResponseError:
            return False  # a poison value under the key: the write replaces it

    def _read_held(self, rid: str) -> tuple[str | bytes, RouteState | None]:
        """Return (CAS token, last authentic state) of a rollout; quarantine what is not."""
        key = route_key(rid)
        kind = self._client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind == "none":
            return "", self._last_authentic(rid)
        if kind != "string":
            self._quarantine(rid, f"{key} is a Redis {kind}, not a string")
            return "\0" + kind, self._last_authentic(rid)
        raw = self._client.get(key) or b""
        try:
            state = _STATE.decode(raw)
            verify_state(state, self._keys)
        except (msgspec.DecodeError, CommandError) as exc:
            self._quarantine(rid, f"{key} holds an untrusted value: {exc}")
            return raw, self._last_authentic(rid)
        if state.rollout_id != rid:
            self._quarantine(rid, f"{key} holds the state of {state.rollout_id!r}")
            return raw, self._last_authentic(rid)
        return raw, state

    def _last_authentic(self, rid: str) -> RouteState | None:
        """Return the newest state of the rollout's log that the actuator signed."""
        key = log_key(rid)
        if self._client.type(key) not in (b"list", "list"):
            return None
        for raw in reversed(self._client.lrange(key, -_LOG_SCAN, -1)):
            try:
                state = _STATE.decode(raw)
                verify_state(state, self._keys)
            except (msgspec.DecodeError, CommandError):
                continue
            if state.rollout_id == rid:
                return state
        return None

    def _quarantine(self, rid: str, reason: str) -> None:
        """Record why a rollout's stored value was not trusted (counted, kept per rollout)."""
        log.error("quarantined the route value of %s: %s", rid, reason)
        self._count("quarantined")
        try:
            self._client.hset(QUARANTINE_KEY, rid, reason[:500])
        except redis.RedisError:
            log.warning("cannot record the quarantine of %s", rid)

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
                self.stats["redis_errors"] += 1
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
                 verify_weights: WeightsCheck = "unchanged",
                 weights_roots: tuple[str, ...] = ()) -> None:
    """Entry point for the CLI: run one actuator; refuse to start without keys."""
    settings.keys.require_trust("the actuator", (DECIDER,))
    settings.keys.signer(ACTUATOR)
    client = connect(settings)
    try:
        Actuator(settings=settings, client=client, verify_weights=verify_weights,
                 weights_roots=weights_roots).run(stop)
    finally:
        client.close()
