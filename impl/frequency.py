"""Frequency tracker for the pool, bounded: same counts as :mod:`kvspec.model.frequency`.

:class:`DecayingCounter` keeps one 4-bit-saturating counter per key and TinyLFU's decay rule
(stated in the model).  It differs from the model only in cost:

* ``touch``/``count``: O(1).  The number of odd counters is kept incrementally (``_odd``), so a
  decay does not need a counting pass before halving.
* decay: O(keys), once every ``sample_size`` counted increments, so O(1) amortised per touch.

Memory (``_check`` asserts it): a decay at least halves the sum of the counters, and at most
``sample_size`` counted increments happen between two decays, so the sum — and with it the number
of keys, since only non-zero counters are kept — stays at most ``2 * sample_size``.  With
``"exact"`` the sample size is ``10 * capacity`` (upstream's ``TinyLFUTracker::new(capacity)``),
so at most ``20 * capacity`` keys: bounded by the pool, like upstream's sketch of ``capacity / 4``
words.  (The sketch itself, :class:`kvspec.impl.tinylfu.TinyLfu`, is smaller still but its
counts depend on hash collisions, so it cannot stand in where counts must equal the model's.)

>>> counter = DecayingCounter(sample_size=4)
>>> for key in "aabc":
...     counter.touch(key)
>>> counter.count("a"), counter.count("b"), len(counter)
(1, 0, 1)
"""

from __future__ import annotations

from typing import Any

from kvspec import checks
from kvspec.checks import MAX_COUNT

__all__ = ["DecayingCounter", "make"]


class DecayingCounter:
    """Saturating per-key counters halved every ``sample_size`` counted increments (see module)."""

    __slots__ = ("sample_size", "size", "_counts", "_odd")

    def __init__(self, sample_size: int) -> None:
        self.sample_size = checks.integer("sample_size", sample_size, 1, checks.U32)
        self.size = 0
        self._counts: dict[Any, int] = {}
        self._odd = 0  # keys whose counter is odd

    def touch(self, key: Any) -> None:
        counts = self._counts
        current = counts.get(key, 0)
        if current >= MAX_COUNT:
            return
        counts[key] = current + 1
        self._odd += -1 if current & 1 else 1
        self.size += 1
        if self.size >= self.sample_size:
            self._decay()

    def count(self, key: Any) -> int:
        return self._counts.get(key, 0)

    def _decay(self) -> None:
        halved = {key: c >> 1 for key, c in self._counts.items() if c > 1}
        self.size = max(0, (self.size >> 1) - self._odd)
        self._counts = halved
        self._odd = sum(c & 1 for c in halved.values())

    def __len__(self) -> int:
        return len(self._counts)

    def _check(self) -> None:
        """O(keys): counters in 1..15, ``_odd`` exact, the memory bound of the module docstring."""
        assert all(1 <= c <= MAX_COUNT for c in self._counts.values())
        assert self._odd == sum(c & 1 for c in self._counts.values())
        assert 0 <= self.size < self.sample_size
        assert sum(self._counts.values()) <= 2 * self.sample_size, "more counted than the decay allows"


def make(spec: Any, capacity: int) -> Any:
    """A ``frequency=`` argument (rules in :func:`kvspec.checks.frequency_spec`) as a tracker."""
    spec = checks.frequency_spec(spec, capacity)
    if isinstance(spec, tuple):
        return DecayingCounter(spec[1])
    return spec
