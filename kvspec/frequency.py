"""Access-frequency trackers for the block pool (kvbm-logical's ``FrequencyTracker``, ``docs/upstream.md`` P11).

The pool *touches* a tracker when a registration creates a new handle and on every
``match_blocks`` hit; the MultiLRU eviction backend *reads* ``count(plh)`` once, when a block
enters the inactive pool, to choose its tier.  A tracker is any object with

* ``touch(plh) -> None`` — record one access;
* ``count(plh) -> int`` — the estimated number of accesses, in ``0..15``.

:class:`ExactFrequency` is the reference tracker shared by the model and the implementation: one
exact counter per key, with the same saturation and the same decay rule as upstream's TinyLFU
count-min sketch.  Upstream's sketch (``kvspec.impl.tinylfu.TinyLfu``) behaves exactly like
:class:`ExactFrequency` as long as no two keys collide in all four rows, which is why state machines
use ``"exact"``: the comparison must not depend on hash collisions.

Decay (TinyLFU's ``FixedDecayPolicy``): ``size`` counts increments that changed a counter (a
saturated counter does not count); when ``size`` reaches ``sample_size`` every counter is halved
(rounding down) and ``size := size // 2 - odd`` where ``odd`` is the number of counters that were
odd before halving.  The sketch computes ``odd_nibbles >> 2``; each key owns four nibbles holding
the same value when nothing collides, so ``odd_nibbles >> 2`` equals the number of odd keys.
Upstream's ``size`` is a u32 that may underflow; kvspec clamps at 0 (``docs/decisions.md`` D10).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from kvspec.errors import InvalidArgument

#: Counters are 4-bit nibbles upstream: they saturate at 15.
MAX_COUNT = 15

#: Upstream's default sketch capacity (``FrequencyTrackingCapacity::Medium``).
DEFAULT_CAPACITY = 2**21


@runtime_checkable
class FrequencyTracker(Protocol):
    """What the pool needs from a tracker."""

    def touch(self, plh: Any) -> None: ...

    def count(self, plh: Any) -> int: ...


def default_sample_size(capacity: int = DEFAULT_CAPACITY) -> int:
    """TinyLFU's ``FixedDecayPolicy::from_capacity``: ``min(capacity * 10, u32::MAX)``."""
    return min(capacity * 10, 2**32 - 1)


class ExactFrequency:
    """One exact saturating counter per key, halved every ``sample_size`` counted increments.

    Rules (``docs/upstream.md`` P11, minus hashing):

    * ``touch(k)``: if ``count(k) < 15`` add one and count the increment in ``size``; a saturated
      counter stays at 15 and does not count.  When ``size >= sample_size`` decay runs.
    * decay: ``odd = #keys with an odd count``; every count is halved (floor);
      ``size = max(0, size // 2 - odd)``.  Keys whose count reaches 0 are forgotten.
    * ``count(k)``: the current counter, 0 for a key never touched.
    """

    def __init__(self, sample_size: int | None = None):
        if sample_size is None:
            sample_size = default_sample_size()
        if not isinstance(sample_size, int) or isinstance(sample_size, bool) or sample_size < 1:
            raise InvalidArgument(f"sample_size must be a positive integer, got {sample_size!r}")
        self.sample_size = sample_size
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


def make(spec: Any) -> FrequencyTracker | None:
    """Turn a ``frequency=`` argument into a tracker.

    * ``None`` -> no tracker (the pool touches nothing; MultiLRU refuses to build);
    * ``"exact"`` -> a fresh :class:`ExactFrequency` with upstream's default sample size;
    * ``"exact:<n>"`` -> :class:`ExactFrequency` decaying every ``n`` counted increments;
    * any object with ``touch`` and ``count`` -> used as is (shared, not copied).
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        if name == "exact":
            if not arg:
                return ExactFrequency()
            try:
                sample = int(arg)
            except ValueError:
                raise InvalidArgument(f"bad sample size in frequency spec {spec!r}") from None
            return ExactFrequency(sample)
        raise InvalidArgument(f"unknown frequency tracker {spec!r} (use None, 'exact' or 'exact:<n>')")
    if callable(getattr(spec, "touch", None)) and callable(getattr(spec, "count", None)):
        return spec
    raise InvalidArgument(f"frequency must be None, 'exact' or a tracker with touch/count, got {spec!r}")


__all__ = ["DEFAULT_CAPACITY", "DEFAULT_THRESHOLDS", "check_thresholds", "MAX_COUNT", "ExactFrequency", "FrequencyTracker", "NoFrequency",
           "default_sample_size", "make"]


#: MultiLRU's default tier thresholds (upstream ``with_multi_lru_backend``): a block released with a
#: frequency count below 3 is cold, below 8 warm, below 15 hot, else very hot.
DEFAULT_THRESHOLDS = (3, 8, 15)


def check_thresholds(thresholds: Any) -> tuple[int, int, int]:
    """``with_multi_lru_backend_custom_thresholds(a, b, c)`` accepts ``1 <= a < b < c <= 15``
    (counters saturate at 15); anything else is :class:`InvalidArgument`, as upstream's builder panics."""
    if (not isinstance(thresholds, (list, tuple)) or len(thresholds) != 3
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in thresholds)
            or not 1 <= thresholds[0] < thresholds[1] < thresholds[2] <= 15):
        raise InvalidArgument(f"MultiLRU thresholds must be 3 integers 1 <= a < b < c <= 15, got {thresholds!r}")
    return tuple(thresholds)
