"""PURE: event-level replay, the engine of :func:`streammon.backtest.replay_events`.

The worker's pure join (:class:`streammon.join.state.JoinState`) and decider
(:func:`streammon.decide.progress.progress`) run on recorded events in event time; the
public description (windows, look-ahead, operator commands) is in :mod:`streammon.backtest`.
No Kafka, no clock, no printing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from streammon.control.commands import FINAL_PHASES, make_command
from streammon.decide import progress as rollout
from streammon.decide.assessor import RolloutAssessor
from streammon.decide.spec import parse_spec
from streammon.errors import EventError
from streammon.events import (
    Command,
    Outcome,
    Prediction,
    RolloutSpec,
    Verdict,
    check_semantics,
)
from streammon.join.state import JoinConfig, JoinState

_DEFAULT_REASON: dict[str, str] = {Verdict.PENDING: "waiting for data in both arms",
                                   Verdict.RUNNING: "no decision yet",
                                   Verdict.INCONCLUSIVE: "no decision"}
_PRED, _OUT, _CMD = 0, 1, 2
"""Order of event kinds at equal ``ts_ms``: a request's prediction before its outcome."""


@dataclass
class ReplayCounts:
    """What the replay read: events taken, skipped as malformed, or of other rollouts."""

    predictions: int = 0
    outcomes: int = 0
    malformed: int = 0
    other_rollouts: int = 0
    errors: list[str] = field(default_factory=list)


def replay_events(spec: Mapping[str, Any], predictions: Iterable[Mapping[str, Any]],
                  outcomes: Iterable[Mapping[str, Any]], *,
                  commands: Iterable[Mapping[str, Any]] = (),
                  counts: ReplayCounts | None = None) -> list[dict[str, Any]]:
    """Return one ``{"window", "action", "reason"}`` dict per closed decision window.

    Raises :class:`~streammon.errors.ConfigError` naming the field when ``spec`` is not a
    valid rollout spec. ``counts``, when given, is filled with what was read.
    """
    rollout_spec = parse_spec(spec)
    tally = counts if counts is not None else ReplayCounts()
    rows = merge_in_event_time(rollout_spec, predictions, outcomes, commands, tally)
    last_prediction_ms = max((e.ts_ms for kind, e in rows if kind == _PRED), default=-1)
    replayer = EventReplayer(rollout_spec, last_prediction_ms=last_prediction_ms)
    for kind, event in rows:
        replayer.feed(kind, event)
        if replayer.finished:
            break
    replayer.finish()
    return replayer.decisions


class EventReplayer:
    """Incremental replay state: feed events in event-time order, read ``decisions``."""

    def __init__(self, spec: RolloutSpec, *, last_prediction_ms: int | None = None) -> None:
        self.spec = spec
        self.last_prediction_ms = last_prediction_ms
        self.join = JoinState(config=JoinConfig(window_ms=spec.window_ms, ttl_ms=spec.ttl_ms,
                                                grace_ms=spec.grace_ms))
        self.state: rollout.RolloutState | None = None
        self.assessor = RolloutAssessor()
        """The rollout's incremental decision state, as the worker's decider keeps it."""
        self.decisions: list[dict[str, Any]] = []
        self.held_reason = ""
        self.last_ts_ms = -1
        self.n_windows: int | None = None

    @property
    def finished(self) -> bool:
        """Return True once the rollout was rolled back or promoted."""
        return self.state is not None and self.state.phase in FINAL_PHASES

    def feed(self, kind: int, event: Prediction | Outcome | Command) -> None:
        """Close every window that ends at or before the event, then take the event."""
        if self.state is None:
            if kind != _PRED:
                return  # before the rollout's first prediction: nothing to join yet
            self._start(event.ts_ms)
            if self.last_prediction_ms is not None:
                self.n_windows = self._window_of(self.last_prediction_ms) + 1
        self.close_through(event.ts_ms)
        if self.finished:
            return
        self.last_ts_ms = max(self.last_ts_ms, event.ts_ms)
        if isinstance(event, Prediction):
            self.join.add_prediction(event)
        elif isinstance(event, Outcome):
            self.join.add_outcome(event)
        else:
            self._operator(event)

    def finish(self) -> None:
        """Close every window up to the one that holds the last prediction (end of input)."""
        if self.state is not None and self.last_ts_ms >= 0:
            last_ms = self.last_ts_ms if self.last_prediction_ms is None else max(
                self.last_ts_ms, self.last_prediction_ms)
            self.close_through(self._window_end(self._window_of(last_ms)))

    def close_through(self, ts_ms: int) -> None:
        """Decide every window whose end is at or before ``ts_ms``."""
        while self.state is not None and not self.finished:
            k = self.state.windows_closed
            end_ms = self._window_end(k)
            if end_ms > ts_ms or (self.n_windows is not None and k >= self.n_windows):
                return
            self._decide(k, end_ms)

    def _start(self, ts_ms: int) -> None:
        origin = ts_ms - ts_ms % self.spec.window_ms
        self.state = rollout.RolloutState(spec=self.spec, origin_ms=origin,
                                          stage_changes=[(origin, 0)])

    def _window_of(self, ts_ms: int) -> int:
        assert self.state is not None
        return (ts_ms - self.state.origin_ms) // self.spec.window_ms

    def _window_end(self, k: int) -> int:
        assert self.state is not None
        return self.state.origin_ms + (k + 1) * self.spec.window_ms

    def _decide(self, k: int, end_ms: int) -> None:
        state = self.state
        assert state is not None
        self.join.expire(end_ms)
        if state.phase == "held":
            state.windows_closed += 1
            self.decisions.append({"window": k, "action": "hold", "reason": self.held_reason})
            return
        summaries = [cell.to_summary(key, window_ms=self.spec.window_ms, source="replay",
                                     watermark_ms=end_ms)
                     for key, cell in self.join.cells.items() if key[0] == self.spec.rollout_id]
        out = rollout.progress(state, summaries, end_ms + self.spec.grace_ms, now_ms=end_ms,
                               key=None, assessor=self.assessor)
        for diagnosis in out.diagnoses:
            action = diagnosis.action
            reason = diagnosis.message or _DEFAULT_REASON.get(diagnosis.verdict,
                                                              diagnosis.verdict.lower())
            if action == "hold":
                self.held_reason = f"held at window {k}: {reason}"
            self.decisions.append({"window": diagnosis.windows_closed - 1, "action": action,
                                   "reason": reason})

    def _operator(self, cmd: Command) -> None:
        state = self.state
        assert state is not None
        if cmd.action not in ("hold", "resume"):
            return
        note = make_command(
            rollout_id=self.spec.rollout_id, seq=state.seq + 1, action=cmd.action,
            baseline=self.spec.baseline, candidate=self.spec.candidate,
            fraction=state.fraction, stage=state.stage, reason=cmd.reason,
            issued_by=cmd.issued_by, now_ms=cmd.ts_ms)
        rollout.apply_command(state, note)
        if cmd.action == "hold":
            self.held_reason = f"held by {cmd.issued_by}: {cmd.reason or 'operator hold'}"


def merge_in_event_time(spec: RolloutSpec, predictions: Iterable[Mapping[str, Any]],
                        outcomes: Iterable[Mapping[str, Any]],
                        commands: Iterable[Mapping[str, Any]],
                        counts: ReplayCounts) -> list[tuple[int, Any]]:
    """Return ``(kind, event)`` of this rollout in ``ts_ms`` order (stable within a kind)."""
    streams = [
        _decoded(predictions, Prediction, _PRED, spec.rollout_id, counts),
        _decoded(outcomes, Outcome, _OUT, spec.rollout_id, counts),
        _decoded((_command_dict(spec, c) for c in commands), Command, _CMD, spec.rollout_id,
                 counts),
    ]
    rows: list[tuple[int, int, int, Any]] = []
    for stream in streams:
        rows.extend(stream)
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return [(kind, event) for _ts, kind, _i, event in rows]


def _command_dict(spec: RolloutSpec, cmd: Mapping[str, Any]) -> dict[str, Any]:
    base = {"rollout_id": spec.rollout_id, "seq": 1, "weights": {}, "baseline": spec.baseline,
            "candidate": spec.candidate, "fraction": 0.0, "issued_by": "operator"}
    return {**base, **cmd}


def _decoded(items: Iterable[Mapping[str, Any]], kind: type[Any], code: int, rollout_id: str,
             counts: ReplayCounts) -> Iterator[tuple[int, int, int, Any]]:
    for i, item in enumerate(items):
        try:
            event = item if isinstance(item, kind) else msgspec.convert(
                _plain(item), kind, strict=False)
            check_semantics(event)
        except (msgspec.ValidationError, TypeError, EventError) as exc:
            counts.malformed += 1
            if len(counts.errors) < 10:
                counts.errors.append(f"{kind.__name__} #{i}: {exc}")
            continue
        if event.rollout_id != rollout_id:
            counts.other_rollouts += 1
            continue
        if code == _PRED:
            counts.predictions += 1
        elif code == _OUT:
            counts.outcomes += 1
        yield event.ts_ms, code, i, event


def _plain(item: Any) -> Any:
    """Return a dict event with numpy scalars as Python numbers and boolean labels as 0/1.

    Events built in Python (a notebook, a simulation) often carry ``numpy.int64``
    timestamps or ``True`` labels; the topics' JSON would carry plain numbers.
    """
    if not isinstance(item, Mapping):
        return item
    out = {}
    for key, value in item.items():
        kind = type(value)
        if kind is bool:
            if key in ("label", "value"):
                value = float(value)
        elif kind not in _PLAIN_TYPES and hasattr(value, "item"):
            value = value.item()
            if key in ("label", "value") and isinstance(value, bool):
                value = float(value)
        out[key] = value
    return out


_PLAIN_TYPES = (str, int, float, type(None), list, dict)
