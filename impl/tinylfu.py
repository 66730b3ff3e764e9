"""Count-min TinyLFU frequency sketch, shaped like kvbm-logical's ``TinyLFUTracker`` (``docs/upstream.md`` P11).

* ``table``: ``max(1, capacity // 4)`` 64-bit words, each holding sixteen 4-bit counters.
* Four hash rows.  Row ``i`` hashes the key's bytes with ``xxh3_64(seed=i)``; the word is
  ``hash % len(table)`` and the nibble ``hash & 15``.
* ``touch``: each of the four counters below 15 is incremented (a counter picked by two rows is
  incremented twice).  If any changed, ``size += 1``, and at ``size >= sample_size`` (default
  ``min(10 * capacity, 2**32 - 1)``) the sketch decays.
* ``count``: the minimum of the four counters.
* decay: ``odd`` = number of odd counters; every counter is halved;
  ``size = max(0, size // 2 - odd // 4)`` (upstream's u32 can underflow; we clamp).

**Not bit-exact with upstream.**  Upstream hashes ``plh.as_u128()`` with
``xxh3_64_with_secret(bytes, custom_default_secret(i))``, and kvspec's :class:`~kvspec.hashing.Plh`
is not upstream's packed u128 either; so which keys collide differs.  Behaviour without
collisions is identical to :class:`kvspec.model.frequency.ExactFrequency`, which is what the pool's state
machines use.  Tested against it in ``tests/unit/test_tinylfu.py``.
"""

from __future__ import annotations

import struct
from typing import Any

import xxhash

from kvspec import checks
from kvspec.checks import DEFAULT_SKETCH_CAPACITY as DEFAULT_CAPACITY
from kvspec.checks import sample_size as default_sample_size
from kvspec.hashing import Plh

_ONES = 0x1111_1111_1111_1111
_LOW3 = 0x7777_7777_7777_7777
ROWS = 4


def key_bytes(key: Any) -> bytes:
    """The bytes hashed for ``key``: a Plh's three fields as little-endian u32/u64/u64, else repr."""
    if isinstance(key, Plh):
        parent = key.parent if key.parent is not None else 0
        return struct.pack("<IQQ?", key.position, key.current, parent, key.parent is None)
    if isinstance(key, int) and 0 <= key < 2**128:
        return key.to_bytes(16, "little")
    return repr(key).encode("utf-8")


class TinyLfu:
    """The sketch.  ``touch(key)``, ``count(key)``, ``decay()``; ``_check()`` validates ``size``."""

    __slots__ = ("table", "size", "sample_size")

    def __init__(self, capacity: int = DEFAULT_CAPACITY, sample_size: int | None = None):
        checks.integer("capacity", capacity, 1, checks.U32)
        if sample_size is not None:
            checks.integer("sample_size", sample_size, 1, checks.U32)
        self.table = [0] * max(1, capacity // 4)
        self.size = 0
        self.sample_size = default_sample_size(capacity) if sample_size is None else sample_size

    def _slots(self, key: Any) -> list[tuple[int, int]]:
        data = key_bytes(key)
        n = len(self.table)
        out = []
        for row in range(ROWS):
            h = xxhash.xxh3_64_intdigest(data, seed=row)
            out.append((h % n, (h & 15) * 4))
        return out

    def touch(self, key: Any) -> None:
        changed = False
        table = self.table
        for word, shift in self._slots(key):
            if (table[word] >> shift) & 15 < 15:
                table[word] += 1 << shift
                changed = True
        if changed:
            self.size += 1
            if self.size >= self.sample_size:
                self.decay()

    def count(self, key: Any) -> int:
        table = self.table
        return min((table[word] >> shift) & 15 for word, shift in self._slots(key))

    def decay(self) -> None:
        odd = sum(bin(w & _ONES).count("1") for w in self.table)
        self.table = [(w >> 1) & _LOW3 for w in self.table]
        self.size = max(0, (self.size >> 1) - (odd >> 2))

    def _check(self) -> None:
        assert all(0 <= w < 2**64 for w in self.table)
        assert 0 <= self.size < self.sample_size


__all__ = ["TinyLfu", "key_bytes"]
