"""A partition's join records in a Faust table, written with one changelog record each.

Faust writes a changelog record only from inside stream iteration, one event at a time.
The join works on batches and persists one :class:`~streammon.join.changelog.JoinRecord` per
partition and batch, so it writes the table's local store directly and sends the
changelog records itself, to the partition it names. Keys are stored as
``b"<partition>|<seq>"`` bytes, the form Faust's recovery puts back, so one worker's
store can hold several partitions and a recovered store looks like a live one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class RecordStore:
    """The records of one partition in a Faust table (``key_type=bytes, value_type=bytes``)."""

    def __init__(self, table: Any, partition: int) -> None:
        self._table = table
        self._data: Any = table.data
        self._partition = partition
        self._prefix = f"{partition}|".encode()

    def key(self, seq: int) -> bytes:
        """Return the table key of record ``seq`` (zero-padded, so keys sort by seq)."""
        return self._prefix + b"%012d" % seq

    def load(self) -> list[bytes]:
        """Return every record of this partition the local store holds (after recovery)."""
        prefix = self._prefix
        return [bytes(v) for k, v in list(self._data.items())
                if isinstance(k, bytes) and k.startswith(prefix) and v]

    def put(self, seq: int, record: bytes) -> Any:
        """Store record ``seq`` locally and send it to the changelog; return the send's future."""
        key = self.key(seq)
        self._data[key] = record
        return self._send(key, record)

    def delete(self, seqs: Iterable[int]) -> int:
        """Delete records locally and send a tombstone for each; return how many."""
        count = 0
        for seq in seqs:
            key = self.key(seq)
            self._data.pop(key, None)
            self._send(key, None)
            count += 1
        return count

    def _send(self, key: bytes, value: bytes | None) -> Any:
        return self._table.send_changelog(self._partition, key, value,
                                          key_serializer="raw", value_serializer="raw")
