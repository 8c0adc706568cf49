"""The decider's read of the applied route state: verified, and bounded in time off the
event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import msgspec

from streammon.app.decide_agent import read_applied, read_applied_bounded
from streammon.control.commands import make_command, route_state_for, sign_state
from tests.helpers import ACTUATOR_KEY, DECIDER_KEY, DEV_KEYS, NOW_MS


def _state_bytes(key: object = ACTUATOR_KEY) -> bytes:
    cmd = make_command(rollout_id="r1", seq=1, action="start", baseline="v1", candidate="v2",
                       fraction=0.1, now_ms=NOW_MS, key=DECIDER_KEY, epoch="ep")
    return msgspec.json.encode(sign_state(route_state_for(cmd), key))  # type: ignore[arg-type]


class _Client:
    """A Redis stand-in whose GET returns ``value`` after ``delay_s`` (or until released)."""

    def __init__(self, value: bytes | None, delay_s: float = 0.0) -> None:
        self.value, self.delay_s = value, delay_s
        self.release = threading.Event()

    def get(self, _key: str) -> bytes | None:
        self.release.wait(self.delay_s)
        return self.value


def test_a_state_signed_by_the_actuator_is_read_and_a_forged_one_is_not() -> None:
    """Only a route state the actuator's key signed is the decider's applied state."""
    good = read_applied(_Client(_state_bytes()), DEV_KEYS, "r1")  # type: ignore[arg-type]
    assert good is not None and good.seq == 1
    forged = _Client(_state_bytes(DECIDER_KEY))
    assert read_applied(forged, DEV_KEYS, "r1") is None  # type: ignore[arg-type]
    assert read_applied(_Client(None), DEV_KEYS, "r1") is None  # type: ignore[arg-type]


def test_a_hung_redis_read_is_given_up_without_blocking_the_event_loop() -> None:
    """A GET that hangs returns None after the timeout while other coroutines keep running."""
    client = _Client(_state_bytes(), delay_s=30.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> object:
        task = asyncio.create_task(ticker())
        try:
            return await read_applied_bounded(client, DEV_KEYS, "r1",  # type: ignore[arg-type]
                                              timeout_s=0.3)
        finally:
            task.cancel()
            client.release.set()

    started = time.monotonic()
    assert asyncio.run(main()) is None
    assert time.monotonic() - started < 5.0
    assert ticks >= 10


def test_a_prompt_read_returns_the_state() -> None:
    """A read that answers within the bound returns the verified state."""
    state = asyncio.run(read_applied_bounded(_Client(_state_bytes()), DEV_KEYS,  # type: ignore[arg-type]
                                             "r1", timeout_s=5.0))
    assert state is not None and state.rollout_id == "r1"
