"""The ceiling: the cheapest honest join in Python over the same topics.

librdkafka consumes every partition of predictions and outcomes in large batches,
msgspec decodes the batch envelopes in one pass, and plain dicts hold the join: no
Faust, no changelog, no summaries sent, no expiry. It computes what the real join
computes (every metric's n, Σx, Σx², the score histogram, duplicates dropped) and
keeps what it keeps (pending requests, joined tombstones, per-cell sums), so the ratio
of the two throughputs is what Faust, persistence and exactness cost.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from streammon.config.settings import Settings
from streammon.events import Outcome, OutcomeBatch, Prediction, PredictionBatch

_PRED = (msgspec.json.Decoder(PredictionBatch), msgspec.json.Decoder(Prediction))
_OUT = (msgspec.json.Decoder(OutcomeBatch), msgspec.json.Decoder(Outcome))


def _events(decoders: tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any]],
            raw: bytes | None) -> list[Any]:
    """Decode a batch envelope or a single event; an unreadable message yields nothing."""
    batch, single = decoders
    try:
        return list(batch.decode(raw or b"").events)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    try:
        return [single.decode(raw or b"")]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []


def _cell(cells: dict[Any, list[Any]], key: Any) -> list[Any]:
    acc = cells.get(key)
    if acc is None:  # latency n, Σ, Σ²; error n, Σ; label n, Σ; value n, Σ, Σ²; histogram
        acc = cells[key] = [0, 0.0, 0.0, 0, 0, 0, 0.0, 0, 0.0, 0.0, [0] * 10]
    return acc


def _add_outcome(acc: list[Any], o: Outcome) -> None:
    if o.label is not None:
        acc[5] += 1
        acc[6] += o.label
    if o.value is not None:
        acc[7] += 1
        acc[8] += o.value
        acc[9] += o.value * o.value


def _join_predictions(batch: list[Prediction], pending: dict[str, Any],
                      cells: dict[Any, list[Any]], window_ms: int) -> None:
    for p in batch:
        waiting = pending.get(p.request_id)
        if waiting is not None and not isinstance(waiting, Outcome):
            continue  # duplicate
        key = (p.rollout_id, p.ts_ms - p.ts_ms % window_ms, p.segment, p.arm)
        acc = _cell(cells, key)
        if p.latency_ms is not None:
            acc[0] += 1
            acc[1] += p.latency_ms
            acc[2] += p.latency_ms * p.latency_ms
        acc[3] += 1
        acc[4] += p.error
        if p.score is not None:
            acc[10][min(int(p.score * 10), 9)] += 1
        if waiting is None:
            pending[p.request_id] = key
        else:
            _add_outcome(acc, waiting)
            pending[p.request_id] = 0


def _join_outcomes(batch: list[Outcome], pending: dict[str, Any],
                   cells: dict[Any, list[Any]]) -> None:
    for o in batch:
        waiting = pending.get(o.request_id)
        if isinstance(waiting, tuple):
            _add_outcome(cells[waiting], o)
            pending[o.request_id] = 0
        elif waiting is None:
            pending[o.request_id] = o


def run_ceiling(settings: Settings, *, partitions: int, total_events: int,
                window_ms: int, timeout_s: float = 120.0) -> dict[str, float]:
    """Join every event on the topics once; return events/s from first message to last."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topics = settings.topics
    consumer = Consumer(settings.kafka.consumer_config(f"ceiling-{uuid.uuid4().hex}",
                                                       **{"fetch.max.bytes": 52_428_800}))
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                     for t in (topics.predictions, topics.outcomes) for p in range(partitions)])
    pending: dict[str, Any] = {}
    cells: dict[Any, list[Any]] = {}
    seen = 0
    start = deadline = 0.0
    try:
        deadline = time.monotonic() + timeout_s
        while seen < total_events and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, 0.1):
                if msg.error() is not None:
                    continue
                if not start:
                    start = time.perf_counter()
                if msg.topic() == topics.predictions:
                    preds = _events(_PRED, msg.value())
                    _join_predictions(preds, pending, cells, window_ms)
                    seen += len(preds)
                else:
                    outs = _events(_OUT, msg.value())
                    _join_outcomes(outs, pending, cells)
                    seen += len(outs)
        elapsed_s = time.perf_counter() - start
    finally:
        consumer.close()
    joined = sum(int(acc[5]) for acc in cells.values())
    return {"events": seen, "joined": joined, "seconds": elapsed_s,
            "events_per_s": seen / elapsed_s if elapsed_s > 0 else 0.0}
