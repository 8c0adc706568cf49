"""Sticky weighted routing from an in-process cache of Redis route state; fails static.

:func:`~streammon.control.commands.assign` (re-exported here) is the pure, sticky rule.
:class:`Router` keeps an immutable snapshot of the route state and swaps the reference
when a newer ``seq`` arrives, so :meth:`Router.route` takes no lock and does no I/O.
A daemon thread refreshes on every ``streammon:changes`` message naming its rollout and
polls every ``refresh_s`` as a fallback; :class:`~streammon.sdk.control_follower.ControlFollower`
can feed it straight from the control topic too. If Redis is unreachable the last weights
stay; with no weights ever, everything goes to ``default_version`` (the pinned baseline).
Redis layout read (shared contract, see ``control.py``): ``streammon:rollout:{rollout_id}``
(JSON route state) and the channel ``streammon:changes`` (payload: rollout_id).

A router holds public keys only (``keys``): it takes a route state from Redis only if
the actuator's key signed it (``rejected_state`` otherwise, whatever its ``seq``), and a
command from the control topic only if a trusted principal signed it. A state taken
from the fast path is provisional: the actuator may assign another outcome to that
``seq``, so the authentic Redis state for the same ``seq`` replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streammon.config.settings import Settings
from streammon.control.commands import (
    CHANGES_CHANNEL,
    Assignment,
    RouteState,
    assign,
    route_key,
    route_state_for,
    seq_verdict,
    signature_counter,
    unit_position,
    verify,
    verify_state,
)
from streammon.control.keys import ACTUATOR, Keyring
from streammon.control.store import connect, redis_io_error
from streammon.errors import CommandError, ConfigError, RedisIOError
from streammon.events import Command

__all__ = ["Assignment", "Router", "assign", "unit_position"]

log = logging.getLogger(__name__)

_LISTEN_SLICE_S = 0.2
_STATE_DECODER = msgspec.json.Decoder(RouteState)


class Router:
    """Route units by a cached, push-refreshed copy of one rollout's route state.

    ``changed_at_s`` is the ``time.monotonic()`` of the last switch (None before any).
    """

    def __init__(self, *, rollout_id: str, default_version: str, keys: Keyring,
                 client: redis.Redis | None = None,
                 client_factory: Callable[[], redis.Redis] | None = None,
                 refresh_s: float = 1.0) -> None:
        if (client is None) == (client_factory is None):
            raise ConfigError("pass exactly one of client= or client_factory=")
        keys.require_trust("a router", (ACTUATOR,))
        self._keys = keys
        self._provisional = False
        self.rollout_id = rollout_id
        self.default_version = default_version
        self.refresh_s = refresh_s
        self._client = client if client is not None else client_factory()  # type: ignore[misc]
        self._snapshot: RouteState | None = None
        self.changed_at_s: float | None = None
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Router:
        """Build a router on ``settings.redis`` (kwargs: rollout_id, default_version ...).

        The client fails fast (one retry, no back-off) unless ``settings.redis.options``
        sets ``retry``: an unreachable Redis should be noticed, not waited out.
        """
        client = connect(settings, retry=Retry(NoBackoff(), 1))
        return cls(client=client, keys=settings.keys, **kwargs)

    @property
    def snapshot(self) -> RouteState | None:
        """The route state in use now, or None if none was ever loaded."""
        return self._snapshot

    def route(self, unit_id: str) -> Assignment:
        """Return the assignment of ``unit_id``: no lock, no I/O."""
        return assign(unit_id, self._snapshot, default_version=self.default_version)

    def load(self) -> bool:
        """Read the route state once; raise RedisIOError if Redis refuses or is unreachable.

        The strict twin of :meth:`refresh`, for start-up checks: a wrong password or a
        missing ACL permission surfaces here instead of as a silent fail-static router.
        """
        try:
            raw = self._client.get(route_key(self.rollout_id))
        except redis.RedisError as exc:
            raise redis_io_error(f"router {self.rollout_id}: cannot read route state", exc) from exc
        return self._take(raw)

    def refresh(self) -> bool:
        """Read the route state from Redis once; return True if a newer one was taken."""
        self.stats["refreshes"] += 1
        try:
            return self.load()
        except RedisIOError as exc:
            self.stats["refresh_errors"] += 1
            log.warning("%s - keeping last weights", exc)
            return False

    def _take(self, raw: bytes | str | None) -> bool:
        if raw is None:
            return False
        try:
            state = _STATE_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            self.stats["decode_errors"] += 1
            log.error("router %s: bad route state, keeping last: %s", self.rollout_id, exc)
            return False
        try:
            verify_state(state, self._keys)
        except CommandError as exc:
            self.stats["rejected_state"] += 1
            log.error("router %s: route state not signed by the actuator, keeping last: %s",
                      self.rollout_id, exc)
            return False
        if state.rollout_id != self.rollout_id:
            self.stats["rejected_state"] += 1
            return False
        return self._offer_state(state, authentic=True)

    def offer(self, cmd: Command) -> bool:
        """Fast path: take a command read from the control topic if authentic and newer.

        Counts ``rejected_signature`` (forged), ``rejected_unsigned``, ``rejected_stale``
        (older seq), ``duplicate`` and ``conflict``
        (:func:`~streammon.control.commands.seq_verdict`).
        """
        try:
            verify(cmd, self._keys)
        except CommandError as exc:
            self.stats[signature_counter(cmd)] += 1
            log.error("router %s: %s", self.rollout_id, exc)
            return False
        if cmd.rollout_id != self.rollout_id:
            return False
        state = route_state_for(cmd)
        current = self._snapshot
        if cmd.action in ("hold", "resume") and current is not None:
            state = msgspec.structs.replace(
                state, weights=current.weights, fraction=current.fraction, stage=current.stage
            )
        if self._offer_state(state):
            return True
        verdict = seq_verdict(self._snapshot, cmd)
        self.stats["rejected_stale" if verdict == "stale" else verdict] += 1
        return False

    def _offer_state(self, state: RouteState, *, authentic: bool = False) -> bool:
        with self._changed:
            current = self._snapshot
            if current is not None and state.seq < current.seq:
                return False
            if current is not None and state.seq == current.seq and not (
                    authentic and self._provisional and state.sig != current.sig):
                if authentic:
                    self._provisional = False
                return False
            self._snapshot = state
            self._provisional = not authentic
            self.changed_at_s = time.monotonic()
            self.stats["changes"] += 1
            self._changed.notify_all()
        log.info("router %s: now seq %d weights %s", self.rollout_id, state.seq, state.weights)
        return True

    def wait_for_seq(self, seq: int, timeout_s: float) -> bool:
        """Block until the snapshot's seq is at least ``seq``; False on timeout."""
        with self._changed:
            held = lambda: self._snapshot is not None and self._snapshot.seq >= seq  # noqa: E731
            return self._changed.wait_for(held, timeout_s)

    def start(self) -> Router:
        """Load once, then keep refreshing in a daemon thread; return self."""
        if self._thread is None:
            name = f"router-{self.rollout_id}"
            self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the refresh thread (the last snapshot stays usable)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.refresh_s + 5.0)
            self._thread = None

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _loop(self) -> None:
        pubsub: redis.client.PubSub | None = None
        try:
            while not self._stop.is_set():
                deadline = time.monotonic() + self.refresh_s
                pubsub = self._subscribe(pubsub)
                self.refresh()
                pubsub = self._listen(pubsub, deadline)
        finally:
            _close_quietly(pubsub)

    def _subscribe(self, pubsub: redis.client.PubSub | None) -> redis.client.PubSub | None:
        """Return a subscribed pubsub, or None (counted) while Redis is unreachable."""
        if pubsub is not None:
            return pubsub
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANGES_CHANNEL)
        except redis.RedisError:
            self.stats["subscribe_errors"] += 1
            _close_quietly(pubsub)
            return None
        return pubsub

    def _listen(self, pubsub: redis.client.PubSub | None,
                deadline: float) -> redis.client.PubSub | None:
        """Wait until ``deadline`` or a change for this rollout; return the pubsub to reuse."""
        while not self._stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
            if pubsub is None:
                self._stop.wait(remaining)
                return None
            try:
                message = pubsub.get_message(timeout=min(remaining, _LISTEN_SLICE_S))
            except (redis.RedisError, OSError, ValueError):
                self.stats["subscribe_errors"] += 1
                _close_quietly(pubsub)
                pubsub = None
                continue
            if message is not None and _payload(message) == self.rollout_id:
                self.stats["notifications"] += 1
                return pubsub
        return pubsub


def _payload(message: dict[str, Any]) -> str:
    data = message.get("data")
    return data.decode() if isinstance(data, bytes) else str(data)


def _close_quietly(pubsub: redis.client.PubSub | None) -> None:
    if pubsub is not None:
        try:
            pubsub.close()
        except (redis.RedisError, OSError):
            log.debug("closing a broken pubsub failed", exc_info=True)
