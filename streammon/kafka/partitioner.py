"""Kafka's default key partitioner (murmur2), to group events by partition before sending.

It is the hash the Java client and librdkafka's ``murmur2_random`` compute.

The batch envelope puts several events in one Kafka message; co-partitioning of
predictions and outcomes then holds only if every event of a batch hashes to the
partition the batch is sent to. :func:`partition_for` is that hash. It uses
confluent-kafka's C implementation when present and a pure-Python one otherwise; both
agree with the Java client (``toPositive(murmur2(key)) % partitions``).
"""

from __future__ import annotations

from collections.abc import Callable

_MASK32 = 0xFFFFFFFF
_M = 0x5BD1E995
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Return the 32-bit murmur2 hash of ``data`` as Kafka's Java client computes it."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    full = length - length % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = data[full:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h


def partition_for_py(key: bytes, partitions: int) -> int:
    """Return the partition of ``key`` among ``partitions`` (pure Python)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def _native() -> Callable[[bytes, int], int] | None:
    try:
        from confluent_kafka import cimpl
    except ImportError:  # pragma: no cover - confluent-kafka is a dependency
        return None
    native: Callable[[bytes, int], int] | None = getattr(cimpl, "murmur2", None)
    return native


partition_for: Callable[[bytes, int], int] = _native() or partition_for_py
"""Return the partition of ``key`` among ``partitions`` (C implementation when present)."""
