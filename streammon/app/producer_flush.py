"""Make Faust's producer-buffer flush wait until the buffer is really empty.

Faust commits source offsets right after ``producer.flush()``, which drains the buffer
of messages sent with ``send_soon`` (our changelog records) through
``ProducerBuffer.flush_atmost(None)``. That method gives up after 0.1 s without progress
and returns with messages still queued; on a loaded machine the offsets are then
committed *before* the changelog record that holds the same events, and a SIGKILL at that
moment loses them. :func:`drain_fully` replaces the instance's ``flush`` with one that
loops until the buffer is empty (or the producer stops).
"""

from __future__ import annotations

from typing import Any


def drain_fully(buffer: Any) -> None:
    """Patch ``buffer.flush`` (a Faust ProducerBuffer) to return only when it is empty."""
    flush_atmost = buffer.flush_atmost

    async def flush() -> None:
        while buffer.size and buffer.state == "running":
            await flush_atmost(None)

    buffer.flush = flush
