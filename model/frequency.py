"""Access frequency of identities, as kvbm-logical's ``TinyLFUTracker`` counts it (the decay rule).

The pool *touches* a tracker when a registration creates a new handle and on every
``match_blocks`` hit; the MultiLRU eviction backend (:mod:`kvspec.model.eviction`) *reads*
``count(plh)`` once, when a block enters the inactive pool, to choose its tier.  A tracker is any
object with

* ``touch(plh) -> None`` — record one access;
* ``count(plh) -> int`` — the estimated number of accesses, in ``0..15``.

:class:`ExactFrequency` states the rule: one exact counter per key, with the saturation and the
decay of upstream's TinyLFU count-min sketch.  The sketch (:class:`kvspec.impl.tinylfu.TinyLfu`)
behaves exactly like it as long as no two keys collide in all four rows, which is why state
machines use ``"exact"``: the comparison must not depend on hash collisions.

Decay (TinyLFU's ``FixedDecayPolicy``): ``size`` counts increments that changed a counter (a
saturated counter does not count); when ``size`` reaches ``sample_size`` every counter is halved
(rounding down) and ``size := size // 2 - odd`` where ``odd`` is the number of counters that were
odd before halving.  The sketch computes ``odd_nibbles >> 2``; each key owns four nibbles holding
the same value when nothing collides, so ``odd_nibbles >> 2`` equals the number of odd keys.
Upstream's ``size`` is a u32 that may underflow; kvspec clamps at 0.

Memory is bounded by the sample size, as the sketch's is by its capacity: between two decays at
most ``sample_size`` increments are counted, and a decay at least halves the sum of all counters,
so the sum (and with it the number of keys with a non-zero count, the only ones kept) never
exceeds ``2 * sample_size``.  ``"exact"`` sizes the sample from the structure's capacity
(:func:`kvspec.checks.sample_size`), so a tracker holds at most ``20 * capacity`` keys.

>>> tracker = ExactFrequency(sample_size=4)
>>> for key in "aab":
...     tracker.touch(key)
>>> tracker.count("a"), tracker.count("b"), tracker.size
(2, 1, 3)
>>> tracker.touch("c")   # the 4th counted increment: every counter is halved, odd ones forgotten
>>> tracker.count("a"), tracker.count("b"), tracker.size
(1, 0, 0)
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kvspec import checks
from kvspec.checks import DEFAULT_THRESHOLDS, MAX_COUNT

__all__ = ["DEFAULT_THRESHOLDS", "MAX_COUNT", "ExactFrequency", "FrequencyTracker", "NoFrequency", "make"]


@runtime_checkable
class FrequencyTracker(Protocol):
    """What the pool needs from a tracker."""

    def touch(self, plh: Any) -> None: ...

    def count(self, plh: Any) -> int: ...


class ExactFrequency:
    """One exact saturating counter per key, halved every ``sample_size`` counted increments.

    * ``touch(k)``: if ``count(k) < 15`` add one and count the increment in ``size``; a saturated
      counter stays at 15 and does not count.  When ``size >= sample_size`` decay runs.
    * decay: ``odd = #keys with an odd count``; every count is halved (floor);
      ``size = max(0, size // 2 - odd)``.  Keys whose count reaches 0 are forgotten.
    * ``count(k)``: the current counter, 0 for a key never touched.
    """

    def __init__(self, sample_size: int | None = None):
        if sample_size is None:
            sample_size = checks.sample_size(checks.DEFAULT_SKETCH_CAPACITY)
        self.sample_size = checks.integer("sample_size", sample_size, 1, checks.U32)
        self.size = 0
        self.counts: dict[Any, int] = {}

    def touch(self, plh: Any) -> None:
        current = self.counts.get(plh, 0)
        if current >= MAX_COUNT:
            return  # saturated: nothing changed, so ``size`` does not grow either
        self.counts[plh] = current + 1
        self.size += 1
        if self.size >= self.sample_size:
            self.decay()

    def count(self, plh: Any) -> int:
        return self.counts.get(plh, 0)

    def decay(self) -> None:
        """Halve every counter (TinyLFU ``reset()``), adjusting ``size`` as upstream does."""
        odd = sum(1 for c in self.counts.values() if c & 1)
        self.counts = {k: c >> 1 for k, c in self.counts.items() if c >> 1}
        self.size = max(0, (self.size >> 1) - odd)

    def __repr__(self) -> str:
        return f"ExactFrequency(sample_size={self.sample_size}, keys={len(self.counts)}, size={self.size})"


class NoFrequency:
    """Upstream's ``NoOpTracker``: touches are ignored, every count is 0."""

    def touch(self, plh: Any) -> None:
        return None

    def count(self, plh: Any) -> int:
        return 0


def make(spec: Any, capacity: int = checks.DEFAULT_SKETCH_CAPACITY) -> FrequencyTracker | None:
    """Turn a ``frequency=`` argument (rules in :func:`kvspec.checks.frequency_spec`) into a tracker.

    ``None`` -> no tracker; ``"exact"`` / ``"exact:<n>"`` -> a fresh :class:`ExactFrequency`;
    a tracker object -> used as is.

    >>> make("exact", capacity=8)
    ExactFrequency(sample_size=80, keys=0, size=0)
    """
    spec = checks.frequency_spec(spec, capacity)
    if isinstance(spec, tuple):
        return ExactFrequency(spec[1])
    return spec
