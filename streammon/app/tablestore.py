"""A partition's slice of a Faust table, as a plain MutableMapping for pure state.

Faust writes a changelog record only from inside stream iteration, one event at a time.
The join works on batches, so it reads and writes the table's local store directly
through :class:`PartitionView` and sends the changelog records itself, once per changed
key per batch, to the partition it names (:func:`send_changes`). Keys are stored as
``b"<partition>|<key>"`` bytes, the form Faust's recovery puts back, so one worker's
store can hold several partitions and a recovered store looks like a live one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


def _same(key: Any) -> Any:
    return key


class PartitionView(MutableMapping[K, V], Generic[K, V]):
    """The keys of one partition in a Faust table's store; values decoded on first read.

    ``key_to_str`` / ``key_from_str`` map the caller's keys (e.g. tuples) to the string
    that follows the partition prefix.
    """

    def __init__(
        self,
        table: Any,
        partition: int,
        decode: Callable[[bytes], V],
        key_to_str: Callable[[K], str] = _same,
        key_from_str: Callable[[str], K] = _same,
    ) -> None:
        self._data: MutableMapping[bytes, Any] = table.data
        self._prefix = f"{partition}|".encode()
        self._decode = decode
        self._to_str = key_to_str
        self._from_str = key_from_str

    def _key(self, key: K) -> bytes:
        return self._prefix + self._to_str(key).encode()

    def __getitem__(self, key: K) -> V:
        raw_key = self._key(key)
        value = self._data[raw_key]
        if isinstance(value, bytes | bytearray):
            value = self._data[raw_key] = self._decode(bytes(value))
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: K, value: V) -> None:
        self._data[self._key(key)] = value

    def __delitem__(self, key: K) -> None:
        del self._data[self._key(key)]

    def __iter__(self) -> Iterator[K]:
        n = len(self._prefix)
        for raw_key in list(self._data.keys()):
            if isinstance(raw_key, bytes) and raw_key.startswith(self._prefix):
                yield self._from_str(raw_key[n:].decode())

    def __len__(self) -> int:
        return sum(1 for _ in self)


def send_changes(
    table: Any,
    partition: int,
    updated: Iterable[tuple[str, bytes]],
    deleted: Iterable[str] = (),
) -> int:
    """Send one changelog record per updated key and a tombstone per deleted key."""
    prefix = f"{partition}|"
    sent = 0
    for key, value in updated:
        table.send_changelog(partition, (prefix + key).encode(), value,
                             key_serializer="raw", value_serializer="raw")
        sent += 1
    for key in deleted:
        table.send_changelog(partition, (prefix + key).encode(), None,
                             key_serializer="raw", value_serializer="raw")
        sent += 1
    return sent
