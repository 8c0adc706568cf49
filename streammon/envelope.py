"""Decoding what arrives on the predictions and outcomes topics: batches or single events.

A message is either one event (``{"v":1,"request_id":...}``, as any stack keyed by
``request_id`` may send) or a batch envelope (``{"v":1,"events":[{...},{...}]}``, as the
publisher SDK sends; see :class:`~streammon.events.PredictionBatch`). A well-formed
batch decodes in one msgspec pass; a batch with a bad event falls back to decoding
event by event so that only the bad ones are rejected. Beyond the schema, every event
is checked at this edge, so nothing downstream can overflow or be misled:

* a metric value beyond ``MAX_METRIC_ABS`` (or not finite): its square, summed, could
  overflow to infinity, which JSON cannot carry;
* a timestamp more than ``max_lead_ms`` ahead of the message's arrival time (its Kafka
  timestamp; the worker's clock when it has none): one such event would move the
  partition's watermark and make every real event after it late (clock skew);
* a partition key (``unit_id`` when the event has one, else ``request_id``:
  :func:`streammon.events.partition_key`) that does not hash (murmur2) to the partition
  the message arrived on, single event or batch: its other half, or its unit's other
  requests, would land on another partition (a producer using librdkafka's default CRC32
  partitioner, or keying by request id an event that has a unit, does this);
* a rollout id containing the join key separator (NUL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from streammon import events
from streammon.errors import EventError
from streammon.join.state import KEY_SEPARATOR
from streammon.kafka.partitioner import partition_for

MAX_FUTURE_SKEW_MS = 86_400_000
"""Events stamped more than this ahead of the worker's clock are rejected as absurd."""
MAX_LEAD_MS = 30_000
"""Default bound on how far an event's ts_ms may lead its message's arrival time."""
MAX_METRIC_ABS = 1e15
"""Largest metric value accepted: 1e30 per square leaves room for 1e270 events in Σx²."""

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
_SINGLE: dict[type[msgspec.Struct], msgspec.json.Decoder[Any]] = {
    kind: msgspec.json.Decoder(kind) for kind in _BATCH_OF}


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
                   now_ms: int, arrival_ms: int | None = None,
                   max_lead_ms: int = MAX_LEAD_MS) -> Decoded[E]:
    """Decode one message of ``kind`` events (batch or single); never raise on bad input.

    ``arrival_ms`` is the message's Kafka timestamp (``now_ms`` when None or negative);
    an event stamped more than ``max_lead_ms`` after it is rejected as clock-skewed.
    """
    out: Decoded[E] = Decoded()
    if b'"events"' not in raw:  # a single event (the common case of other stacks): one pass
        try:
            out.events.append(_SINGLE[kind].decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError):
            _decode_slow(kind, raw, out)
    else:
        try:
            batch = _DECODERS[kind].decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            _decode_slow(kind, raw, out)
        else:
            out.batched = True
            if batch.v != events.SCHEMA_VERSION:
                out.rejects.append(Reject(raw, f"unsupported batch envelope version "
                                               f"v={batch.v} - at `$.v`; this build reads v=1"))
                return out
            out.events = list(batch.events)
    arrival = arrival_ms if arrival_ms is not None and arrival_ms >= 0 else now_ms
    _screen(out, partition, partitions, now_ms, min(arrival + max_lead_ms,
                                                    now_ms + MAX_FUTURE_SKEW_MS))
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


def check_event(event: events.Prediction | events.Outcome, now_ms: int,
                latest_ms: int | None = None) -> None:
    """Raise EventError for values a schema cannot rule out.

    Versions, non-finite or huge numbers, timestamps past ``latest_ms`` (default: a day
    ahead of ``now_ms``), rollout ids holding the join key separator.
    """
    events.check_semantics(event)
    latest = now_ms + MAX_FUTURE_SKEW_MS if latest_ms is None else latest_ms
    if event.ts_ms > latest:
        raise EventError(f"ts_ms={event.ts_ms} leads the message's arrival time by more than "
                         f"the bound (latest accepted {latest}; clock skew on the producer?) "
                         "- at `$.ts_ms`; stamp events with the serving node's synchronised "
                         "clock, or raise the worker's --max-lead-ms")
    for name in ("latency_ms", "value"):
        x = getattr(event, name, None)
        if x is not None and not (-MAX_METRIC_ABS <= x <= MAX_METRIC_ABS):
            raise EventError(f"{type(event).__name__}: `{name}`={x!r} must be finite and "
                             f"within ±{MAX_METRIC_ABS:g} (its square is summed) - at "
                             f"`$.{name}`")
    if KEY_SEPARATOR in event.rollout_id:
        raise EventError("`rollout_id` must not contain the NUL character - at `$.rollout_id`")


def _first_suspect(evs: list[E], start: int, partition: int, partitions: int,
                   latest_ms: int) -> int:
    """Return the index of the first suspect event from ``start`` (``len(evs)`` if none).

    Suspect: off its murmur2 partition, or failing what :func:`check_event` checks. A fast
    path without exceptions, in one loop; :func:`_reject_reason` then says why.
    """
    version, separator, bound = events.SCHEMA_VERSION, KEY_SEPARATOR, MAX_METRIC_ABS
    hash_partition = partition_for
    for index in range(start, len(evs)):
        event = evs[index]
        if (event.v != version or event.ts_ms > latest_ms or separator in event.rollout_id
                or hash_partition((event.unit_id or event.request_id).encode(),
                                  partitions) != partition):
            return index
        if isinstance(event, events.Prediction):
            x = event.latency_ms
            if x is not None and not x <= bound:
                return index
        else:
            x = event.value
            if x is None:
                if event.label is None:
                    return index
            elif not -bound <= x <= bound:
                return index
    return len(evs)


def _screen(out: Decoded[E], partition: int, partitions: int, now_ms: int,
            latest_ms: int) -> None:
    """Keep plausible events on their murmur2 partition; reject the rest with the reason."""
    evs = out.events
    suspect = _first_suspect(evs, 0, partition, partitions, latest_ms)
    if suspect == len(evs):
        return  # the common case: every event is plausible and on its partition
    kept: list[E] = evs[:suspect]
    while suspect < len(evs):
        event = evs[suspect]
        reason = _reject_reason(event, out.batched, partition, partitions, now_ms, latest_ms)
        if reason is None:
            kept.append(event)
        else:
            out.rejects.append(Reject(events.encode(event), reason, suspect))
        following = _first_suspect(evs, suspect + 1, partition, partitions, latest_ms)
        kept.extend(evs[suspect + 1:following])
        suspect = following
    out.events = kept


def _reject_reason(event: E, batched: bool, partition: int, partitions: int, now_ms: int,
                   latest_ms: int) -> str | None:
    """Return why a suspect event is rejected, or None when it passes after all."""
    key = events.partition_key(event)
    if partition_for(key.encode(), partitions) != partition:
        shape = "batches must be grouped by partition" if batched else (
            "produce with Kafka's murmur2 partitioner keyed by unit_id when the event has "
            "one, else by request_id (librdkafka: partitioner=murmur2_random), so a unit's "
            "requests and their outcomes land on one partition")
        field = "unit_id" if event.unit_id else "request_id"
        return (f"{field} {key!r} hashes (murmur2) to another partition "
                f"than {partition} of {partitions}; {shape}")
    try:
        check_event(event, now_ms, latest_ms)
    except EventError as exc:
        return str(exc)
    return None


def encode_batch(payloads: list[bytes]) -> bytes:
    """Return the batch envelope around already-encoded events (no re-encoding)."""
    return b'{"v":%d,"events":[' % events.SCHEMA_VERSION + b",".join(payloads) + b"]}"
