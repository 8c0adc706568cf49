"""Where the join's per-event time goes, in process: no Kafka, no Faust.

Publishes nothing: builds the bench workload's batch envelopes (500 events, grouped by
murmur2 partition as the SDK does), then runs the worker's path over them in batches of
40 messages - decode and screen (``envelope.decode_message``), apply
(``JoinState.add_predictions`` / ``add_outcomes``), expire, and write the changelog
records (``JoinLog.write``) - timing each step in CPU time. Prints µs per event for each
step, medians of ``--repeat`` runs. A profiling aid for the hot path (``make bench``
measures the worker end to end); run it at two commits to compare them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from typing import Any

from streammon import events
from streammon.envelope import decode_message, encode_batch
from streammon.join.changelog import JoinLog
from streammon.join.state import JoinConfig, JoinState
from streammon.kafka.partitioner import partition_for
from streammon.sim.join_workload import JoinWorkload, generate

PARTITIONS = 4
ENVELOPE_EVENTS = 500
MESSAGES_PER_BATCH = 40

Message = tuple[str, int, bytes]
"""(role, partition, envelope bytes)."""


def envelopes(workload: JoinWorkload) -> tuple[list[Message], int]:
    """Return the workload as envelopes in publish order, and its number of events."""
    pending: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    out: list[Message] = []
    total = 0
    for kind, fields in generate(workload):
        event = (events.Prediction if kind == "prediction" else events.Outcome)(**fields)
        role = "predictions" if kind == "prediction" else "outcomes"
        partition = partition_for(events.partition_key(event).encode(), PARTITIONS)
        batch = pending[(role, partition)]
        batch.append(events.encode(event))
        total += 1
        if len(batch) == ENVELOPE_EVENTS:
            out.append((role, partition, encode_batch(batch)))
            pending[(role, partition)] = []
    out += [(role, p, encode_batch(b)) for (role, p), b in pending.items() if b]
    return out, total


def run_once(messages: list[Message], config: JoinConfig) -> dict[str, float]:
    """Apply every message as the worker does; return CPU seconds per step."""
    clock = time.process_time
    spent: defaultdict[str, float] = defaultdict(float)
    states = {p: (JoinState(config=config), JoinLog()) for p in range(PARTITIONS)}
    offsets: dict[str, int] = {}
    now_ms = int(time.time() * 1000)
    for i in range(0, len(messages), MESSAGES_PER_BATCH):
        touched = set()
        for role, partition, raw in messages[i:i + MESSAGES_PER_BATCH]:
            state = states[partition][0]
            t0 = clock()
            kind: Any = events.Prediction if role == "predictions" else events.Outcome
            decoded = decode_message(kind, raw, partition=partition, partitions=PARTITIONS,
                                     now_ms=now_ms, max_lead_ms=10**12)
            t1 = clock()
            if role == "predictions":
                state.add_predictions(decoded.events)
            else:
                state.add_outcomes(decoded.events)
            spent["decode_and_screen"] += t1 - t0
            spent["apply"] += clock() - t1
            touched.add(partition)
        for partition in touched:
            state, log = states[partition]
            t0 = clock()
            state.expire()
            t1 = clock()
            log.write(state, state.take_changes(), offsets)
            spent["expire"] += t1 - t0
            spent["write_records"] += clock() - t1
    return spent


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line: µs per event per step (medians) and their sum."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    workload = JoinWorkload(n_predictions=args.predictions)
    messages, total = envelopes(workload)
    config = JoinConfig(window_ms=workload.window_ms, ttl_ms=workload.ttl_ms)
    runs = [run_once(messages, config) for _ in range(args.repeat)]
    result: dict[str, Any] = {"bench": "hotpath", "events": total}
    for step in ("decode_and_screen", "apply", "expire", "write_records"):
        result[f"{step}_us_per_event"] = round(
            1e6 * statistics.median(r[step] for r in runs) / total, 3)
    result["total_us_per_event"] = round(
        1e6 * statistics.median(sum(r.values()) for r in runs) / total, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
