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

from streammon.decide.event_replay import ReplayCounts, replay_events
from streammon.decide.spec import parse_spec

__all__ = ["ReplayCounts", "parse_spec", "replay_events"]
