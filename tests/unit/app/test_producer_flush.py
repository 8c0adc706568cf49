"""The producer buffer's flush returns only once every queued changelog record is sent."""

from __future__ import annotations

import asyncio

from streammon.app.producer_flush import drain_fully


class GivingUpBuffer:
    """Like Faust's ProducerBuffer: each flush_atmost sends one message, then times out."""

    def __init__(self, queued: int) -> None:
        self.size = queued
        self.state = "running"
        self.calls = 0

    async def flush_atmost(self, max_messages: int | None) -> int:
        self.calls += 1
        if self.size:
            self.size -= 1
            return 1
        return 0

    async def flush(self) -> None:
        await self.flush_atmost(None)


def test_flush_waits_until_the_buffer_is_empty() -> None:
    """Where the stock flush gives up with records still queued, the patched one drains
    them all, so offsets are never committed ahead of the records holding their events."""
    stock = GivingUpBuffer(5)
    asyncio.run(stock.flush())
    assert stock.size == 4
    patched = GivingUpBuffer(5)
    drain_fully(patched)
    asyncio.run(patched.flush())
    assert patched.size == 0 and patched.calls == 5


def test_flush_stops_when_the_producer_stops() -> None:
    """A stopped producer does not make flush spin forever."""
    buffer = GivingUpBuffer(3)
    buffer.state = "stopping"
    drain_fully(buffer)
    asyncio.run(buffer.flush())
    assert buffer.size == 3
