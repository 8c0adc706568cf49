"""PURE: compact memory of a rollout's units: stable 64-bit unit hashes and the seen set.

Once a unit's first-exposure cell can no longer change, the join forgets its sums and
keeps only a 64-bit hash of (rollout, unit) in the rollout's :class:`SeenSet`, which
excludes the unit's later requests. The set keeps most hashes in one sorted ``int64``
array (8 bytes a unit) and the newest in a small Python set, merged in bulk; a bitmap of
16 bits a unit (one bit per hash, set by its low bits) answers most "never seen" lookups
- every new unit's first request asks - without a binary search.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

RECENT_MAX = 65_536
"""Hashes kept in the Python set before they are merged into the sorted array."""
HashArray = npt.NDArray[np.int64]


def unit_hash(rollout_id: str, unit_id: str) -> int:
    """Return the stable, non-zero 63-bit hash a unit is remembered by within a rollout.

    BLAKE2b, the same on every machine and process (Python's ``hash`` is salted per
    process); the chance that two of a million units of a rollout collide is about 1e-7.
    """
    digest = hashlib.blake2b((rollout_id + "\x00" + unit_id).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "little") >> 1) or 1


class SeenSet:
    """A set of unit hashes: a sorted int64 array plus a small set of the newest."""

    __slots__ = ("_bits", "_mask", "_recent", "_sorted")

    def __init__(self, hashes: Iterable[int] = ()) -> None:
        self._sorted: HashArray = np.empty(0, dtype=np.int64)
        self._recent: set[int] = set()
        self._bits = bytearray(1)
        self._mask = 7
        self.update(hashes)

    def __contains__(self, uhash: object) -> bool:
        if uhash in self._recent:
            return True
        if not isinstance(uhash, int):
            return False
        bit = uhash & self._mask
        if not (self._bits[bit >> 3] >> (bit & 7)) & 1:
            return False  # no hash in the array has these low bits
        arr = self._sorted
        at = int(arr.searchsorted(uhash))
        return at < arr.size and int(arr[at]) == uhash

    def add(self, uhash: int) -> None:
        """Remember one hash."""
        self._recent.add(uhash)
        if len(self._recent) >= RECENT_MAX:
            self._merge()

    def update(self, hashes: Iterable[int]) -> None:
        """Remember many hashes."""
        self._recent.update(int(h) for h in hashes)
        if len(self._recent) >= RECENT_MAX:
            self._merge()

    def _merge(self) -> None:
        recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
        self._sorted = np.union1d(self._sorted, recent)
        self._recent = set()
        size = 64
        while size < 16 * self._sorted.size:
            size *= 2
        bits = np.zeros(size // 8, dtype=np.uint8)
        low = self._sorted & (size - 1)
        np.bitwise_or.at(bits, low >> 3, (1 << (low & 7)).astype(np.uint8))
        self._bits, self._mask = bytearray(bits.tobytes()), size - 1

    def array(self) -> HashArray:
        """Return every hash as one sorted array."""
        self._merge()
        return self._sorted

    def __len__(self) -> int:
        return int(self._sorted.size) + len(self._recent)

    def __iter__(self) -> Iterator[int]:
        return iter(self.array().tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SeenSet):
            return bool(np.array_equal(self.array(), other.array()))
        if isinstance(other, set | frozenset):
            return set(self) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SeenSet({len(self)} units)"
