"""Planted bugs in SGLang's radix cache; ``sglang-radix-cache`` must catch each.

Both are natural mistakes of a reimplementation: evicting the most recently used leaf, and a
split that does not copy the lock count to the new upper node (its ancestors' pins then leak).
"""

from __future__ import annotations

from kvspec.stateful.mutants import Mutant


def _evicts_newest():
    from kvspec.impl.sglang_cache import SglangRadixCache

    class EvictsNewest(SglangRadixCache):
        """Leaves are evicted newest stamp first (MRU)."""

        def _now(self):
            self._clock -= 1
            return self._clock

    return EvictsNewest


def _split_forgets_lock():
    from kvspec.impl.sglang_cache import SglangRadixCache

    class SplitForgetsLock(SglangRadixCache):
        """The upper half of a split node starts unlocked."""

        def _split(self, child, at):
            upper = super()._split(child, at)
            upper.lock = 0
            self._status(upper)
            return upper

    return SplitForgetsLock


MUTANTS = [
    Mutant("sglang-evicts-newest", "evicts the most recently used leaf first",
           {"SglangRadixCache": _evicts_newest}, ("sglang-radix-cache",)),
    Mutant("sglang-split-forgets-lock", "a split's new upper node does not inherit the lock count",
           {"SglangRadixCache": _split_forgets_lock}, ("sglang-radix-cache",)),
]
