"""When the decider looks at a rollout again: at its next window close while it runs, a
window later while it is held (its resume may reach Redis after the control topic), and
never once it is final."""

from __future__ import annotations

import math

import pytest

from streammon.app.decide_agent import next_look_ms
from streammon.control.commands import Phase
from streammon.decide.progress import RolloutState
from streammon.events import MetricSpecWire, RolloutSpec

ORIGIN_MS = 1_700_000_000_000


def _state(phase: Phase, windows_closed: int) -> RolloutState:
    spec = RolloutSpec(rollout_id="r1", baseline="v1", candidate="v2", window_ms=1000,
                       grace_ms=800, metrics=[MetricSpecWire(name="label", kind="binary",
                                                             bad_direction="decrease")])
    return RolloutState(spec=spec, origin_ms=ORIGIN_MS, phase=phase,
                        windows_closed=windows_closed)


def test_a_running_rollout_is_looked_at_when_its_next_window_closes() -> None:
    assert next_look_ms(_state("running", 5), ORIGIN_MS + 5_900) == ORIGIN_MS + 6_800


def test_a_held_rollout_is_looked_at_again_every_window_of_event_time() -> None:
    """Its windows do not close while held, so the next close is in the past; the decider
    looks again one window after the clock (reading the applied state each time) instead
    of on every summary or never."""
    clock_ms = ORIGIN_MS + 30_000
    held = _state("held", 5)
    assert next_look_ms(held, clock_ms) == clock_ms + 1000
    assert next_look_ms(held, clock_ms + 1000) == clock_ms + 2000


@pytest.mark.parametrize("phase", ["promoted", "rolled_back"])
def test_a_final_rollout_is_never_looked_at_again(phase: Phase) -> None:
    assert math.isinf(next_look_ms(_state(phase, 5), ORIGIN_MS + 30_000))
