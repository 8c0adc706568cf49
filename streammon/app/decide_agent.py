"""The decider as a Faust agent: fold summaries and commands, assess, send commands.

One agent reads the cohorts topic (cumulative summaries) and the control topic (rollout
starts and operator commands). Both have one partition, so one worker holds all rollout
state, in two tables: the latest summary per cell key, and one
:class:`~streammon.decide.progress.RolloutState` per progress. After every event it calls the
pure :func:`streammon.decide.progress.progress` and sends what that returns: diagnoses to the
diagnostics topic and command proposals, signed with the ``decider`` key, to the control
topic.

The actuator decides which proposals apply. The decider learns the outcome from the
applied route state in Redis (signed by the actuator), read before every assessment
(:func:`streammon.decide.progress.sync_applied`): an operator's hold stops it, a proposal that
lost its seq is re-made from the state that won. From the control topic it takes only
``start`` (the rollout's spec and epoch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import msgspec
import redis

from streammon import events
from streammon.config.settings import Settings
from streammon.control import commands
from streammon.control.keys import DECIDER, Keyring
from streammon.control.store import connect
from streammon.decide import progress
from streammon.decide.assessor import RolloutAssessor
from streammon.decide.source_watermarks import SourceWatermarks
from streammon.errors import CommandError, EventError, StreamMonError
from streammon.join.state import check_rollout_window

log = logging.getLogger(__name__)
_STATE = msgspec.json.Decoder(progress.RolloutState)
_ROUTE = msgspec.json.Decoder(commands.RouteState)
REDIS_READ_TIMEOUT_S = 1.0
"""How long one read of the applied route state may take before the decider assesses
without it (as if Redis were unreachable); the read runs in a thread, off the event loop."""


def read_applied(client: redis.Redis, keys: Keyring, rollout_id: str) -> commands.RouteState | None:
    """Return the actuator's applied, signed route state; None if missing or unreadable."""
    try:
        raw = client.get(commands.route_key(rollout_id))
        if raw is None:
            return None
        state = _ROUTE.decode(raw)
        commands.verify_state(state, keys)
    except (redis.RedisError, msgspec.DecodeError, CommandError) as exc:
        log.warning("decider: cannot read the applied state of %s: %s", rollout_id, exc)
        return None
    return state


async def read_applied_bounded(client: redis.Redis, keys: Keyring, rollout_id: str, *,
                               timeout_s: float = REDIS_READ_TIMEOUT_S,
                               ) -> commands.RouteState | None:
    """:func:`read_applied` in a worker thread, given up after ``timeout_s`` (None).

    A slow or hung Redis then delays the decider's agent by at most ``timeout_s`` per
    assessment, and never blocks the event loop (Faust's heartbeats, the join's timers).
    """
    try:
        return await asyncio.wait_for(asyncio.to_thread(read_applied, client, keys, rollout_id),
                                      timeout_s)
    except TimeoutError:
        log.warning("decider: reading the applied state of %s took over %.1f s; assessing "
                    "without it", rollout_id, timeout_s)
        return None


def next_look_ms(state: progress.RolloutState, clock_ms: int) -> float:
    """Return the event time at which the decider next assesses the rollout.

    A running rollout: when its next window closes. A held one: one window after
    ``clock_ms``, because its resume is read from the applied route state, which can lag
    the command on the control topic (the decider may see the operator's resume before the
    actuator applied it; without another look the rollout would stay held for the decider
    while the routers run it again). A promoted or rolled-back one: never (inf).
    """
    spec = state.spec
    if state.phase in commands.FINAL_PHASES:
        return float("inf")
    if state.phase == "held":
        return clock_ms + spec.window_ms
    return state.origin_ms + (state.windows_closed + 1) * spec.window_ms + spec.grace_ms


START_LOOKUP_INTERVAL_S = 30.0


def find_start(settings: Settings, rollout_id: str, *, quiet_s: float = 2.0,
               timeout_s: float = 15.0) -> events.Command | None:
    """Return the first signed ``start`` of ``rollout_id`` on the control topic, or None.

    Reads from the beginning until the start is found, nothing new arrives for ``quiet_s``
    or ``timeout_s`` passes (not up to the high watermark, which some brokers report late).
    """
    from streammon.kafka.topic_reader import TopicReader

    deadline = time.monotonic() + timeout_s
    try:
        with TopicReader(settings, [settings.topics.control]) as reader:
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < quiet_s and time.monotonic() < deadline:
                batch = reader.poll(0.5)
                if batch:
                    quiet_since = time.monotonic()
                for _topic, key, value in batch:
                    if key is not None and key != rollout_id.encode():
                        continue
                    try:
                        cmd = events.decode(events.Command, value)
                    except EventError:
                        continue
                    if cmd.rollout_id == rollout_id and cmd.action == "start":
                        return cmd
    except StreamMonError as exc:
        log.warning("decider: cannot read the control topic for %s: %s", rollout_id, exc)
    return None


class DecideAgent:
    """Wires the decider's topics, tables and agent into a Faust app."""

    def __init__(self, app: Any, *, settings: Settings, partitions: int) -> None:
        topics = settings.topics
        self.settings = settings
        settings.keys.require_trust("the decider", (DECIDER,))
        self._signer = settings.keys.signer(DECIDER)
        self._redis = connect(settings, socket_timeout=REDIS_READ_TIMEOUT_S,
                              socket_connect_timeout=REDIS_READ_TIMEOUT_S)
        self.cohorts_topic, self.control_topic = topics.cohorts, topics.control
        self.source = app.topic(topics.cohorts, topics.control,
                                key_serializer="raw", value_serializer="raw")
        self.control = app.topic(topics.control, key_serializer="raw", value_serializer="raw")
        self.diagnostics = app.topic(topics.diagnostics, key_serializer="raw",
                                     value_serializer="raw")
        self.rollbacks = app.topic(topics.rollbacks, key_serializer="raw", value_serializer="raw")
        opts = {"partitions": 1, "key_type": bytes, "value_type": bytes}
        self.summaries_table = app.Table("decide-summaries", **opts)
        self.rollouts_table = app.Table("decide-rollouts", **opts)
        self.summaries: dict[str, dict[str, events.CohortSummary]] = defaultdict(dict)
        self.clock = SourceWatermarks(partitions=partitions)
        self._next_look_ms: dict[str, float] = {}
        self.assessors: dict[str, RolloutAssessor] = {}
        """Incremental decision state per rollout, in memory: after a restart it is rebuilt
        by folding the cells recovered from the summaries table (one catch-up)."""
        self._loaded = False
        self._start_lookups: dict[str, float] = {}

        async def decide(stream: Any) -> None:
            async for event in stream.events():
                await self.handle(event.message.topic, event.value)

        app.agent(self.source, name="streammon-decide")(decide)

    def _load(self) -> None:
        """Rebuild the in-memory summary index from the recovered table, once."""
        if self._loaded:
            return
        for raw in list(self.summaries_table.values()):
            self._index(events.decode(events.CohortSummary, raw))
        self._loaded = True

    def _index(self, summary: events.CohortSummary) -> None:
        self.summaries[summary.rollout_id][summary.key] = summary
        self.clock.observe(summary.source, summary.watermark_ms)

    async def handle(self, topic: str, value: bytes) -> None:
        """Fold one summary or command, then assess the rollouts whose windows closed.

        Time is what every join partition has reached (:class:`SourceWatermarks`), so a
        window is judged once all of its data is in, never on the fastest partition's.
        """
        self._load()
        try:
            if topic == self.cohorts_topic:
                summary = events.decode(events.CohortSummary, value)
                self.summaries_table[summary.key.encode()] = value
                self._index(summary)
                clock_ms = self.clock.closed_through_ms()
                for rollout_id in list(self.summaries):
                    if clock_ms >= self._next_look_ms.get(rollout_id, 0):
                        await self._assess(rollout_id)
                return
            else:
                cmd = events.decode(events.Command, value)
                self._fold_command(cmd)
                rollout_id = cmd.rollout_id
        except EventError:
            log.warning("decider skipped a malformed event on %s", topic, exc_info=True)
            return
        await self._assess(rollout_id)

    def _fold_command(self, cmd: events.Command) -> None:
        try:
            commands.verify(cmd, self.settings.keys)
        except CommandError:
            log.error("decider: ignored an unsigned or forged command for %s (seq %d)",
                      cmd.rollout_id, cmd.seq)
            return
        key = cmd.rollout_id.encode()
        raw = self.rollouts_table.get(key)
        if cmd.action == "start" and raw is None and cmd.spec is not None:
            self.rollouts_table[key] = msgspec.json.encode(progress.start_state(cmd))

    async def _recover_start(self, rollout_id: str) -> bool:
        """Fold the rollout's ``start`` from the control topic when its table entry is missing.

        The entry comes from the ``start`` the decider read once; if that table's changelog
        was not fully restored after a crash (a broker that reports a stale high watermark
        does this to Faust's recovery), the decider would ignore the rollout forever. At most
        one look-up per rollout every ``START_LOOKUP_INTERVAL_S``, in a worker thread.
        """
        now = time.monotonic()
        if now - self._start_lookups.get(rollout_id, -START_LOOKUP_INTERVAL_S) \
                < START_LOOKUP_INTERVAL_S:
            return False
        self._start_lookups[rollout_id] = now
        cmd = await asyncio.to_thread(find_start, self.settings, rollout_id)
        if cmd is None:
            return False
        self._fold_command(cmd)
        log.warning("decider: recovered the start of %s from the control topic (its table "
                    "entry was missing)", rollout_id)
        return self.rollouts_table.get(rollout_id.encode()) is not None

    async def _assess(self, rollout_id: str) -> None:
        key = rollout_id.encode()
        raw = self.rollouts_table.get(key)
        if raw is None and await self._recover_start(rollout_id):
            raw = self.rollouts_table.get(key)
        if raw is None:
            return
        state = _STATE.decode(raw)
        now_ms = int(time.time() * 1000)
        applied = await read_applied_bounded(self._redis, self.settings.keys, rollout_id)
        if applied is not None:
            synced = (state.seq, state.phase, state.stage, list(state.stage_changes))
            progress.sync_applied(state, applied, now_ms)
            if (state.seq, state.phase, state.stage, state.stage_changes) != synced:
                self.rollouts_table[key] = msgspec.json.encode(state)
        before = state.windows_closed
        summaries = list(self.summaries[rollout_id].values())
        try:
            for join_window_ms in {s.window_ms for s in summaries}:
                check_rollout_window(state.spec.window_ms, join_window_ms)
            diagnoses, cmds, reports = progress.progress(
                state, summaries, self.clock.closed_through_ms(), now_ms=now_ms,
                key=self._signer,
                assessor=self.assessors.setdefault(rollout_id, RolloutAssessor()))
        except StreamMonError:
            log.exception("decider: cannot assess rollout %s; it stays as it is", rollout_id)
            return
        self._next_look_ms[rollout_id] = next_look_ms(state, self.clock.closed_through_ms())
        if state.windows_closed == before and not cmds:
            return
        self.rollouts_table[key] = msgspec.json.encode(state)
        for diagnosis in diagnoses:
            await self.diagnostics.send(key=key, value=events.encode(diagnosis))
        for cmd in cmds:
            log.info("decider: %s %s seq=%d (%s)", cmd.action, rollout_id, cmd.seq, cmd.reason)
            await self.control.send(key=key, value=events.encode(cmd))
        for report in reports:
            await self.rollbacks.send(key=key, value=events.encode(report))
