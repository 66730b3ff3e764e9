"""Planted bugs in the mocker managers (:mod:`kvspec.impl.manager`, :mod:`kvspec.impl.legacy`).

Each breaks one rule of the spec and must be caught by the machines in ``caught_by`` under the
``ci`` profile (``tests/quality/test_mutants.py``).
"""

from __future__ import annotations

from collections import OrderedDict

from kvspec.stateful.mutants import Mutant


def _mgr():
    from kvspec.impl.manager import KvManager

    return KvManager


def republish_stored_on_inactive_hit():
    """A Use that reactivates inactive blocks announces them again (the router already holds them)."""
    from kvspec.events import Stored, StoredBlock
    from kvspec.protocol import FullBlock, Use

    class Mgr(_mgr()):
        def process(self, op):
            if type(op) is not Use:
                return super().process(op)
            before = set(self.eviction_order())
            n = super().process(op)
            revived = [b.hash for b in op.blocks[:n] if type(b) is FullBlock and b.hash in before]
            if revived:
                parent = op.parent.hash if op.parent is not None else None
                self._publish(Stored(parent, tuple(StoredBlock(h, 0) for h in dict.fromkeys(revived))))
            return n

    return Mgr


def upstream_merged_anchoring():
    """Upstream's rule: every new block of a Use in ONE Stored, anchored to the last reused block."""
    from kvspec.events import KvCacheEvent, Stored
    from kvspec.protocol import FullBlock, Use

    class Mgr(_mgr()):
        def process(self, op):
            if type(op) is not Use:
                return super().process(op)
            start = len(self._events)
            n = super().process(op)
            new = self._events[start:]
            stored = [e for e in new if isinstance(e.data, Stored)]
            if not stored:
                return n
            blocks = [b for e in stored for b in e.data.blocks]
            new_hashes = {b.block_hash for b in blocks}
            anchor = op.parent.hash if op.parent is not None else None
            seen = set()
            for block in op.blocks[:n]:  # the anchor is the last block that was a hit (a repeat is one)
                if type(block) is FullBlock:
                    if block.hash not in new_hashes or block.hash in seen:
                        anchor = block.hash
                    seen.add(block.hash)
            rest = [e.data for e in new if not isinstance(e.data, Stored)]
            first_id = new[0].event_id
            rebuilt = [Stored(anchor, tuple(blocks))] + rest
            self._events[start:] = [KvCacheEvent(first_id + i, d, e.dp_rank) for i, (d, e) in
                                    enumerate(zip(rebuilt, new))]
            self._next_event_id = first_id + len(rebuilt)
            return n

    return Mgr


def forget_removed():
    """Evictions are never announced (no Removed event)."""
    from kvspec.events import Removed

    class Mgr(_mgr()):
        def _publish(self, data):
            if isinstance(data, Removed):
                return
            super()._publish(data)

    return Mgr


def event_id_gap():
    """Event ids skip one number before every Removed."""
    from kvspec.events import Removed

    class Mgr(_mgr()):
        def _publish(self, data):
            if isinstance(data, Removed):
                self._next_event_id += 1
            super()._publish(data)

    return Mgr


def deref_leaks_partial():
    """Deref of a partial block forgets it but never returns its slot to the free list."""

    class Mgr(_mgr()):
        def _deref(self, op):
            self._pool.release_mutable = lambda slot: None
            try:
                return super()._deref(op)
            finally:
                del self._pool.release_mutable

    return Mgr


def legacy_evicts_newest():
    """Legacy LRU pool evicts the most recently released block instead of the oldest."""
    from kvspec.impl.legacy import LegacyKvManager

    class NewestFirst(OrderedDict):
        def popitem(self, last=True):
            return super().popitem(last=True)

    class Mgr(LegacyKvManager):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._inactive = NewestFirst()

    return Mgr


MUTANTS = [
    Mutant("republish-stored-on-inactive-hit", "an inactive hit publishes Stored again",
           {"KvManager": republish_stored_on_inactive_hit}, ("manager[",)),
    Mutant("upstream-merged-anchoring", "one Stored per Use anchored to the last reused block (upstream)",
           {"KvManager": upstream_merged_anchoring}, ("manager[",)),
    Mutant("forget-removed", "evicted blocks are never announced as Removed",
           {"KvManager": forget_removed}, ("manager[",)),
    Mutant("event-id-gap", "event ids skip a number before each Removed",
           {"KvManager": event_id_gap}, ("manager[",)),
    Mutant("deref-leaks-partial", "a Deref'd partial block's slot is never freed",
           {"KvManager": deref_leaks_partial}, ("manager[",)),
    Mutant("legacy-evicts-newest", "the legacy LRU evicts the newest inactive block",
           {"LegacyKvManager": legacy_evicts_newest}, ("legacy",)),
]
