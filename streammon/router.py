"""Sticky weighted routing from an in-process cache of Redis route state; fails static.

:func:`assign` is the pure rule: a unit id hashes (blake2b, salted with the rollout id)
to a uniform ``u`` in [0, 1); the unit goes to the candidate iff ``u`` is below the
candidate's weight. A unit in the canary at 5% therefore stays in it at 10%.

:class:`Router` keeps an immutable snapshot of the route state and swaps the reference
when a newer ``seq`` arrives, so :meth:`Router.route` takes no lock and does no I/O.
A daemon thread refreshes on every ``streammon:changes`` message naming its rollout
and polls every ``refresh_s`` as a fallback. If Redis is unreachable the last weights
stay; with no weights ever, everything goes to ``default_version`` (the pinned baseline).

Redis layout read (shared contract, see ``control.py``): ``streammon:rollout:{rollout_id}``
(JSON route state) and the channel ``streammon:changes`` (payload: rollout_id).
"""

from __future__ import annotations

import hashlib
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

from streammon.config import Settings
from streammon.control import CHANGES_CHANNEL, RouteState, route_key, route_state_for, verify
from streammon.errors import CommandError, RedisIOError
from streammon.events import Arm, Command

log = logging.getLogger(__name__)

_UNIT_SCALE = float(1 << 64)
_LISTEN_SLICE_S = 0.2
_STATE_DECODER = msgspec.json.Decoder(RouteState)


class Assignment(msgspec.Struct, frozen=True, kw_only=True):
    """Where one unit goes: the version, its arm, and the route state's seq (None: default)."""

    version: str
    arm: Arm
    weights_seq: int | None


def unit_position(unit_id: str, rollout_id: str = "") -> float:
    """Return a uniform, stable u in [0, 1) for ``unit_id`` within ``rollout_id``."""
    digest = hashlib.blake2b(f"{rollout_id}\x00{unit_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _UNIT_SCALE


def assign(unit_id: str, state: RouteState | None, *, default_version: str) -> Assignment:
    """Return the sticky assignment of ``unit_id`` under ``state`` (None: default baseline)."""
    if state is None:
        return Assignment(version=default_version, arm="baseline", weights_seq=None)
    if unit_position(unit_id, state.rollout_id) < state.candidate_weight:
        return Assignment(version=state.candidate, arm="canary", weights_seq=state.seq)
    return Assignment(version=state.baseline, arm="baseline", weights_seq=state.seq)


class Router:
    """Route units by a cached, push-refreshed copy of one rollout's route state."""

    def __init__(
        self,
        *,
        rollout_id: str,
        default_version: str,
        client: redis.Redis | None = None,
        client_factory: Callable[[], redis.Redis] | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        if (client is None) == (client_factory is None):
            raise ValueError("pass exactly one of client= or client_factory=")
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
        options = {"retry": Retry(NoBackoff(), 1), **settings.redis.to_redis()}
        client = redis.Redis.from_url(settings.redis.url, **options)
        return cls(client=client, **kwargs)

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
            raise RedisIOError(f"router {self.rollout_id}: cannot read route state: {exc}") from exc
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
        return self._offer_state(state)

    def offer(self, cmd: Command, key: bytes) -> bool:
        """Fast path: take a command read from the control topic if authentic and newer.

        Counts ``rejected_signature`` (forged or unsigned) and ``rejected_stale`` (a seq
        not newer than the one held); a command for another rollout is ignored.
        """
        try:
            verify(cmd, key)
        except CommandError as exc:
            self.stats["rejected_signature"] += 1
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
        self.stats["rejected_stale"] += 1
        return False

    def _offer_state(self, state: RouteState) -> bool:
        with self._changed:
            current = self._snapshot
            if current is not None and state.seq <= current.seq:
                return False
            self._snapshot = state
            self.changed_at_s = time.monotonic()
            self.stats["changes"] += 1
            self._changed.notify_all()
        log.info("router %s: now seq %d weights %s", self.rollout_id, state.seq, state.weights)
        return True

    def wait_for_seq(self, seq: int, timeout_s: float) -> bool:
        """Block until the snapshot's seq is at least ``seq``; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._snapshot is not None and self._snapshot.seq >= seq, timeout_s
            )

    def start(self) -> Router:
        """Load once, then keep refreshing in a daemon thread; return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"router-{self.rollout_id}", daemon=True
            )
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

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
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

    def _listen(
        self, pubsub: redis.client.PubSub | None, deadline: float
    ) -> redis.client.PubSub | None:
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
