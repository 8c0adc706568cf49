"""Decoding what arrives on the predictions and outcomes topics: batches or single events.

A message is either one event (``{"v":1,"request_id":...}``, as any stack keyed by
``request_id`` may send) or a batch envelope (``{"v":1,"events":[{...},{...}]}``, as the
publisher SDK sends; see :class:`~streammon.events.PredictionBatch`). A well-formed
batch decodes in one msgspec pass; a batch with a bad event falls back to decoding
event by event so that only the bad ones are rejected. Beyond the schema, every event
is checked for absurd values: non-finite numbers, timestamps far in the future, and
(in a batch) a request id that does not hash to the partition the batch arrived on,
which would break co-partitioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from streammon import events
from streammon.errors import EventError
from streammon.kafka.partitioner import partition_for

MAX_FUTURE_SKEW_MS = 86_400_000
"""Events stamped more than this ahead of the worker's clock are rejected as absurd."""

E = TypeVar("E", events.Prediction, events.Outcome)
_BATCH_OF: dict[type[msgspec.Struct], type[msgspec.Struct]] = {
    events.Prediction: events.PredictionBatch,
    events.Outcome: events.OutcomeBatch,
}


class _Probe(msgspec.Struct):
    events: list[msgspec.Raw] | None = None


_PROBE = msgspec.json.Decoder(_Probe)
_DECODERS: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(batch) for kind, batch in _BATCH_OF.items()}


@dataclass(frozen=True)
class Reject:
    """One event that cannot be joined: its bytes, why, and its index in the message."""

    raw: bytes
    reason: str
    index: int = 0


@dataclass
class Decoded(Generic[E]):
    """The valid events of one message, in order, and the rejected ones."""

    events: list[E] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    batched: bool = False


def decode_message(kind: type[E], raw: bytes, *, partition: int, partitions: int,
                   now_ms: int) -> Decoded[E]:
    """Decode one message of ``kind`` events (batch or single); never raise on bad input."""
    out: Decoded[E] = Decoded()
    try:
        batch = _DECODERS[kind].decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        _decode_slow(kind, raw, out)
    else:
        out.batched = True
        if batch.v != events.SCHEMA_VERSION:
            out.rejects.append(Reject(raw, f"unsupported batch envelope version v={batch.v} "
                                           "- at `$.v`; this build reads v=1"))
            return out
        out.events = list(batch.events)
    _screen(out, partition if out.batched else -1, partitions, now_ms)
    return out


def _decode_slow(kind: type[E], raw: bytes, out: Decoded[E]) -> None:
    try:
        probe = _PROBE.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        probe = _Probe()
    if probe.events is None:
        _decode_one(kind, raw, 0, out)
        return
    out.batched = True
    for index, item in enumerate(probe.events):
        _decode_one(kind, bytes(item), index, out)


def _decode_one(kind: type[E], raw: bytes, index: int, out: Decoded[E]) -> None:
    try:
        out.events.append(events.decode(kind, raw))
    except EventError as exc:
        out.rejects.append(Reject(raw, str(exc), index))


def check_event(event: events.Prediction | events.Outcome, now_ms: int) -> None:
    """Raise EventError for values a schema cannot rule out: versions, NaN, far future."""
    events.check_semantics(event)
    if event.ts_ms > now_ms + MAX_FUTURE_SKEW_MS:
        raise EventError(f"ts_ms={event.ts_ms} is more than a day ahead of the worker's "
                         f"clock ({now_ms}) - at `$.ts_ms`")
    if (isinstance(event, events.Prediction) and event.latency_ms is not None
            and not math.isfinite(event.latency_ms)):
        raise EventError("Prediction: `latency_ms` must be finite - at `$.latency_ms`")


def _plausible(event: events.Prediction | events.Outcome, latest_ms: int) -> bool:
    """Return True when :func:`check_event` would pass (a fast path without exceptions)."""
    if event.v != events.SCHEMA_VERSION or event.ts_ms > latest_ms:
        return False
    if isinstance(event, events.Prediction):
        return event.latency_ms is None or event.latency_ms != math.inf
    if event.value is None:
        return event.label is not None
    return math.isfinite(event.value)


def _screen(out: Decoded[E], partition: int, partitions: int, now_ms: int) -> None:
    """Keep plausible events; reject the rest (and, for a batch, misrouted request ids)."""
    kept: list[E] = []
    latest_ms = now_ms + MAX_FUTURE_SKEW_MS
    for index, event in enumerate(out.events):
        if partition >= 0 and partition_for(event.request_id.encode(), partitions) != partition:
            reason = (f"request_id {event.request_id!r} hashes (murmur2) to another partition "
                      f"than {partition} of {partitions}; batches must be grouped by partition")
        elif _plausible(event, latest_ms):
            kept.append(event)
            continue
        else:
            try:
                check_event(event, now_ms)
            except EventError as exc:
                reason = str(exc)
            else:
                kept.append(event)
                continue
        out.rejects.append(Reject(events.encode(event), reason, index))
    out.events = kept


def encode_batch(payloads: list[bytes]) -> bytes:
    """Return the batch envelope around already-encoded events (no re-encoding)."""
    return b'{"v":%d,"events":[' % events.SCHEMA_VERSION + b",".join(payloads) + b"]}"
