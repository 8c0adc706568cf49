"""Outcome-to-summary latency: publish live at a fixed rate, time each outcome's summary.

Each outcome is timed from the moment the serving code hands it to the publisher to the
Kafka timestamp of the first cohort summary of its cell and source that includes it.
Within one (cell, source) the join applies outcomes in publish order, so the k-th
outcome published is included in the first summary whose label count reaches k.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from streammon.config.settings import Settings
from streammon.join.cells import window_start_ms
from streammon.kafka.partitioner import partition_for
from streammon.sdk.publisher import Publisher

Where = tuple[str, int, str, str, str]


def publish_live(settings: Settings, *, rollout_id: str, events_per_s: int, seconds: float,
                 window_ms: int, partitions: int, outcome_delay_s: float = 0.2
                 ) -> dict[Where, list[float]]:
    """Publish at ``events_per_s`` (≈53% predictions, 47% outcomes) for ``seconds``.

    Return, per (cell, source), the publish times (ms) of its outcomes, in order.
    """
    times: dict[Where, list[float]] = defaultdict(list)
    waiting: list[tuple[float, dict[str, Any]]] = []
    tick_s, i = 0.01, 0
    per_tick = max(1, int(events_per_s * tick_s / 1.9))
    with Publisher(settings=settings, strict=True, batch_linger_ms=10) as pub:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            now_ms = int(time.time() * 1000)
            for _ in range(per_tick):
                pred = {"request_id": f"{rollout_id}-{i}", "rollout_id": rollout_id,
                        "model_version": "m", "arm": "canary" if i % 2 else "baseline",
                        "ts_ms": now_ms, "segment": "all", "latency_ms": 10.0}
                pub.prediction(**pred)
                if i % 10:
                    waiting.append((time.monotonic() + outcome_delay_s, pred))
                i += 1
            while waiting and waiting[0][0] <= time.monotonic():
                pred = waiting.pop(0)[1]
                called_ms = time.time() * 1000
                pub.outcome(request_id=pred["request_id"], rollout_id=rollout_id,
                            ts_ms=int(called_ms), label=1.0)
                times[_where(pred, window_ms, partitions)].append(called_ms)
            time.sleep(max(0.0, tick_s - (time.monotonic() - start) % tick_s))
    return times


def _where(pred: dict[str, Any], window_ms: int, partitions: int) -> Where:
    source = f"p{partition_for(pred['request_id'].encode(), partitions)}"
    return (pred["rollout_id"], window_start_ms(pred["ts_ms"], window_ms), pred["segment"],
            pred["arm"], source)


def latencies_ms(times: dict[Where, list[float]], messages: list[Any]) -> list[float]:
    """Return one latency per outcome that a summary includes (see the module docstring)."""
    summaries: dict[Where, list[tuple[int, int]]] = defaultdict(list)
    for ts_ms, s in messages:
        if "label" in s.metrics:
            where = (s.rollout_id, s.window_start_ms, s.segment, s.arm, s.source)
            summaries[where].append((s.metrics["label"].n, ts_ms))
    out: list[float] = []
    for where, published in times.items():
        seen = summaries.get(where, [])
        j = 0
        for k, called_ms in enumerate(published, start=1):
            while j < len(seen) and seen[j][0] < k:
                j += 1
            if j < len(seen):
                out.append(seen[j][1] - called_ms)
    return out


def percentile(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) of values by nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
