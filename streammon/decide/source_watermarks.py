"""How far event time has reached across *all* join sources: the decider's clock.

Each cohort summary carries the watermark of the join partition (its ``source``) that
produced it. A decision window may be judged only when every partition has passed it:
taking the most advanced partition instead (the old rule) judges windows on the data
of the fastest partition alone, which happens whenever partitions catch up unevenly
(a worker that starts after traffic, a rebalance, a backlog) — and a judged window is
never judged again.

A partition that stops reporting must not stall every rollout forever, so a source
whose watermark trails the most advanced one by more than ``idle_ms`` is treated as
idle and ignored (Flink's ``withIdleness``). Until every partition has reported, nothing
closes, unless the sources heard from have advanced ``idle_ms`` past the first watermark
seen (then the silent ones are idle). A watermark of 0 (a partition that has seen only
one input) says nothing and is not counted. No clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_IDLE_MS = 60_000


@dataclass
class SourceWatermarks:
    """Per-source watermarks of the join partitions; ``partitions`` is how many exist."""

    partitions: int
    idle_ms: int = DEFAULT_IDLE_MS
    by_source: dict[str, int] = field(default_factory=dict)
    floor_ms: int | None = None

    def __post_init__(self) -> None:
        """Reject a partition count or idleness that would make the clock meaningless."""
        if self.partitions < 1:
            raise ValueError(f"partitions={self.partitions}: need at least one join partition")
        if self.idle_ms <= 0:
            raise ValueError(f"idle_ms={self.idle_ms}: must be > 0 (default {DEFAULT_IDLE_MS})")

    def observe(self, source: str, watermark_ms: int) -> None:
        """Fold one summary's source watermark (watermarks never move back)."""
        if watermark_ms <= 0:
            return
        if self.floor_ms is None or (source not in self.by_source and watermark_ms < self.floor_ms):
            self.floor_ms = watermark_ms
        self.by_source[source] = max(self.by_source.get(source, watermark_ms), watermark_ms)

    @property
    def max_ms(self) -> int:
        """The most advanced source's watermark (0 before any summary)."""
        return max(self.by_source.values(), default=0)

    def closed_through_ms(self) -> int:
        """Return the event time that every live source has reached (0 before any summary).

        Sources not heard from yet hold time at 0 until the others are ``idle_ms`` past the
        first watermark seen; a source more than ``idle_ms`` behind the most advanced one
        is idle and does not hold time back.
        """
        if self.floor_ms is None:
            return 0
        horizon_ms = self.max_ms - self.idle_ms
        if len(self.by_source) < self.partitions and self.floor_ms >= horizon_ms:
            return 0
        return min(m for m in self.by_source.values() if m >= horizon_ms)
