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

import logging
import time
from collections import defaultdict
from typing import Any

import msgspec
import redis

from streammon import events
from streammon.config.settings import Settings
from streammon.control import commands
from streammon.control.keys import DECIDER
from streammon.control.store import connect
from streammon.decide import progress
from streammon.decide.assessor import RolloutAssessor
from streammon.decide.source_watermarks import SourceWatermarks
from streammon.errors import CommandError, EventError, StreamMonError
from streammon.join.state import check_rollout_window

log = logging.getLogger(__name__)
_STATE = msgspec.json.Decoder(progress.RolloutState)
_ROUTE = msgspec.json.Decoder(commands.RouteState)


def _next_close_ms(state: progress.RolloutState) -> float:
    """Return the event time at which the rollout's next window closes (inf when done)."""
    if state.phase != "running":
        return float("inf")
    spec = state.spec
    return state.origin_ms + (state.windows_closed + 1) * spec.window_ms + spec.grace_ms


class DecideAgent:
    """Wires the decider's topics, tables and agent into a Faust app."""

    def __init__(self, app: Any, *, settings: Settings, partitions: int) -> None:
        topics = settings.topics
        self.settings = settings
        settings.keys.require_trust("the decider", (DECIDER,))
        self._signer = settings.keys.signer(DECIDER)
        self._redis = connect(settings)
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
        self._next_close_ms: dict[str, float] = {}
        self.assessors: dict[str, RolloutAssessor] = {}
        """Incremental decision state per rollout, in memory: after a restart it is rebuilt
        by folding the cells recovered from the summaries table (one catch-up)."""
        self._loaded = False

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
                    if clock_ms >= self._next_close_ms.get(rollout_id, 0):
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

    def _applied(self, rollout_id: str) -> commands.RouteState | None:
        """Return the actuator's applied, signed route state; None if unreadable."""
        try:
            raw = self._redis.get(commands.route_key(rollout_id))
            if raw is None:
                return None
            state = _ROUTE.decode(raw)
            commands.verify_state(state, self.settings.keys)
        except (redis.RedisError, msgspec.DecodeError, CommandError) as exc:
            log.warning("decider: cannot read the applied state of %s: %s", rollout_id, exc)
            return None
        return state

    async def _assess(self, rollout_id: str) -> None:
        key = rollout_id.encode()
        raw = self.rollouts_table.get(key)
        if raw is None:
            return
        state = _STATE.decode(raw)
        now_ms = int(time.time() * 1000)
        applied = self._applied(rollout_id)
        if applied is not None:
            synced = (state.seq, state.phase, state.stage)
            progress.sync_applied(state, applied, now_ms)
            if (state.seq, state.phase, state.stage) != synced:
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
        self._next_close_ms[rollout_id] = _next_close_ms(state)
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
