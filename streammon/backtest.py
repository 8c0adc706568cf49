"""Event-level replay: the worker's pure join and decider on recorded events, in event time.

``replay_events(spec, predictions, outcomes)`` takes a rollout spec (a dict in the
README's JSON form) and iterables of prediction and outcome event dicts as they travel on
the topics (schema v1), and returns one decision per closed decision window::

    {"window": 0, "action": "continue", "reason": "no decision yet"}

``action`` is ``continue``, ``step``, ``hold``, ``rollback`` or ``promote``; nothing is
returned after the first rollback or promote. There is no Kafka and no clock: events
are taken in event-time order (``ts_ms``; predictions before outcomes at equal times)
by the same :class:`streammon.join.state.JoinState` the join worker runs, and each window
is judged by the same :func:`streammon.decide.progress.progress` the decider runs.

Event time and look-ahead
-------------------------
The rollout starts at the window of its first prediction (``origin``). Window ``k``
covers ``[origin + k·window_ms, origin + (k+1)·window_ms)`` and is decided at its end,
``end_k``, *before* any event with ``ts_ms >= end_k`` is joined, so the decision for
window ``k`` depends only on events before ``end_k`` (recorded data is already in
event-time order, so the worker's ``grace_ms`` for stragglers is not needed here). A
window closes once an event at or past its end is seen; at the end of the input every
window up to the one holding the last prediction is closed (windows after the last
prediction, reached only by trailing outcomes, are not reported). A step decided at ``end_k``
takes effect at ``end_k``: the routers of the recording are assumed to have followed the
decider (window ``k+1`` holds the switch and is left out of the sample-ratio check).

Operator commands (``hold``, ``resume``) may be passed as ``commands=[{"action":
"resume", "ts_ms": ...}, ...]`` and are applied at their event time. While a rollout is
held, every closed window reports ``hold`` with the reason of the hold.

Malformed events are skipped and counted, as the join worker sends them to the
dead-letter topic (see :class:`ReplayCounts`); events of other rollouts are ignored.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from streammon.control.commands import make_command
from streammon.decide import progress as rollout
from streammon.decide.assessor import RolloutAssessor
from streammon.errors import ConfigError, EventError, StreamMonError
from streammon.events import Command, Outcome, Prediction, RolloutSpec, check_semantics
from streammon.join.state import JoinConfig, JoinState

_ACTIONS = {"halt": "hold"}
"""Older decisions called a hold ``halt``; the output always says ``hold``."""
_DEFAULT_REASON = {"Pending": "waiting for data in both arms", "Running": "no decision yet",
                   "Inconclusive": "no decision"}
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


def parse_spec(spec: Mapping[str, Any]) -> RolloutSpec:
    """Return the validated :class:`RolloutSpec` of a dict; ConfigError names the bad field."""
    if isinstance(spec, RolloutSpec):
        return spec
    try:
        parsed = msgspec.convert(dict(spec), RolloutSpec)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise ConfigError(f"rollout spec: {exc}; see the README for the JSON form") from exc
    rollout.check_spec(parsed)
    return parsed


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
        return self.state is not None and self.state.phase in ("rolled_back", "promoted")

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
            action = _ACTIONS.get(diagnosis.action, diagnosis.action)
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


def read_jsonl(path: str | Path) -> Iterator[Any]:
    """Yield the JSON value of every non-blank line of ``path`` (a kcat dump, for example).

    A line that is not JSON yields ``None``, which the replay counts as malformed.
    """
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            text = line.strip()
            if not text:
                continue
            try:
                yield json.loads(text)
            except json.JSONDecodeError:
                yield None


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``streammon backtest --spec ... --predictions ... --outcomes ...``."""
    parser = argparse.ArgumentParser(
        prog="streammon backtest",
        description="Replay the join and the decider on recorded prediction and outcome "
                    "events; print one JSON decision per closed window.")
    parser.add_argument("--spec", required=True, help="rollout spec (JSON, as in the README)")
    parser.add_argument("--predictions", required=True, help="prediction events, JSON lines")
    parser.add_argument("--outcomes", required=True, help="outcome events, JSON lines")
    parser.add_argument("--commands", help="operator hold/resume commands, JSON lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per decision; return 0, or 2 on a bad spec or unreadable file."""
    args = build_parser().parse_args(argv)
    counts = ReplayCounts()
    try:
        spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
        commands = read_jsonl(args.commands) if args.commands else ()
        decisions = replay_events(spec, read_jsonl(args.predictions), read_jsonl(args.outcomes),
                                  commands=commands, counts=counts)
    except (OSError, json.JSONDecodeError, StreamMonError) as exc:
        print(f"streammon backtest: {exc}", file=sys.stderr)
        return 2
    for decision in decisions:
        print(json.dumps(decision))
    print(f"streammon backtest: {counts.predictions} predictions, {counts.outcomes} outcomes, "
          f"{counts.malformed} malformed (skipped), {counts.other_rollouts} of other rollouts",
          file=sys.stderr)
    for error in counts.errors:
        print(f"  skipped {error}", file=sys.stderr)
    return 0
